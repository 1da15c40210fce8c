import type { ChangeAction } from '../../../src/changes/change.js';
import { KeyholdError } from '../../../src/errors.js';
import { findVersion, type KeyRecord, type KeySummary, type KeyVersionRecord, type WrappedKeyVersion } from '../../../src/keys/key-record.js';
import type { KeyChanges, KeyListQuery, KeyRepository, LockedKeyWriter, NewVersion, RevisedKey } from '../../../src/keys/key-repository.js';

/** A change the repository recorded with a write, as the change feed would hold it. */
export interface RecordedKeyChange {
  readonly action: ChangeAction;
  readonly subject: string;
  readonly keyName: string;
  readonly at: Date;
}

interface StoredKey {
  key: KeyRecord;
  /** Version → wrapped material; absent once destroyed. */
  material: Map<number, WrappedKeyVersion>;
  /** Raised by every mutation that wrote. */
  revision: number;
}

/** A key as the store's listing summarises it. */
function summaryOf(key: KeyRecord): KeySummary {
  const { versions, ...record } = key;
  return {
    ...record,
    versionCount: versions.length,
    enabledVersionCount: versions.filter((version) => version.state === 'enabled').length,
    primaryVersionCreatedAt: findVersion(key, key.primaryVersion)?.createdAt ?? key.createdAt,
  };
}

function copyKey(key: KeyRecord): KeyRecord {
  return { ...key, labels: { ...key.labels }, boundContext: [...key.boundContext], versions: key.versions.map((v) => ({ ...v })) };
}

/**
 * {@link KeyRepository} in memory, keeping its contract: names and ids unique, byte-wise name order, writes of one
 * `mutate` applied together or not at all (a throw rolls them back), one key's mutations one after another, and a
 * change recorded with every write. It counts what it reads, as a database would be asked.
 */
export class InMemoryKeyRepository implements KeyRepository {
  readonly #keys = new Map<string, StoredKey>();
  readonly #locks = new Map<string, Promise<void>>();
  readonly changes: RecordedKeyChange[] = [];
  readonly reads = { findByName: 0, findNameById: 0, findRevisedByName: 0, findRevisedById: 0, findRevision: 0, list: 0, listedRows: 0, findWrappedVersions: 0 };

