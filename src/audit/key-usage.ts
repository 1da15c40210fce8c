import type { Action } from '../context/actions.js';
import type { Caller } from '../context/caller.js';
import { KeyholdError, ValidationError } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { AuditRecord } from './audit-record.js';

/**
 * The fleet inventory: for a key, which principals used which version for what, how often, first and last seen.
 * It is answered from a rollup of the audit log (`key_usage`), which the audit repository maintains in the same
 * transaction as each group commit, so it is exact and durable with the records and costs no scan to read.
 */

/** The actions that use a key version's material; administration (rotate, disable, read) is not a use. */
export const KEY_USE_ACTIONS: ReadonlySet<string> = new Set<Action>(['datakey', 'encrypt', 'decrypt', 'rewrap', 'rewrap-revoked']);

/** The rollup's time grain: uses are counted per UTC hour, and a window is widened to whole hours. */
export const USAGE_BUCKET_MS = 3_600_000;

/** The default window of a usage query: the last 30 days. */
export const DEFAULT_USAGE_WINDOW_MS = 30 * 24 * USAGE_BUCKET_MS;

/**
 * What one group commit adds to one rollup row: the uses of one key version by one principal for one action, in one
 * hour, on one replica's chain. The replica is part of the row so that replicas never update the same row (no lock
 * waits or deadlocks between their commits); a query sums over them.
 */
export interface KeyUsageIncrement {
  readonly keyId: string;
  readonly keyVersion: number;
  readonly principal: string;
  readonly action: string;
  /** The hour's start, epoch milliseconds. */
  readonly hour: number;
  readonly replicaId: string;
  readonly count: number;
  /** Epoch milliseconds. */
  readonly firstSeen: number;
  readonly lastSeen: number;
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/**
 * The uses the records show, aggregated per rollup row and sorted by the row's key (so concurrent writers would
 * take row locks in one order). Only successful uses count: a single request allowed, answered 2xx with outcome
 * `ok`, whose action is a {@link KEY_USE_ACTIONS} and which names the key id and version it used; and each entry of
 * a batch summary with outcome `ok` that names its key id and version, counted `count` times. Denials, failures and
 * requests that never reached a key are not uses.
 */
export function keyUsageOf(records: readonly AuditRecord[]): KeyUsageIncrement[] {
  const rows = new Map<string, { -readonly [K in keyof KeyUsageIncrement]: KeyUsageIncrement[K] }>();
  const add = (record: AuditRecord, keyId: string, keyVersion: number, action: string, count: number): void => {
    const time = record.time.getTime();
    const hour = time - (time % USAGE_BUCKET_MS);
    const principal = record.principalId!;
    const id = JSON.stringify([keyId, hour, keyVersion, principal, action, record.replicaId]);
    const row = rows.get(id);
    if (row === undefined) {
      rows.set(id, { keyId, keyVersion, principal, action, hour, replicaId: record.replicaId, count, firstSeen: time, lastSeen: time });
      return;
    }
    row.count += count;
    row.firstSeen = Math.min(row.firstSeen, time);
    row.lastSeen = Math.max(row.lastSeen, time);
  };
  for (const record of records) {
    if (record.principalId === null || !isSuccess(record.status)) continue;
    if (record.batch !== null) {
      for (const entry of record.batch.entries) {
        if (entry.outcome === 'ok' && entry.keyId !== null && entry.keyVersion !== null && KEY_USE_ACTIONS.has(entry.action)) {
          add(record, entry.keyId, entry.keyVersion, entry.action, entry.count);
        }
      }
    } else if (
      record.outcome === 'ok' &&
      record.decision === 'allow' &&
      record.action !== null &&
      KEY_USE_ACTIONS.has(record.action) &&
      record.keyId !== null &&
      record.keyVersion !== null
    ) {
      add(record, record.keyId, record.keyVersion, record.action, 1);
    }
  }
  return [...rows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
}

/** One line of the inventory: a principal's uses of a key version for an action over the window. */
export interface KeyUsage {
  readonly principal: string;
  readonly keyVersion: number;
  readonly action: string;
  readonly count: number;
  readonly firstSeen: Date;
  readonly lastSeen: Date;
}

export interface KeyUsageQuery {
  readonly keyId: string;
  readonly version?: number | undefined;
  /** The rollup hours from `since` (inclusive) to `until` (exclusive); both on an hour boundary. */
  readonly since: Date;
  readonly until: Date;
}

/** Reads the rollup. */
export interface KeyUsageRepository {
  /**
   * The key's uses in the hours of the window, summed per (principal, version, action) over hours and replicas,
   * sorted by last seen (newest first), then principal, version and action.
   */
  keyUsage(query: KeyUsageQuery): Promise<KeyUsage[]>;
}

/** Finds a key's id by its name; the usage service needs nothing else of the keys. */
export interface KeyDirectory {
  keyIdOf(name: string): Promise<string | undefined>;
}

export interface KeyUsageReport {
  readonly keyName: string;
  readonly keyId: string;
  /** The window answered: the one asked for, widened to whole UTC hours. */
  readonly since: Date;
  readonly until: Date;
  readonly usage: readonly KeyUsage[];
}

const floorHour = (ms: number): number => ms - (((ms % USAGE_BUCKET_MS) + USAGE_BUCKET_MS) % USAGE_BUCKET_MS);
const ceilHour = (ms: number): number => {
  const floor = floorHour(ms);
  return floor === ms ? ms : floor + USAGE_BUCKET_MS;
};

/**
 * The window a query answers: `since` inclusive, `until` exclusive, by default the {@link DEFAULT_USAGE_WINDOW_MS}
 * up to now, widened outwards to whole hours (the rollup's grain); without `until`, to the end of the current hour,
 * so a use made at this instant is in it. Throws a validation error unless since < until.
 */
export function usageWindow(now: Date, since: Date | undefined, until: Date | undefined): { since: Date; until: Date } {
  const end = until?.getTime() ?? now.getTime();
  const start = since?.getTime() ?? end - DEFAULT_USAGE_WINDOW_MS;
  if (start >= end) throw new ValidationError('since must be before until');
  return {
    since: new Date(floorHour(start)),
    until: new Date(until === undefined ? floorHour(end) + USAGE_BUCKET_MS : ceilHour(end)),
  };
}

/** The fleet inventory as callers of the API read it: authorised as `audit:read`, like the audit log itself. */
export class KeyUsageService {
  readonly #repository: KeyUsageRepository;
  readonly #keys: KeyDirectory;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;

  constructor(options: { repository: KeyUsageRepository; keys: KeyDirectory; authorizer: Authorizer; clock: Clock }) {
    this.#repository = options.repository;
    this.#keys = options.keys;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
  }

  /**
   * Who used the key, which version, for what, how often, over the window. Authorised first, so a caller without
   * `audit:read` learns nothing, not even whether the key exists.
   */
  async usage(
    caller: Caller,
    keyName: string,
    query: { version?: number | undefined; since?: Date | undefined; until?: Date | undefined },
  ): Promise<KeyUsageReport> {
    this.#authorizer.authorize(caller, 'audit:read', {});
    const window = usageWindow(this.#clock.now(), query.since, query.until);
    const keyId = await this.#keys.keyIdOf(keyName);
    if (keyId === undefined) throw new KeyholdError('KH_ERR_KEY_NOT_FOUND');
    const usage = await this.#repository.keyUsage({ keyId, version: query.version, ...window });
    return { keyName, keyId, ...window, usage };
  }
}
