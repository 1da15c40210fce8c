import type { Caller } from '../context/caller.js';
import type { ChangeAction } from '../changes/change.js';
import { randomUUID } from 'node:crypto';
import type { Authorizer } from '../policy/authorizer.js';
import type { Action } from '../context/actions.js';
import type { Clock } from '../lib/clock.js';
import { AES_256_KEY_BYTES } from '../crypto/aes-gcm.js';
import { keyVersionWrapAad } from '../crypto/key-version-cipher.js';
import type { RootKey } from '../root-keys/root-key.js';
import { SecretBytes } from '../crypto/secret-bytes.js';
import { KeyholdError, ValidationError } from '../errors.js';
import type { KeyCache } from './key-cache.js';
import type { BoundAttribute, KeyRecord, KeySummary } from './key-record.js';
import type { KeyChanges, KeyRepository, LockedKeyWriter, NewVersion } from './key-repository.js';
import { checkKeyOperation, checkVersionOperation, DEFAULT_PENDING_WINDOW_DAYS, isDueForDestruction, MAX_ROTATION_PERIOD_SECONDS, MIN_ROTATION_PERIOD_SECONDS, minDecryptionVersionAfterRotation, nextRotationAfter } from './lifecycle.js';
import type { KeyOperation } from '../context/caller.js';

export interface CreateKeyInput {
  /** Chosen by the caller only to name a key by its own id (the AWS endpoint's CreateKey); random otherwise. */
  readonly id?: string | undefined;
  readonly name: string;
  readonly description?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  readonly rotationPeriodSeconds?: number | null | undefined;
  readonly retainVersions?: number | null | undefined;
  readonly boundContext?: readonly BoundAttribute[] | undefined;
}

export interface UpdateKeyInput {
  readonly description?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  readonly rotationPeriodSeconds?: number | null | undefined;
  readonly retainVersions?: number | null | undefined;
  readonly minDecryptionVersion?: number | undefined;
}

export interface KeyPage {
  readonly keys: KeySummary[];
  /** Opaque; pass back as `cursor` for the next page. Absent on the last page. */
  readonly nextCursor?: string;
}

export interface KeyServiceOptions {
  readonly repository: KeyRepository;
  readonly cache: KeyCache;
  readonly rootKey: RootKey;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
}

const DAY_MS = 24 * 3600 * 1000;
const LIST_SCAN_BATCH = 200;
/** The most key rows one workload listing request reads, whatever the store holds: above the largest page (500). */
const LIST_SCAN_ROWS = 1000;
const DESTROYED = Symbol('destroyed');

/** Carries out a deletion whose date has passed, under the key's row lock. Returns whether it did. */
async function destroyIfDueLocked(key: KeyRecord, writer: LockedKeyWriter, now: Date): Promise<boolean> {
  if (!isDueForDestruction(key, now)) return false;
  await writer.destroyAllVersions(now);
  await writer.updateKey({ state: 'destroyed', destroyedAt: now, updatedAt: now });
  return true;
}
const CURSOR_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkRotationPeriod(seconds: number | null | undefined): void {
  if (seconds === undefined || seconds === null || seconds === 0) return;
  if (seconds < MIN_ROTATION_PERIOD_SECONDS || seconds > MAX_ROTATION_PERIOD_SECONDS) {
    throw new ValidationError(
      `rotationPeriodSeconds must be 0 (off) or between ${MIN_ROTATION_PERIOD_SECONDS} and ${MAX_ROTATION_PERIOD_SECONDS}`,
    );
  }
}

export function encodeKeyCursor(name: string): string {
  return Buffer.from(name, 'utf8').toString('base64url');
}

export function decodeKeyCursor(cursor: string): string {
  const name = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!CURSOR_PATTERN.test(name) || encodeKeyCursor(name) !== cursor) throw new ValidationError('cursor is not valid');
  return name;
}

/**
 * A listing cursor that names its key by id: where a workload's scan stopped, on a key it may not read and so may
 * not learn the name of. `~` never occurs in a name, so the two kinds of cursor cannot be confused.
 */
