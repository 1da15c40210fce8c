import type { Clock } from '../lib/clock.js';
import { keyVersionWrapAad } from '../crypto/key-version-cipher.js';
import type { RootKey } from '../root-keys/root-key.js';
import { SecretBytes } from '../crypto/secret-bytes.js';
import type { KeyRecord, WrappedKeyVersion } from './key-record.js';
import type { KeyRepository, RevisedKey } from './key-repository.js';

/** A key as the hot path needs it: the record and the unwrapped material of its usable versions. */
export interface CachedKey {
  readonly key: KeyRecord;
  /** Only enabled versions of an enabled key are unwrapped; anything else cannot be used, so is not held. */
  readonly versionKeys: ReadonlyMap<number, SecretBytes>;
}

interface Entry extends CachedKey {
  /** When the read that loaded the entry, or last found it unchanged, started. */
  loadedAt: number;
  /** The key's revision when it was read (see `RevisedKey`): an equal revision in the store means nothing changed. */
  readonly revision: number;
}

export interface KeyCacheOptions {
  readonly repository: KeyRepository;
  readonly rootKey: RootKey;
  readonly clock: Clock;
  /** How long an entry is trusted before it is read again; bounds staleness against other replicas' writes. */
  readonly ttlMs: number;
  readonly maxEntries?: number;
  /** How many ids found to name no key are remembered; the oldest is forgotten first. */
  readonly maxMissingIds?: number;
}

/**
 * Serves keys to the crypto hot path from memory, so a datakey or decrypt costs no query. Every write on this
 * replica invalidates the entry after it commits; writes on other replicas are seen within `ttlMs`. An entry past its
 * TTL is revalidated by the key's revision: when it is unchanged, one row is read and the newest version unwrapped
 * again, however many versions the key has; when it changed, the key is read again whole.
 *
 * A load that races an invalidation is not stored: each load remembers the invalidation epoch it started in.
 *
 * Ids that name no key are remembered too (a bounded negative cache), so a ciphertext under a made-up key id, sent
 * again and again, costs one query and not one per decrypt. Ids are random UUIDs that the creating replica picks,
 * so a remembered id is only ever created by a write that invalidates it (here, or through the change feed), and
 * stays trusted no longer than `ttlMs`. Names are not remembered missing: anyone may guess one, and create it.
 */
