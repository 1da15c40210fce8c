import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { describe } from 'vitest';
import { openKeyholdApp, type KeyholdAppDeps } from '../../src/compose.js';
import { loadConfig, type Config, type Environment } from '../../src/config.js';
import { createDatabase, type Database } from '../../src/storage/database.js';
import { ManualClock } from './clock.js';
import type { Services } from '../../src/services.js';
import type { MetricsListener } from '../../src/metrics/metrics-listener.js';
import { assertNoUndeclaredProblems } from './declared-problems.js';
import { clonePostgresTemplate, cloneSqliteTemplate, dropPostgresSchema } from './store-template.js';

export type DatabaseKind = 'sqlite' | 'postgres';

const POSTGRES_URL = process.env.KEYHOLD_TEST_DATABASE_URL;

/** SQLite always; PostgreSQL when KEYHOLD_TEST_DATABASE_URL is set (CI sets it). */
export const DATABASE_KINDS: DatabaseKind[] = POSTGRES_URL ? ['sqlite', 'postgres'] : ['sqlite'];

/** Runs the same suite once per database. */
export function describeEachDatabase(title: string, suite: (kind: DatabaseKind) => void): void {
  for (const kind of DATABASE_KINDS) describe(`${title} [${kind}]`, () => suite(kind));
}

export const TEST_ADMIN_TOKEN = `kh_test_admin_${'x'.repeat(32)}`;

/**
 * A store a test owns: a SQLite file, or a PostgreSQL schema, cloned from a migrated template by `createSchema()` (see
 * ./store-template.ts). It outlives app instances, so restart tests can build a second app over the same data.
 */
export class TestStore {
  readonly dataDir = mkdtempSync(join(tmpdir(), 'keyhold-test-'));
  readonly schema = `kh_test_${randomBytes(6).toString('hex')}`;
  readonly #databases: Database[] = [];
  #created: Promise<void> | undefined;

  constructor(readonly kind: DatabaseKind) {}

  environment(extra: Environment = {}): Environment {
    return {
      KEYHOLD_DATA_DIR: this.dataDir,
      KEYHOLD_DATABASE_URL: this.kind === 'sqlite' ? `sqlite:${join(this.dataDir, 'keyhold.sqlite')}` : POSTGRES_URL,
      KEYHOLD_BOOTSTRAP_TOKEN: TEST_ADMIN_TOKEN,
      KEYHOLD_LOG_LEVEL: 'info',
      // On, unlike the default: the tests that no secret reaches the logs then see a line for every request too.
      KEYHOLD_ACCESS_LOG: 'on',
      ...extra,
    };
  }

  /** A database handle to give an app, owned by the test and closed by `destroy()`: PostgreSQL tests run in their own schema. */
  database(config: Config): Database {
    const db = createDatabase(config.database, {
      acquireTimeoutMs: config.databaseTimeoutMs,
      ...(this.kind === 'postgres' ? { searchPath: this.schema } : {}),
    });
    this.#databases.push(db);
    return db;
  }

  /** Writes a file into the data dir as a secret would be mounted (mode 0600), and returns its path. */
  writeSecretFile(name: string, text: string): string {
    const path = join(this.dataDir, name);
    writeFileSync(path, `${text}\n`, { mode: 0o600 });
    return path;
  }

  /**
   * Creates the store, migrated, from the template: the SQLite file in the data dir, or the PostgreSQL schema.
   * Idempotent; a SQLite file that exists already is left as it is.
   */
  createSchema(): Promise<void> {
    this.#created ??= (async () => {
      if (this.kind === 'sqlite') {
        const filename = join(this.dataDir, 'keyhold.sqlite');
        if (!existsSync(filename)) await cloneSqliteTemplate(filename);
      } else if (POSTGRES_URL !== undefined) {
        await clonePostgresTemplate(POSTGRES_URL, this.schema);
      }
    })();
    return this.#created;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.#databases.splice(0).map((db) => db.destroy()));
    if (this.kind === 'postgres' && POSTGRES_URL !== undefined) {
      await this.#created?.catch(() => undefined);
      await dropPostgresSchema(POSTGRES_URL, this.schema);
    }
    this.#created = undefined;
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Collects every log line, so tests can assert that no secret was logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.lines.push(chunk.toString('utf8'));
    done();
  }

  text(): string {
    return this.lines.join('');
  }
}

