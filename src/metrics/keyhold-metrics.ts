import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditCommitObserver, AuditMetrics } from '../audit/audit-writer.js';
import type { Principal } from '../context/principal.js';
import type { Action } from '../context/actions.js';
import type { HttpMetrics, RouteObserver } from '../http/plugins/request-metrics.js';
import type { CryptoObserver, CryptoOperation } from '../keys/envelope-service.js';
import type { KeySummary } from '../keys/key-record.js';
import type { Clock } from '../lib/clock.js';
import { withTimeout } from '../lib/timeout.js';
import type { DenialObserver } from '../policy/authorizer.js';
import { BoundedLabel, OTHER } from './bounded-label.js';

/** Distinct key names that keep their own `key` label in the crypto counters and in the key gauges; the rest are `other`. */
export const MAX_KEY_LABELS = 100;
/** Distinct versions of one key that keep their own `version` label in the crypto counters; the rest are `other`. */
export const MAX_VERSION_LABELS_PER_KEY = 10;
/** Distinct principals that keep their own `principal` label in the denial counter; the rest are `other`. */
export const MAX_PRINCIPAL_LABELS = 100;
/** The most keys the key gauges read (in name order), and how long a reading is reused. */
export const MAX_INVENTORY_KEYS = 1000;
export const INVENTORY_TTL_MS = 30_000;
/** How long a scrape waits for the first key reading; later scrapes never wait (they report the last one). */
const INVENTORY_WAIT_MS = 1000;

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500];
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** What the knex pool reports (`storage/database.ts` reads it). */
export interface PoolUsage {
  readonly used: number;
  readonly free: number;
  readonly pending: number;
  readonly max: number;
}

export interface KeyholdMetricsOptions {
  readonly clock: Clock;
  /** Node process metrics (`collectDefaultMetrics`): on in a server, off in tests that build many apps. Default true. */
  readonly processMetrics?: boolean;
}

type HttpLabels = 'method' | 'route' | 'status' | 'code';

/**
 * The registry of one app and every metric Keyhold exports, with the observers the services report to. A registry per
 * app, never prom-client's global one, so several apps in one process (tests) do not share series. The services know
 * only their observer interfaces, so they are built and tested without prom-client.
 */
export class KeyholdMetrics {
  readonly registry = new Registry();
  readonly #clock: Clock;
  readonly #requests: Histogram<HttpLabels>;
  readonly #denials: Counter<'principal_type' | 'principal' | 'action'>;
  readonly #crypto: Counter<'operation' | 'key' | 'version' | 'outcome'>;
  readonly #commitSeconds: Histogram<'result'>;
  readonly #batchSize: Histogram<'result'>;
  readonly #keyLabels = new BoundedLabel(MAX_KEY_LABELS);
  readonly #versionLabels = new Map<string, BoundedLabel>();
  readonly #principalLabels = new BoundedLabel(MAX_PRINCIPAL_LABELS);

