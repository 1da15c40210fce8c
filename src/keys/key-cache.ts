import type { Clock } from '../clock.js';
import { keyVersionWrapAad } from '../crypto/key-version-cipher.js';
import type { RootKey } from '../crypto/root-key.js';
import { SecretBytes } from '../crypto/secret-bytes.js';
import type { KeyRecord, WrappedKeyVersion } from './key-record.js';
import type { KeyRepository } from './key-repository.js';

/** A key as the hot path needs it: the record and the unwrapped material of its usable versions. */
export interface CachedKey {
  readonly key: KeyRecord;
  /** Only enabled versions of an enabled key are unwrapped; anything else cannot be used, so is not held. */
  readonly versionKeys: ReadonlyMap<number, SecretBytes>;
}

interface Entry extends CachedKey {
  readonly loadedAt: number;
}

export interface KeyCacheOptions {
  readonly repository: KeyRepository;
  readonly rootKey: RootKey;
  readonly clock: Clock;
  /** How long an entry is trusted before it is read again; bounds staleness against other replicas' writes. */
  readonly ttlMs: number;
  readonly maxEntries?: number;
}

/**
 * Serves keys to the crypto hot path from memory, so a datakey or decrypt costs no query. Every write on this
 * replica invalidates the entry after it commits; writes on other replicas are seen within `ttlMs`.
 *
 * A load that races an invalidation is not stored: each load remembers the invalidation epoch it started in.
 */
export class KeyCache {
  readonly #options: KeyCacheOptions;
  readonly #maxEntries: number;
  readonly #byId = new Map<string, Entry>();
  readonly #idByName = new Map<string, string>();
  readonly #inflight = new Map<string, Promise<Entry | undefined>>();
  /** Counts invalidations; a load remembers the count it started at. */
  #epoch = 0;
  /** Key id → the count at its last invalidation; a load of that key that started earlier is not kept. */
  readonly #invalidatedAt = new Map<string, number>();
  #clearedAt = 0;

  constructor(options: KeyCacheOptions) {
    this.#options = options;
    this.#maxEntries = options.maxEntries ?? 10_000;
  }

  async getByName(name: string): Promise<CachedKey | undefined> {
    const id = this.#idByName.get(name);
    const cached = id === undefined ? undefined : this.#fresh(id);
    return cached ?? this.#load(`name:${name}`, () => this.#options.repository.findByName(name));
  }

  async getById(id: string): Promise<CachedKey | undefined> {
    return this.#fresh(id) ?? this.#load(`id:${id}`, () => this.#options.repository.findById(id));
  }

  /**
   * Drops a key's entry and zeroes its material. Call after the write that changed it has committed. Loads of this
   * key already running may have read the old row: they are neither stored nor joined by later callers. Loads of
   * other keys are unaffected.
   */
  invalidate(key: { readonly id: string; readonly name: string }): void {
    this.#epoch += 1;
    this.#invalidatedAt.set(key.id, this.#epoch);
    this.#inflight.delete(`id:${key.id}`);
    this.#inflight.delete(`name:${key.name}`);
    this.#evict(key.id);
  }

  /**
   * Drops a key's entry if it was loaded at least `minAgeMs` ago; a younger one is kept. For a request that suggests
   * the entry is stale (a ciphertext under a version newer than the cached primary): the bound keeps made-up
   * versions from turning every request into a query.
   */
  invalidateIfOlderThan(key: { readonly id: string; readonly name: string }, minAgeMs: number): void {
    const entry = this.#byId.get(key.id);
    if (entry !== undefined && this.#options.clock.now().getTime() - entry.loadedAt < minAgeMs) return;
    this.invalidate(key);
  }

  /**
   * Unwraps `versions` of a key straight from the store, for one operation on material the cache does not hold
   * (revoked versions, or any version of a disabled key). Nothing is kept: the caller owns the returned material and
   * zeroes it once used. A version missing from the map has no material left (destroyed since `key` was read).
   */
  async unwrapUncached(key: KeyRecord, versions: readonly number[]): Promise<Map<number, SecretBytes>> {
    const wrapped = await this.#options.repository.findWrappedVersions(key.id, versions);
    const versionKeys = new Map<number, SecretBytes>();
    try {
      for (const version of wrapped) versionKeys.set(version.version, await this.#unwrap(key, version));
    } catch (error) {
      for (const material of versionKeys.values()) material.zero();
      throw error;
    }
    return versionKeys;
  }

  clear(): void {
    this.#epoch += 1;
    this.#clearedAt = this.#epoch;
    this.#inflight.clear();
    for (const id of [...this.#byId.keys()]) this.#evict(id);
  }

  #fresh(id: string): Entry | undefined {
    const entry = this.#byId.get(id);
    if (entry === undefined) return undefined;
    if (this.#options.clock.now().getTime() - entry.loadedAt >= this.#options.ttlMs) return undefined;
    return entry;
  }

  #load(flightKey: string, find: () => Promise<KeyRecord | undefined>): Promise<Entry | undefined> {
    const running = this.#inflight.get(flightKey);
    if (running !== undefined) return running;
    const started = this.#epoch;
    const load = (async () => {
      const key = await find();
      if (key === undefined) return undefined;
      const entry: Entry = {
        key,
        versionKeys: await this.#unwrapUsable(key),
        loadedAt: this.#options.clock.now().getTime(),
      };
      const invalidatedAt = Math.max(this.#clearedAt, this.#invalidatedAt.get(key.id) ?? 0);
      if (invalidatedAt <= started) this.#store(entry);
      return entry;
    })().finally(() => {
      if (this.#inflight.get(flightKey) === load) this.#inflight.delete(flightKey);
    });
    this.#inflight.set(flightKey, load);
    return load;
  }

  async #unwrapUsable(key: KeyRecord): Promise<Map<number, SecretBytes>> {
    const versionKeys = new Map<number, SecretBytes>();
    if (key.state !== 'enabled') return versionKeys;
    const usable = new Set(key.versions.filter((v) => v.state === 'enabled').map((v) => v.version));
    const wrapped = await this.#options.repository.findWrappedVersions(key.id);
    for (const version of wrapped) {
      if (usable.has(version.version)) versionKeys.set(version.version, await this.#unwrap(key, version));
    }
    return versionKeys;
  }

  async #unwrap(key: KeyRecord, version: WrappedKeyVersion): Promise<SecretBytes> {
    const material = await this.#options.rootKey.unwrapRecorded(
      version.rootKeyId,
      version.material,
      keyVersionWrapAad(key.id, version.version),
    );
    return SecretBytes.adopt(material);
  }

  #store(entry: Entry): void {
    const previous = this.#byId.get(entry.key.id);
    if (previous !== undefined && previous !== entry) this.#evict(entry.key.id);
    if (this.#byId.size >= this.#maxEntries) {
      const oldest = this.#byId.keys().next();
      if (!oldest.done) this.#evict(oldest.value);
    }
    this.#byId.set(entry.key.id, entry);
    this.#idByName.set(entry.key.name, entry.key.id);
  }

  #evict(id: string): void {
    const entry = this.#byId.get(id);
    if (entry === undefined) return;
    this.#byId.delete(id);
    this.#idByName.delete(entry.key.name);
    for (const material of entry.versionKeys.values()) material.zero();
  }
}