export interface TestApp {
  readonly app: FastifyInstance;
  /** The app's services, as the routes call them. */
  readonly services: Services;
  /** The Prometheus listener (not listening yet) when the test set `KEYHOLD_METRICS_PORT`. */
  readonly metrics: MetricsListener | undefined;
  /** The test's own handle on the app's store, for what no API shows (stored rows, tampering). */
  readonly db: Database;
  readonly store: TestStore;
  readonly clock: ManualClock;
  readonly logs: LogCapture;
  /** Calls the API through `app.inject` with the admin token unless another is given. */
  call(method: string, url: string, body?: unknown, token?: string | null): Promise<ApiResponse>;
  /** Builds a second app over the same store, as a restart would. */
  restart(extra?: Environment): Promise<TestApp>;
  close(): Promise<void>;
}

export interface ApiResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: any;
  readonly text: string;
}

/**
 * Returns once the app's change feed has applied every change committed before the call. A stream opened after it
 * then gets no late event for the set-up's writes, on which an SDK would purge the cache a test is counting on.
 */
export async function changesApplied(t: TestApp): Promise<void> {
  const feed = t.services.changes;
  await feed.catchUp();
  const pending = await feed.changesSince(feed.appliedSeq, 1);
  if (pending === 'gap' || pending.length > 0) throw new Error('The change feed did not apply the changes committed so far');
}

export const TEST_ROOT_KEY = Buffer.alloc(32, 7).toString('base64');

export async function buildTestApp(
  kind: DatabaseKind,
  options: { env?: Environment; clock?: ManualClock; store?: TestStore; deps?: Partial<KeyholdAppDeps> } = {},
): Promise<TestApp> {
  const store = options.store ?? new TestStore(kind);
  await store.createSchema();
  const clock = options.clock ?? new ManualClock();
  const logs = new LogCapture();
  const config = loadConfig(store.environment({ KEYHOLD_ROOT_KEY: TEST_ROOT_KEY, ...options.env }));
  const db = store.database(config);
  const { app, services, metrics } = await openKeyholdApp(config, {
    clock,
    logStream: logs,
    database: db,
    sweeper: false,
    ...options.deps,
  });
  await app.ready();
  const testApp: TestApp = {
    app,
    services,
    metrics,
    db,
    store,
    clock,
    logs,
    async call(method, url, body, token = TEST_ADMIN_TOKEN) {
      const headers: Record<string, string> = {};
      if (token !== null) headers.authorization = `Bearer ${token}`;
      const response = await app.inject({
        method: method as 'GET',
        url,
        headers,
        ...(body === undefined ? {} : { payload: body as object }),
      });
      let parsed: unknown;
      try {
        parsed = response.body === '' ? undefined : JSON.parse(response.body);
      } catch {
        parsed = undefined;
      }
      return { status: response.statusCode, headers: response.headers as ApiResponse["headers"], body: parsed, text: response.body };
    },
    async restart(extra = {}) {
      await app.close();
      return buildTestApp(kind, { env: { ...options.env, ...extra }, clock, store, deps: options.deps });
    },
    async close() {
      await app.close();
      if (options.store === undefined) await store.destroy();
      // Every problem answered must be one its route's schema (and so openapi.yaml) declares.
      assertNoUndeclaredProblems();
    },
  };
  return testApp;
}

export interface ReplicaPair {
  readonly a: TestApp;
  readonly b: TestApp;
  close(): Promise<void>;
}

/**
 * Two replicas in one process over one store, each with its own caches and change feed. The cache TTL and the poll
 * interval are beyond any test, so B learns of A's writes only from a notification (PostgreSQL) or when the test
 * makes it read its feed.
 */
export async function buildReplicaPair(kind: DatabaseKind): Promise<ReplicaPair> {
  const store = new TestStore(kind);
  const env = { KEYHOLD_CACHE_TTL_MS: '3600000', KEYHOLD_CHANGE_POLL_INTERVAL_MS: '60000' };
  const a = await buildTestApp(kind, { store, env });
  const b = await buildTestApp(kind, { store, env });
  return {
    a,
    b,
    async close() {
      await b.close();
      await a.close();
      await store.destroy();
    },
  };
}