  /** Stores a key as it is, with the wrapped material of `wrapped`, recording no change; a key stored again is a new revision. */
  seed(key: KeyRecord, wrapped: readonly WrappedKeyVersion[] = []): void {
    const revision = (this.#keys.get(key.name)?.revision ?? -1) + 1;
    this.#keys.set(key.name, { key: copyKey(key), material: new Map(wrapped.map((v) => [v.version, { ...v }])), revision });
  }

  /** Replaces versions' wrapped material as a root key rotation does: no change recorded, the revision kept. */
  rewrapMaterial(name: string, wrapped: readonly WrappedKeyVersion[]): void {
    const stored = this.#keys.get(name)!;
    for (const version of wrapped) stored.material.set(version.version, { ...version, material: Buffer.from(version.material) });
  }

  async create(key: KeyRecord, firstVersion: NewVersion): Promise<void> {
    if (this.#keys.has(key.name) || [...this.#keys.values()].some((stored) => stored.key.id === key.id)) {
      throw new KeyholdError('KH_ERR_KEY_EXISTS');
    }
    const stored: StoredKey = { key: copyKey(key), material: new Map(), revision: 0 };
    insertVersion(stored, firstVersion);
    this.#keys.set(key.name, stored);
    this.changes.push({ action: 'create', subject: key.id, keyName: key.name, at: key.createdAt });
  }

  async findByName(name: string): Promise<KeyRecord | undefined> {
    this.reads.findByName += 1;
    const stored = this.#keys.get(name);
    return stored === undefined ? undefined : copyKey(stored.key);
  }

  async findNameById(id: string): Promise<string | undefined> {
    this.reads.findNameById += 1;
    return this.#byId(id)?.key.name;
  }

  async findRevised(where: { readonly id: string } | { readonly name: string }): Promise<RevisedKey | undefined> {
    if ('id' in where) this.reads.findRevisedById += 1;
    else this.reads.findRevisedByName += 1;
    const stored = 'id' in where ? this.#byId(where.id) : this.#keys.get(where.name);
    return stored === undefined ? undefined : { key: copyKey(stored.key), revision: stored.revision };
  }

  async findRevision(id: string): Promise<number | undefined> {
    this.reads.findRevision += 1;
    return this.#byId(id)?.revision;
  }

  async list(query: KeyListQuery): Promise<KeySummary[]> {
    const rows = [...this.#keys.keys()]
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      .filter((name) => name.startsWith(query.prefix ?? '') && (query.after === undefined || name > query.after))
      .slice(0, query.limit)
      .map((name) => summaryOf(copyKey(this.#keys.get(name)!.key)));
    this.reads.list += 1;
    this.reads.listedRows += rows.length;
    return rows;
  }

  async findWrappedVersions(keyId: string, versions?: readonly number[]): Promise<WrappedKeyVersion[]> {
    this.reads.findWrappedVersions += 1;
    const stored = this.#byId(keyId);
    if (stored === undefined) return [];
    return [...stored.material.values()]
      .filter((v) => versions === undefined || versions.includes(v.version))
      .sort((a, b) => a.version - b.version)
      .map((v) => ({ ...v, material: Buffer.from(v.material) }));
  }

  async findDueForDestruction(now: Date, limit: number): Promise<string[]> {
    return this.#due((key) => (key.state === 'pending_deletion' ? key.deletionDate : null), now, limit);
  }

  async findDueForRotation(now: Date, limit: number): Promise<string[]> {
    return this.#due((key) => (key.state === 'enabled' ? key.nextRotationAt : null), now, limit);
  }

  async mutate<T>(
    name: string,
    action: ChangeAction,
    fn: (key: KeyRecord, writer: LockedKeyWriter) => Promise<T>,
    options: { readonly skipLocked?: boolean } = {},
  ): Promise<{ result: T; key: KeyRecord } | undefined> {
    const held = this.#locks.get(name);
    if (held !== undefined && options.skipLocked === true) return undefined;
    let release!: () => void;
    const lock = new Promise<void>((resolve) => (release = resolve));
    const queued = (held ?? Promise.resolve()).then(() => lock);
    this.#locks.set(name, queued);
    try {
      await held;
      const stored = this.#keys.get(name);
      if (stored === undefined) return undefined;
      // The writes go to a draft, kept only if `fn` returns: a transaction that rolls back on a throw.
      const draft: StoredKey = { key: copyKey(stored.key), material: new Map(stored.material), revision: stored.revision };
      let recorded: { action: ChangeAction; at: Date } | undefined;
      const wrote = (at: Date, destroyed = false) => {
        recorded = { action: destroyed ? 'destroy' : (recorded?.action ?? action), at };
      };
      const writer: LockedKeyWriter = {
        updateKey: async (changes) => {
          draft.key = applyChanges(draft.key, changes);
          wrote(changes.updatedAt);
        },
        insertVersion: async (version) => {
          insertVersion(draft, version);
          wrote(version.createdAt);
        },
        setVersionState: async (version, state, at) => {
          draft.key = {
            ...draft.key,
            versions: draft.key.versions.map((v) => (v.version === version ? { ...v, state, updatedAt: at } : v)),
          };
          wrote(at);
        },
        destroyAllVersions: async (at) => {
          draft.key = {
            ...draft.key,
            versions: draft.key.versions.map((v) => ({ ...v, state: 'destroyed', updatedAt: at, destroyedAt: at })),
          };
          draft.material.clear();
          wrote(at, true);
        },
      };
      const result = await fn(copyKey(stored.key), writer);
      if (recorded !== undefined) draft.revision += 1;
      this.#keys.set(name, draft);
      if (recorded !== undefined) this.changes.push({ action: recorded.action, subject: draft.key.id, keyName: name, at: recorded.at });
      return { result, key: copyKey(draft.key) };
    } finally {
      release();
      if (this.#locks.get(name) === queued) this.#locks.delete(name);
    }
  }

  #byId(id: string): StoredKey | undefined {
    return [...this.#keys.values()].find((stored) => stored.key.id === id);
  }

  #due(dateOf: (key: KeyRecord) => Date | null, now: Date, limit: number): string[] {
    return [...this.#keys.values()]
      .map(({ key }) => ({ name: key.name, at: dateOf(key) }))
      .filter((due): due is { name: string; at: Date } => due.at !== null && due.at.getTime() <= now.getTime())
      .sort((a, b) => a.at.getTime() - b.at.getTime())
      .slice(0, limit)
      .map((due) => due.name);
  }
}

function applyChanges(key: KeyRecord, changes: KeyChanges): KeyRecord {
  const defined = Object.fromEntries(Object.entries(changes).filter(([, value]) => value !== undefined));
  return { ...key, ...defined };
}

function insertVersion(stored: StoredKey, version: NewVersion): void {
  const record: KeyVersionRecord = {
    version: version.version,
    state: version.state,
    rootKeyId: version.rootKeyId,
    createdAt: version.createdAt,
    updatedAt: version.createdAt,
    destroyedAt: null,
  };
  stored.key = { ...stored.key, versions: [...stored.key.versions, record].sort((a, b) => a.version - b.version) };
  stored.material.set(version.version, { version: version.version, rootKeyId: version.rootKeyId, material: Buffer.from(version.material) });
}