/**
 * A cursor where a workload's scan stopped on a key it may not read: that key's id, sealed under the root key and
 * bound to the caller, after a first byte `~` that no key name starts with. The caller can neither read the id (and
 * so match it to a ciphertext it holds) nor forge one to ask whether a key exists or where its name sorts.
 */
const SEALED_CURSOR_MARK = 0x7e;

function sealedCursorAad(principalId: string): Buffer {
  return Buffer.from(`keyhold/list-cursor/v1\u0000${principalId}`, 'utf8');
}

/**
 * The key-name ranges a listing scans: each allowed prefix within the requested one. Allowed prefixes do not cover
 * one another, so the ranges are disjoint, and in name order.
 */
function listingRanges(allowed: readonly string[], requested: string): string[] {
  const ranges: string[] = [];
  for (const prefix of allowed) {
    if (prefix.startsWith(requested)) ranges.push(prefix);
    else if (requested.startsWith(prefix)) ranges.push(requested);
  }
  return ranges;
}

/** Key administration: create, read, update, rotate, enable and disable, schedule deletion. */
export class KeyService {
  readonly #repository: KeyRepository;
  readonly #cache: KeyCache;
  readonly #rootKey: RootKey;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;

  constructor(options: KeyServiceOptions) {
    this.#repository = options.repository;
    this.#cache = options.cache;
    this.#rootKey = options.rootKey;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
  }

  async create(caller: Caller, input: CreateKeyInput): Promise<KeyRecord> {
    this.#authorizer.authorize(caller, 'keys:create', { keyName: input.name });
    checkRotationPeriod(input.rotationPeriodSeconds);
    const now = this.#clock.now();
    const id = input.id ?? randomUUID();
    const rotationPeriodSeconds = input.rotationPeriodSeconds || null;
    const key: KeyRecord = {
      id,
      name: input.name,
      description: input.description ?? '',
      labels: input.labels ?? {},
      boundContext: [...new Set(input.boundContext ?? [])],
      state: 'enabled',
      primaryVersion: 1,
      minDecryptionVersion: 1,
      rotationPeriodSeconds,
      retainVersions: input.retainVersions ?? null,
      nextRotationAt: nextRotationAfter(now, rotationPeriodSeconds),
      deletionDate: null,
      createdAt: now,
      updatedAt: now,
      destroyedAt: null,
      versions: [],
    };
    // A name already taken fails here with KH_ERR_KEY_EXISTS.
    await this.#repository.create(key, await this.#newVersion(id, 1, now));
    return this.#mustFind(input.name);
  }