  constructor(options: KeyholdMetricsOptions) {
    this.#clock = options.clock;
    const registers = [this.registry];
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.#requests = new Histogram({
      name: 'keyhold_http_request_duration_seconds',
      help: 'HTTP requests by route pattern, status class and problem code (ok for a success); _count is the request count.',
      labelNames: ['method', 'route', 'status', 'code'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#denials = new Counter({
      name: 'keyhold_authorization_denials_total',
      help: `Requests refused by policy, by principal type, principal (the first ${MAX_PRINCIPAL_LABELS}; then other) and action.`,
      labelNames: ['principal_type', 'principal', 'action'],
      registers,
    });
    this.#crypto = new Counter({
      name: 'keyhold_crypto_operations_total',
      help: `Data key, encrypt, decrypt and rewrap operations by key (the first ${MAX_KEY_LABELS}; then other), version and outcome.`,
      labelNames: ['operation', 'key', 'version', 'outcome'],
      registers,
    });
    this.#commitSeconds = new Histogram({
      name: 'keyhold_audit_commit_duration_seconds',
      help: 'Audit group commits: how long each took, by result (committed or failed).',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#batchSize = new Histogram({
      name: 'keyhold_audit_commit_batch_size',
      help: 'Audit group commits: how many records each carried, by result (committed or failed).',
      labelNames: ['result'],
      buckets: BATCH_BUCKETS,
      registers,
    });
  }

  /** Observes the HTTP app (`registerRequestMetrics`). */
  readonly http: HttpMetrics = {
    route: (method, route) => this.#routeObserver(method, route),
    watchEventStreams: (open) => {
      this.#gauge('keyhold_event_streams_open', 'GET /v1/events streams open now.', open);
    },
  };

  readonly denials: DenialObserver = {
    denied: (principal: Principal, action: Action) => {
      this.#denials.inc({ principal_type: principal.type, principal: this.#principalLabels.of(principal.id), action });
    },
  };

  readonly crypto: CryptoObserver = {
    operationEnded: (operation: CryptoOperation, keyName, keyVersion, outcome) => {
      const key = keyName === undefined ? 'none' : this.#keyLabels.of(keyName);
      this.#crypto.inc({ operation, key, version: this.#versionLabel(key, keyVersion), outcome });
    },
  };

  readonly auditCommits: AuditCommitObserver = {
    commitEnded: (records, seconds, committed) => {
      const result = committed ? 'committed' : 'failed';
      this.#commitSeconds.observe({ result }, seconds);
      this.#batchSize.observe({ result }, records);
    },
  };

  /** The audit writer's running totals (names as before prom-client) and its queue. */
  watchAuditWriter(writer: { readonly metrics: Readonly<AuditMetrics>; readonly queueDepth: number }): void {
    const { metrics } = writer;
    this.#counter('keyhold_audit_records_total', 'Audit records committed to the database.', () => metrics.records);
    this.#counter('keyhold_audit_commits_total', 'Audit group commits.', () => metrics.commits);
    this.#counter('keyhold_audit_commit_failures_total', 'Audit group commits that failed; their requests got 503.', () => metrics.commitFailures);
    this.#counter('keyhold_audit_file_failures_total', 'Writes to KEYHOLD_AUDIT_FILE that failed.', () => metrics.fileFailures);
    this.#gauge('keyhold_audit_queue_depth', 'Audit records waiting for a group commit (the one running excluded).', () => writer.queueDepth);
  }

  watchKeyCache(cache: { readonly stats: { readonly hits: number; readonly misses: number }; readonly size: number }): void {
    this.#hitsAndMisses('keyhold_key_cache_lookups_total', 'Key cache lookups by result (hit: answered from memory).', cache.stats);
    this.#gauge('keyhold_key_cache_entries', 'Keys held in the key cache.', () => cache.size);
  }

  watchTokenCache(stats: { readonly hits: number; readonly misses: number }): void {
    this.#hitsAndMisses('keyhold_token_cache_lookups_total', 'API token lookups by result (hit: answered from memory).', stats);
  }

  watchDatabasePool(usage: () => PoolUsage): void {
    new Gauge({
      name: 'keyhold_db_pool_connections',
      help: 'Database pool connections by state: used (lent to a query), free (idle), pending (requests waiting for one), max.',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const now = usage();
        this.set({ state: 'used' }, now.used);
        this.set({ state: 'free' }, now.free);
        this.set({ state: 'pending' }, now.pending);
        this.set({ state: 'max' }, now.max);
      },
    });
  }

  /**
   * The age of each key's primary version and the seconds to its next scheduled rotation (negative when overdue), read
   * through `list` (at most {@link MAX_INVENTORY_KEYS} keys, in name order) at most every {@link INVENTORY_TTL_MS}. The
   * first {@link MAX_KEY_LABELS} keys keep their own label; the rest are one `other` series: the oldest primary version
   * and the soonest rotation among them. A scrape never waits for the store but the first one, and then 1 s at most.
   */
  watchKeys(list: (limit: number) => Promise<readonly KeySummary[]>): void {
    let keys: readonly KeySummary[] | undefined;
    let readAt = -Infinity;
    let reading: Promise<void> | undefined;
    const refresh = (): Promise<void> => {
      reading ??= list(MAX_INVENTORY_KEYS)
        .then((read) => {
          keys = read.filter((key) => key.state !== 'destroyed');
          readAt = this.#clock.now().getTime();
        })
        .catch(() => undefined) // the last reading stands; the next scrape tries again
        .finally(() => {
          reading = undefined;
        });
      return reading;
    };
    const current = async (): Promise<readonly KeySummary[]> => {
      if (this.#clock.now().getTime() - readAt >= INVENTORY_TTL_MS) {
        const read = refresh();
        if (keys === undefined) await withTimeout(read, INVENTORY_WAIT_MS).catch(() => undefined);
      }
      return keys ?? [];
    };
    const clock = this.#clock;
    const gaugeLabels = new BoundedLabel(MAX_KEY_LABELS);
    new Gauge({
      name: 'keyhold_key_primary_version_age_seconds',
      help: `Age of each key's primary version (the first ${MAX_KEY_LABELS} keys labelled since start-up; other: the oldest of the rest).`,
      labelNames: ['key'],
      registers: [this.registry],
      // Every worker of a server reads the same keys: across them (cluster-metrics.ts) the oldest reading, not a sum.
      aggregator: 'max',
      async collect() {
        const now = clock.now().getTime();
        this.reset();
        let other: number | undefined;
        for (const key of await current()) {
          const age = (now - key.primaryVersionCreatedAt.getTime()) / 1000;
          const label = gaugeLabels.of(key.name);
          if (label === OTHER) other = Math.max(other ?? age, age);
          else this.set({ key: label }, age);
        }
        if (other !== undefined) this.set({ key: OTHER }, other);
      },
    });
    new Gauge({
      name: 'keyhold_key_next_rotation_seconds',
      help: `Seconds to each key's next scheduled rotation, negative when overdue; keys without one are absent (other: the soonest of the rest).`,
      labelNames: ['key'],
      registers: [this.registry],
      aggregator: 'min',
      async collect() {
        const now = clock.now().getTime();
        this.reset();
        let other: number | undefined;
        for (const key of await current()) {
          if (key.nextRotationAt === null || key.state !== 'enabled') continue;
          const seconds = (key.nextRotationAt.getTime() - now) / 1000;
          const label = gaugeLabels.of(key.name);
          if (label === OTHER) other = Math.min(other ?? seconds, seconds);
          else this.set({ key: label }, seconds);
        }
        if (other !== undefined) this.set({ key: OTHER }, other);
      },
    });
  }

  /** The Prometheus text exposition of every metric. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  #versionLabel(key: string, version: number | undefined): string {
    if (version === undefined) return 'none';
    if (key === OTHER || key === 'none') return OTHER;
    let versions = this.#versionLabels.get(key);
    if (versions === undefined) {
      versions = new BoundedLabel(MAX_VERSION_LABELS_PER_KEY);
      this.#versionLabels.set(key, versions);
    }
    return versions.of(String(version));
  }

  /**
   * A route's observer keeps one label object per status or problem code it has answered, so an answer allocates
   * nothing of its own; the histogram's observe is the only work.
   */
  #routeObserver(method: string, route: string | undefined): RouteObserver {
    const histogram = this.#requests;
    const routeLabel = route ?? 'unmatched';
    const byStatus = new Map<number, Record<HttpLabels, string>>();
    const byCode = new Map<string, Record<HttpLabels, string>>();
    const labelsOf = (statusCode: number, code: string | undefined): Record<HttpLabels, string> => ({
      method,
      route: routeLabel,
      status: STATUS_CLASSES[Math.floor(statusCode / 100) - 1] ?? 'other',
      code: code ?? (statusCode < 400 ? 'ok' : `HTTP_${statusCode}`),
    });
    return {
      answered(statusCode, code, seconds) {
        let labels: Record<HttpLabels, string> | undefined;
        if (code === undefined) {
          labels = byStatus.get(statusCode);
          if (labels === undefined) byStatus.set(statusCode, (labels = labelsOf(statusCode, undefined)));
        } else {
          labels = byCode.get(code);
          if (labels === undefined) byCode.set(code, (labels = labelsOf(statusCode, code)));
          // A code has one status; should an answer carry another, it is labelled as it was sent, not cached.
          else if (labels.status !== STATUS_CLASSES[Math.floor(statusCode / 100) - 1]) labels = labelsOf(statusCode, code);
        }
        histogram.observe(labels, seconds);
      },
    };
  }

  #counter(name: string, help: string, read: () => number): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }

  #gauge(name: string, help: string, read: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  #hitsAndMisses(name: string, help: string, stats: { readonly hits: number; readonly misses: number }): void {
    new Counter({
      name,
      help,
      labelNames: ['result'],
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc({ result: 'hit' }, stats.hits);
        this.inc({ result: 'miss' }, stats.misses);
      },
    });
  }
}