export class KeyCache {
  /** Lookups answered from memory (a negative entry included) and those that went to the store; read by the metrics. */
  readonly stats = { hits: 0, misses: 0 };
  readonly #options: KeyCacheOptions;
  readonly #maxEntries: number;
  readonly #maxMissingIds: number;
  readonly #byId = new Map<string, Entry>();
  /** Key id → when a load found no key of that id; insertion order is age order. */
  readonly #missingIds = new Map<string, number>();
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
    this.#maxMissingIds = options.maxMissingIds ?? 10_000;
  }

  async getByName(name: string): Promise<CachedKey | undefined> {
    const id = this.#idByName.get(name);
    const cached = id === undefined ? undefined : this.#fresh(id);
    if (cached !== undefined) {
      this.stats.hits += 1;
      return cached;
    }
    this.stats.misses += 1;
    return this.#load(`name:${name}`, { name }, id);
  }

  async getById(id: string): Promise<CachedKey | undefined> {
    const cached = this.#fresh(id);
    if (cached !== undefined || this.#knownMissing(id)) {
      this.stats.hits += 1;
      return cached;
    }
    this.stats.misses += 1;
    return this.#load(`id:${id}`, { id }, id, true);
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
    this.#missingIds.delete(key.id);
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

  /** Keys held now. */
  get size(): number {
    return this.#byId.size;
  }

  clear(): void {
    this.#epoch += 1;
    this.#clearedAt = this.#epoch;
    this.#inflight.clear();
    this.#missingIds.clear();
    for (const id of [...this.#byId.keys()]) this.#evict(id);
  }

  #fresh(id: string): Entry | undefined {
    const entry = this.#byId.get(id);
    if (entry === undefined) return undefined;
    if (this.#options.clock.now().getTime() - entry.loadedAt >= this.#options.ttlMs) return undefined;
    return entry;
  }

  #knownMissing(id: string): boolean {
    const foundMissingAt = this.#missingIds.get(id);
    if (foundMissingAt === undefined) return false;
    if (this.#options.clock.now().getTime() - foundMissingAt < this.#options.ttlMs) return true;
    this.#missingIds.delete(id);
    return false;
  }

  /**
   * Loads the key `where` names. `heldId`: the id of the entry held for it, if any, which is revalidated first.
   * `rememberMissing`: the load is by that id, which is remembered as missing when no key has it.
   */
  #load(
    flightKey: string,
    where: { readonly id: string } | { readonly name: string },
    heldId: string | undefined,
    rememberMissing = false,
  ): Promise<Entry | undefined> {
    const running = this.#inflight.get(flightKey);
    if (running !== undefined) return running;
    const started = this.#epoch;
    const load = (async () => {
      const held = heldId === undefined ? undefined : this.#byId.get(heldId);
      if (held !== undefined && (await this.#revalidate(held, started))) return held;
      // Trusted for a TTL from before the read, not from its end: a write that commits while the read or the unwraps
      // run is seen within the TTL all the same.
      const readAt = this.#options.clock.now().getTime();
      const revised: RevisedKey | undefined = await this.#options.repository.findRevised(where);
      if (revised === undefined) {
        if (rememberMissing && heldId !== undefined && !this.#invalidatedSince(heldId, started)) this.#storeMissing(heldId);
        return undefined;
      }
      const { key, revision } = revised;
      const entry: Entry = { key, versionKeys: await this.#unwrapUsable(key), revision, loadedAt: readAt };
      if (!this.#invalidatedSince(key.id, started)) this.#store(entry);
      return entry;
    })().finally(() => {
      if (this.#inflight.get(flightKey) === load) this.#inflight.delete(flightKey);
    });
    this.#inflight.set(flightKey, load);
    return load;
  }

  /**
   * Whether a held entry past its TTL may serve another TTL: the key's revision in the store is the one the entry was
   * read at, and the root key still unwraps the newest version held (so a root key in an HSM that is disabled or
   * unreachable stops the key within the TTL, as a full load would), and no invalidation came meanwhile.
   */
  async #revalidate(entry: Entry, started: number): Promise<boolean> {
    const { id } = entry.key;
    const checkedAt = this.#options.clock.now().getTime();
    if ((await this.#options.repository.findRevision(id)) !== entry.revision) return false;
    let newest = 0;
    for (const version of entry.versionKeys.keys()) newest = Math.max(newest, version);
    if (newest > 0) {
      const [stored] = await this.#options.repository.findWrappedVersions(id, [newest]);
      if (stored === undefined) return false;
      (await this.#unwrap(entry.key, stored)).zero();
    }
    if (this.#invalidatedSince(id, started) || this.#byId.get(id) !== entry) return false;
    entry.loadedAt = checkedAt;
    return true;
  }

  /** Whether the key was invalidated, or the cache cleared, since a load that started at epoch `started`. */
  #invalidatedSince(id: string, started: number): boolean {
    return Math.max(this.#clearedAt, this.#invalidatedAt.get(id) ?? 0) > started;
  }

  /**
   * Unwraps the usable versions of `key`, each through the root key. A changed key is read whole again: its entry was
   * dropped by the write's invalidation (here or through the change feed), and an unchanged one is revalidated
   * instead (see {@link #revalidate}).
   */
  async #unwrapUsable(key: KeyRecord): Promise<Map<number, SecretBytes>> {
    const versionKeys = new Map<number, SecretBytes>();
    if (key.state !== 'enabled') return versionKeys;
    const usable = new Set(key.versions.filter((v) => v.state === 'enabled').map((v) => v.version));
    try {
      for (const version of await this.#options.repository.findWrappedVersions(key.id)) {
        if (usable.has(version.version)) versionKeys.set(version.version, await this.#unwrap(key, version));
      }
    } catch (error) {
      for (const material of versionKeys.values()) material.zero();
      throw error;
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

  #storeMissing(id: string): void {
    this.#missingIds.delete(id);
    if (this.#missingIds.size >= this.#maxMissingIds) {
      const oldest = this.#missingIds.keys().next();
      if (!oldest.done) this.#missingIds.delete(oldest.value);
    }
    this.#missingIds.set(id, this.#options.clock.now().getTime());
  }

  #evict(id: string): void {
    const entry = this.#byId.get(id);
    if (entry === undefined) return;
    this.#byId.delete(id);
    this.#idByName.delete(entry.key.name);
    for (const material of entry.versionKeys.values()) material.zero();
  }
}