  async get(caller: Caller, name: string): Promise<KeyRecord> {
    this.#authorizer.authorize(caller, 'keys:read', { keyName: name });
    const key = await this.#repository.findByName(name);
    if (key === undefined) throw new KeyholdError('KH_ERR_KEY_NOT_FOUND');
    caller.trail.usedKey(key.id, key.name, key.primaryVersion);
    // A deletion date that passed before the sweeper ran is carried out now, so no reader sees a stale state.
    if (isDueForDestruction(key, this.#clock.now())) return (await this.#destroyIfDue(name)) ?? key;
    return key;
  }

  async list(
    caller: Caller,
    query: { prefix?: string | undefined; cursor?: string | undefined; limit: number },
  ): Promise<KeyPage> {
    if (caller.principal.admin) {
      const after = query.cursor === undefined ? undefined : await this.#cursorName(caller.principal.id, query.cursor);
      const rows = await this.#repository.list({ prefix: query.prefix, after, limit: query.limit + 1 });
      const keys = rows.slice(0, query.limit);
      const last = keys[keys.length - 1];
      return rows.length > query.limit && last !== undefined ? { keys, nextCursor: encodeKeyCursor(last.name) } : { keys };
    }
    // A workload sees the keys it may read, looked for only under the prefixes its grants could allow: with no grant
    // it costs no query at all. A request reads at most LIST_SCAN_ROWS rows, so a narrow grant on a large store gives
    // short (even empty) pages with a cursor, not a slow request. A cursor where the scan stopped names the key by
    // id, so paging never reveals the name of a key the caller may not read.
    const ranges = listingRanges(this.#authorizer.keyPrefixesAllowed(caller.principal, 'keys:read'), query.prefix ?? '');
    if (ranges.length === 0) return { keys: [] };
    let after = query.cursor === undefined ? undefined : await this.#cursorName(caller.principal.id, query.cursor);
    let budget = LIST_SCAN_ROWS;
    const keys: KeySummary[] = [];
    for (const [index, prefix] of ranges.entries()) {
      for (;;) {
        const limit = Math.min(LIST_SCAN_BATCH, budget);
        const batch = await this.#repository.list({ prefix, after, limit });
        budget -= batch.length;
        let listed = false;
        for (const [position, key] of batch.entries()) {
          after = key.name;
          listed = this.#authorizer.isAllowed(caller.principal, 'keys:read', { keyName: key.name });
          if (!listed) continue;
          keys.push(key);
          if (keys.length === query.limit) {
            const more = position < batch.length - 1 || (await this.#anyKeyAfter(ranges.slice(index), key.name));
            return more ? { keys, nextCursor: encodeKeyCursor(key.name) } : { keys };
          }
        }
        const last = batch[batch.length - 1];
        if (budget === 0 && last !== undefined) {
          return { keys, nextCursor: listed ? encodeKeyCursor(last.name) : await this.#sealCursor(caller.principal.id, last.id) };
        }
        if (batch.length < limit) break;
      }
    }
    return { keys };
  }

  async #sealCursor(principalId: string, keyId: string): Promise<string> {
    const sealed = await this.#rootKey.wrap(Buffer.from(keyId, 'utf8'), sealedCursorAad(principalId));
    return Buffer.concat([Buffer.of(SEALED_CURSOR_MARK), sealed]).toString('base64url');
  }

  /** The name a listing cursor continues after. A sealed cursor that does not open for this caller is not valid. */
  async #cursorName(principalId: string, cursor: string): Promise<string> {
    const bytes = Buffer.from(cursor, 'base64url');
    if (bytes[0] !== SEALED_CURSOR_MARK || bytes.toString('base64url') !== cursor) return decodeKeyCursor(cursor);
    let keyId: string;
    try {
      keyId = (await this.#rootKey.unwrap(bytes.subarray(1), sealedCursorAad(principalId))).toString('utf8');
    } catch {
      throw new ValidationError('cursor is not valid');
    }
    const name = await this.#repository.findNameById(keyId);
    if (name === undefined) throw new ValidationError('cursor is not valid');
    return name;
  }

  /** Whether any key lies after `after` in these ranges: one row read per range at most. */
  async #anyKeyAfter(ranges: readonly string[], after: string): Promise<boolean> {
    for (const prefix of ranges) {
      if ((await this.#repository.list({ prefix, after, limit: 1 })).length > 0) return true;
    }
    return false;
  }

  async update(caller: Caller, name: string, input: UpdateKeyInput): Promise<KeyRecord> {
    checkRotationPeriod(input.rotationPeriodSeconds);
    return this.#mutate(caller, 'keys:update', name, 'update', async (key, writer, now) => {
      const changes: { -readonly [K in keyof KeyChanges]: KeyChanges[K] } = { updatedAt: now };
      if (input.description !== undefined) changes.description = input.description;
      if (input.labels !== undefined) changes.labels = input.labels;
      if (input.rotationPeriodSeconds !== undefined) {
        changes.rotationPeriodSeconds = input.rotationPeriodSeconds || null;
        changes.nextRotationAt = nextRotationAfter(now, input.rotationPeriodSeconds);
      }
      // Takes effect at the next rotation, like the period: setting it never retires a version by itself.
      if (input.retainVersions !== undefined) changes.retainVersions = input.retainVersions;
      if (input.minDecryptionVersion !== undefined) {
        if (input.minDecryptionVersion < 1 || input.minDecryptionVersion > key.primaryVersion) {
          throw new ValidationError(`minDecryptionVersion must be between 1 and the primary version (${key.primaryVersion})`);
        }
        changes.minDecryptionVersion = input.minDecryptionVersion;
      }
      await writer.updateKey(changes);
    });
  }

  /** Adds a version and makes it primary, in one transaction under the key's row lock. */
  async rotate(caller: Caller, name: string): Promise<KeyRecord> {
    return this.#mutate(caller, 'keys:rotate', name, 'rotate', (key, writer, now) => this.#rotateLocked(key, writer, now));
  }

  /**
   * Rotates every enabled key whose `nextRotationAt` has passed. Each rotation re-reads the key under its row lock
   * and checks again, so replicas sweeping at the same time rotate a key once: on PostgreSQL a replica skips a key
   * another one has locked (`SKIP LOCKED`), and whoever comes later sees the advanced `nextRotationAt`. A key that
   * missed several periods (the service was down) rotates once. Returns how many this call rotated.
   */
  async rotateDueKeys(batchSize = 100): Promise<number> {
    let rotated = 0;
    for (;;) {
      const names = await this.#repository.findDueForRotation(this.#clock.now(), batchSize);
      for (const name of names) {
        const outcome = await this.#repository.mutate(name, 'rotate', async (key, writer) => {
          const now = this.#clock.now();
          const due = key.state === 'enabled' && key.nextRotationAt !== null && key.nextRotationAt.getTime() <= now.getTime();
          if (due) await this.#rotateLocked(key, writer, now);
          return due;
        }, { skipLocked: true });
        if (outcome?.result === true) {
          this.#cache.invalidate(outcome.key);
          rotated += 1;
        }
      }
      if (names.length < batchSize) return rotated;
    }
  }

  async #rotateLocked(key: KeyRecord, writer: LockedKeyWriter, now: Date): Promise<void> {
    const version = Math.max(0, ...key.versions.map((v) => v.version)) + 1;
    await writer.insertVersion(await this.#newVersion(key.id, version, now));
    await writer.updateKey({
      primaryVersion: version,
      minDecryptionVersion: minDecryptionVersionAfterRotation(key, version),
      nextRotationAt: nextRotationAfter(now, key.rotationPeriodSeconds),
      updatedAt: now,
    });
  }

  async disable(caller: Caller, name: string): Promise<KeyRecord> {
    return this.#mutate(caller, 'keys:disable', name, 'disable', async (_key, writer, now) => {
      await writer.updateKey({ state: 'disabled', updatedAt: now });
    });
  }

  async enable(caller: Caller, name: string): Promise<KeyRecord> {
    return this.#mutate(caller, 'keys:enable', name, 'enable', async (_key, writer, now) => {
      await writer.updateKey({ state: 'enabled', updatedAt: now });
    });
  }

  async scheduleDeletion(caller: Caller, name: string, pendingWindowDays = DEFAULT_PENDING_WINDOW_DAYS): Promise<KeyRecord> {
    return this.#mutate(caller, 'keys:delete', name, 'schedule-deletion', async (_key, writer, now) => {
      await writer.updateKey({
        state: 'pending_deletion',
        deletionDate: new Date(now.getTime() + pendingWindowDays * DAY_MS),
        updatedAt: now,
      });
    });
  }

  /** Cancelling leaves the key disabled, as AWS KMS does: re-enabling it is a separate, deliberate step. */
  async cancelDeletion(caller: Caller, name: string): Promise<KeyRecord> {
    return this.#mutate(caller, 'keys:delete', name, 'cancel-deletion', async (_key, writer, now) => {
      await writer.updateKey({ state: 'disabled', deletionDate: null, updatedAt: now });
    });
  }

  /** Revokes one version: nothing it encrypted decrypts until it is enabled again. */
  async disableVersion(caller: Caller, name: string, version: number): Promise<KeyRecord> {
    return this.#mutateVersion(caller, 'keys:disable', name, version, 'disable-version');
  }

  async enableVersion(caller: Caller, name: string, version: number): Promise<KeyRecord> {
    return this.#mutateVersion(caller, 'keys:enable', name, version, 'enable-version');
  }

  /** Destroys every key whose deletion date has passed. Returns how many were destroyed. */
  async destroyDueKeys(batchSize = 100): Promise<number> {
    let destroyed = 0;
    for (;;) {
      const names = await this.#repository.findDueForDestruction(this.#clock.now(), batchSize);
      for (const name of names) {
        if ((await this.#destroyIfDue(name)) !== undefined) destroyed += 1;
      }
      if (names.length < batchSize) return destroyed;
    }
  }

  async #destroyIfDue(name: string): Promise<KeyRecord | undefined> {
    const now = this.#clock.now();
    const outcome = await this.#repository.mutate(name, 'destroy', (key, writer) => destroyIfDueLocked(key, writer, now));
    if (outcome === undefined || !outcome.result) return undefined;
    this.#cache.invalidate(outcome.key);
    return outcome.key;
  }

  async #mutateVersion(
    caller: Caller,
    action: Action,
    name: string,
    version: number,
    operation: 'disable-version' | 'enable-version',
  ): Promise<KeyRecord> {
    caller.trail.runs(`keys:${operation}`);
    this.#authorizer.authorize(caller, action, { keyName: name });
    const outcome = await this.#repository.mutate(name, operation, async (key, writer) => {
      const now = this.#clock.now();
      if (await destroyIfDueLocked(key, writer, now)) return DESTROYED;
      if (checkVersionOperation(key, version, operation) === 'noop') return;
      await writer.setVersionState(version, operation === 'disable-version' ? 'disabled' : 'enabled', now);
      await writer.updateKey({ updatedAt: now });
    });
    const key = this.#afterWrite(caller, outcome);
    caller.trail.usedKey(key.id, key.name, version);
    return key;
  }

  async #mutate(
    caller: Caller,
    action: Action,
    name: string,
    operation: KeyOperation & ChangeAction,
    apply: (key: KeyRecord, writer: LockedKeyWriter, now: Date) => Promise<void>,
  ): Promise<KeyRecord> {
    // The record names the operation; `action` is what a policy must allow (keys:delete for both deletion steps).
    caller.trail.runs(`keys:${operation}`);
    this.#authorizer.authorize(caller, action, { keyName: name });
    const outcome = await this.#repository.mutate(name, operation, async (key, writer) => {
      const now = this.#clock.now();
      if (await destroyIfDueLocked(key, writer, now)) return DESTROYED;
      if (checkKeyOperation(key, operation) === 'noop') return;
      await apply(key, writer, now);
    });
    return this.#afterWrite(caller, outcome);
  }

  #afterWrite(caller: Caller, outcome: { key: KeyRecord; result: typeof DESTROYED | undefined } | undefined): KeyRecord {
    if (outcome === undefined) throw new KeyholdError('KH_ERR_KEY_NOT_FOUND');
    this.#cache.invalidate(outcome.key);
    caller.trail.usedKey(outcome.key.id, outcome.key.name, outcome.key.primaryVersion);
    // A deletion date that had passed was carried out, and committed, before the refusal.
    if (outcome.result === DESTROYED) throw new KeyholdError('KH_ERR_KEY_DESTROYED');
    return outcome.key;
  }

  async #newVersion(keyId: string, version: number, now: Date): Promise<NewVersion> {
    const material = SecretBytes.random(AES_256_KEY_BYTES);
    try {
      const wrapped = await material.use((bytes) => this.#rootKey.wrap(bytes, keyVersionWrapAad(keyId, version)));
      return { version, state: 'enabled', rootKeyId: this.#rootKey.id, material: wrapped, createdAt: now };
    } finally {
      material.zero();
    }
  }

  async #mustFind(name: string): Promise<KeyRecord> {
    const key = await this.#repository.findByName(name);
    if (key === undefined) throw new KeyholdError('KH_ERR_INTERNAL');
    return key;
  }
}
