import type { ChangeAction } from '../changes/change.js';
import type { KeyRecord, KeySummary, KeyVersionState, WrappedKeyVersion } from './key-record.js';

/** The fields of a key row a mutation may change. */
export type KeyChanges = Partial<
  Pick<
    KeyRecord,
    | 'description'
    | 'labels'
    | 'state'
    | 'primaryVersion'
    | 'minDecryptionVersion'
    | 'rotationPeriodSeconds'
    | 'retainVersions'
    | 'nextRotationAt'
    | 'deletionDate'
    | 'destroyedAt'
  >
> & { readonly updatedAt: Date };

export interface NewVersion extends WrappedKeyVersion {
  readonly state: KeyVersionState;
  readonly createdAt: Date;
}

/** Writes allowed while a key's row is locked; see {@link KeyRepository.mutate}. */
export interface LockedKeyWriter {
  updateKey(changes: KeyChanges): Promise<void>;
  insertVersion(version: NewVersion): Promise<void>;
  setVersionState(version: number, state: KeyVersionState, at: Date): Promise<void>;
  /** Erases every version's material: the key can never decrypt again. */
  destroyAllVersions(at: Date): Promise<void>;
}

/**
 * A key as it was when read, with its revision: a number every write through {@link KeyRepository.create} or
 * {@link KeyRepository.mutate} raises. Equal revisions of one key mean the same key and versions, with the same
 * state and material, except the root key each version's material rests under: moving material to a new root key
 * (root key rotation) does not raise it, as the plaintext is unchanged. It locks version rows, not the key's.
 */
export interface RevisedKey {
  readonly key: KeyRecord;
  readonly revision: number;
}

export interface KeyListQuery {
  readonly prefix?: string | undefined;
  /** Return names strictly after this one. */
  readonly after?: string | undefined;
  readonly limit: number;
}

/**
 * Persistence of keys and their wrapped versions. Every write records its change in the change feed, in the same
 * transaction, so other replicas learn of it exactly when it commits.
 */
export interface KeyRepository {
  /**
   * Stores a new key with its first version, and records a `create` change. Throws `KH_ERR_KEY_EXISTS` when a key
   * of that name (or id) is stored already.
   */
  create(key: KeyRecord, firstVersion: NewVersion): Promise<void>;
  findByName(name: string): Promise<KeyRecord | undefined>;
  findNameById(id: string): Promise<string | undefined>;
  /** The key and its revision, read together. */
  findRevised(where: { readonly id: string } | { readonly name: string }): Promise<RevisedKey | undefined>;
  /** The revision of the key with this id, alone: one row, however many versions the key has. */
  findRevision(id: string): Promise<number | undefined>;
  /**
   * Keys in byte-wise name order, those starting with `prefix`, after `after`, at most `limit`, summarised: their
   * versions counted by the store, so a page of keys rotated thousands of times is still a page of keys.
   */
  list(query: KeyListQuery): Promise<KeySummary[]>;
  /** Every version that still has material, or only those of `versions`, wrapped, in version order. */
  findWrappedVersions(keyId: string, versions?: readonly number[]): Promise<WrappedKeyVersion[]>;
  /** Names of keys pending deletion whose deletion date is at or before `now`, earliest date first. */
  findDueForDestruction(now: Date, limit: number): Promise<string[]>;
  /** Names of enabled keys whose next rotation is at or before `now`, earliest first. */
  findDueForRotation(now: Date, limit: number): Promise<string[]>;
  /**
   * Runs `fn` while holding the key's row lock, so concurrent rotations and state changes apply one after another,
   * and commits what it wrote through `writer` atomically. If `fn` wrote, the same commit records `action` (or
   * `destroy`, when it destroyed the key) in the change feed. Returns `fn`'s result and the key as it is after, or
   * undefined when no key has this name, or, with `skipLocked`, when another writer holds its lock.
   */
  mutate<T>(
    name: string,
    action: ChangeAction,
    fn: (key: KeyRecord, writer: LockedKeyWriter) => Promise<T>,
    options?: { readonly skipLocked?: boolean },
  ): Promise<{ result: T; key: KeyRecord } | undefined>;
}
