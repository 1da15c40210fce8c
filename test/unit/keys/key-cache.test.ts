import { describe, expect, it } from 'vitest';
import { keyVersionWrapAad } from '../../../src/crypto/key-version-cipher.js';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { KeyCache } from '../../../src/keys/key-cache.js';
import type { KeyRecord, WrappedKeyVersion } from '../../../src/keys/key-record.js';
import type { RevisedKey } from '../../../src/keys/key-repository.js';
import { ManualClock } from '../../helpers/clock.js';
import { InMemoryKeyRepository } from '../../helpers/fakes/in-memory-key-repository.js';

const KEY_ID = '5d1f3a52-8c0e-4b7e-9a41-0f2c6b9d7e13';
const rootKey = new LocalRootKey(SecretBytes.random(32));

function record(state: KeyRecord['state']): KeyRecord {
  const at = new Date(0);
  return {
    id: KEY_ID,
    name: 'k',
    description: '',
    labels: {},
    boundContext: [],
    state,
    primaryVersion: 1,
    minDecryptionVersion: 1,
    rotationPeriodSeconds: null,
    retainVersions: null,
    nextRotationAt: null,
    deletionDate: null,
    createdAt: at,
    updatedAt: at,
    destroyedAt: null,
    versions: [{ version: 1, state: 'enabled', rootKeyId: rootKey.id, createdAt: at, updatedAt: at, destroyedAt: null }],
  };
}

/** The in-memory repository, whose reads of a whole key wait until the test lets each run, to order them against invalidations. */
class HeldKeyRepository extends InMemoryKeyRepository {
  readonly #turns: Array<{ run: () => void; finished: Promise<void> }> = [];

  /** How many reads of a whole key have started, run or not. */
  get startedReads(): number {
    return this.#turns.length;
  }

  override async findRevised(where: { readonly id: string } | { readonly name: string }): Promise<RevisedKey | undefined> {
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    await new Promise<void>((run) => this.#turns.push({ run, finished }));
    try {
      return await super.findRevised(where);
    } finally {
      done();
    }
  }

  /** Lets the `index`th read run, and waits until it has read. */
  async release(index: number): Promise<void> {
    const turn = this.#turns[index]!;
    turn.run();
    await turn.finished;
  }
}

/** Key `k`, whose reads the test answers one at a time, each with the key as stored by then. */
function controlledRepository(wrapped: WrappedKeyVersion[]) {
  const repository = new HeldKeyRepository();
  return {
    repository,
    reads: () => repository.startedReads,
    /** Stores key `k` in `state`, then lets the `index`th read run against it. */
    answer: (index: number, state: KeyRecord['state']) => {
      repository.seed(record(state), wrapped);
      return repository.release(index);
    },
  };
}

describe('KeyCache', () => {
  it('a write to one key does not discard loads of another', async () => {
    const store = controlledRepository([]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    const first = cache.getByName('k');
    cache.invalidate({ id: '00000000-0000-4000-8000-000000000000', name: 'other' });
    const joined = cache.getByName('k');
    expect(store.reads()).toBe(1);
    await store.answer(0, 'disabled');
    expect(await joined).toBe(await first);
    expect(await cache.getByName('k')).toBe(await first);
    expect(store.reads()).toBe(1);
  });

  it('a caller arriving after an invalidation does not join a load that started before it', async () => {
    const material = await rootKey.wrap(Buffer.alloc(32, 1), keyVersionWrapAad(KEY_ID, 1));
    const store = controlledRepository([{ version: 1, rootKeyId: rootKey.id, material }]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });

    const before = cache.getByName('k');
    cache.invalidate({ id: KEY_ID, name: 'k' });
    const after = cache.getByName('k');
    expect(store.reads()).toBe(2);

    await store.answer(0, 'enabled');
    await store.answer(1, 'disabled');
    expect((await before)?.key.state).toBe('enabled');
    expect((await after)?.key.state).toBe('disabled');
    // Only the load that began after the invalidation is kept.
    expect((await cache.getByName('k'))?.key.state).toBe('disabled');
    expect(store.reads()).toBe(2);
  });

  it('concurrent misses for one key share a single read (single flight)', async () => {
    const store = controlledRepository([]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    const loads = [cache.getByName('k'), cache.getByName('k'), cache.getByName('k')];
    expect(store.reads()).toBe(1);
    await store.answer(0, 'disabled');
    expect(new Set(await Promise.all(loads)).size).toBe(1);
  });

  it('holds no material for a key that is not enabled', async () => {
    const material = await rootKey.wrap(Buffer.alloc(32, 1), keyVersionWrapAad(KEY_ID, 1));
    const store = controlledRepository([{ version: 1, rootKeyId: rootKey.id, material }]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    const load = cache.getByName('k');
    await store.answer(0, 'disabled');
    expect((await load)?.versionKeys.size).toBe(0);
  });

  it('zeroes the material of an entry it invalidates', async () => {
    const material = await rootKey.wrap(Buffer.alloc(32, 1), keyVersionWrapAad(KEY_ID, 1));
    const store = controlledRepository([{ version: 1, rootKeyId: rootKey.id, material }]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    const load = cache.getByName('k');
    await store.answer(0, 'enabled');
    const versionKey = (await load)!.versionKeys.get(1)!;
    expect(versionKey.isZeroed).toBe(false);
    cache.invalidate({ id: KEY_ID, name: 'k' });
    expect(versionKey.isZeroed).toBe(true);
  });
});

describe('KeyCache: a reload after the TTL', () => {
  /** The file root key, counting the versions it unwraps. */
  class CountingRootKey extends LocalRootKey {
    unwraps = 0;
    override async unwrapRecorded(rootKeyId: string, wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
      this.unwraps += 1;
      return super.unwrapRecorded(rootKeyId, wrapped, aad);
    }
  }

  function withVersions(count: number, root: LocalRootKey): KeyRecord {
    const base = record('enabled');
    const at = new Date(0);
    const versions = Array.from({ length: count }, (_, i) => ({ ...base.versions[0]!, version: i + 1, rootKeyId: root.id, createdAt: at }));
    return { ...base, primaryVersion: count, versions };
  }

  async function wrappedVersions(count: number, root: LocalRootKey): Promise<WrappedKeyVersion[]> {
    return Promise.all(
      Array.from({ length: count }, async (_, i) => ({
        version: i + 1,
        rootKeyId: root.id,
        material: await root.wrap(Buffer.alloc(32, i + 1), keyVersionWrapAad(KEY_ID, i + 1)),
      })),
    );
  }

  function bytesOf(material: SecretBytes | undefined): Buffer {
    return material!.use((bytes) => Buffer.from(bytes));
  }

  /** Key `k` with `count` versions in an in-memory store, loaded once into a cache whose TTL the test runs out. */
  async function loadedOnce(count: number) {
    const root = new CountingRootKey(SecretBytes.random(32));
    const repository = new InMemoryKeyRepository();
    const wrapped = await wrappedVersions(count, root);
    repository.seed(withVersions(count, root), wrapped);
    const clock = new ManualClock();
    const cache = new KeyCache({ repository, rootKey: root, clock, ttlMs: 5000 });
    const first = (await cache.getByName('k'))!;
    return { root, repository, wrapped, clock, cache, first };
  }

  it('reads a changed key whole, every usable version unwrapped again through the root key, and zeroes the entry it replaces', async () => {
    const { root, repository, wrapped, clock, cache, first } = await loadedOnce(5);
    expect(root.unwraps).toBe(5);

    // Stored again (a write elsewhere whose invalidation has not reached this replica): a new revision.
    repository.seed(withVersions(5, root), wrapped);
    clock.advance(5000);
    const second = (await cache.getByName('k'))!;
    expect(root.unwraps).toBe(10);
    for (let version = 1; version <= 5; version += 1) expect(bytesOf(second.versionKeys.get(version))).toEqual(Buffer.alloc(32, version));
    // The entry it replaced is zeroed; the new one holds material of its own.
    expect([...first.versionKeys.values()].every((material) => material.isZeroed)).toBe(true);
    expect([...second.versionKeys.values()].some((material) => material.isZeroed)).toBe(false);
  });

  it('revalidates an unchanged key by its revision: one row read, the newest version unwrapped again, the entry kept', async () => {
    const { root, repository, clock, cache, first } = await loadedOnce(5);
    const before = { ...repository.reads };
    clock.advance(5000);
    const again = (await cache.getByName('k'))!;
    expect(again).toBe(first);
    expect(repository.reads.findRevision - before.findRevision).toBe(1);
    expect(repository.reads.findRevisedByName - before.findRevisedByName).toBe(0);
    expect(repository.reads.findWrappedVersions - before.findWrappedVersions).toBe(1);
    expect(root.unwraps).toBe(6);
    expect([...again.versionKeys.values()].some((material) => material.isZeroed)).toBe(false);
    // Good for another TTL from the check, not from the first load.
    clock.advance(4999);
    await cache.getByName('k');
    expect(repository.reads.findRevision - before.findRevision).toBe(1);
  });

  it('keeps an entry whose material a root key rotation moved (the revision stays), proving the newest as stored now', async () => {
    const { root, repository, wrapped, clock, cache, first } = await loadedOnce(3);
    const rewrapped = await Promise.all(wrapped.map(async (v) => ({ ...v, material: await root.wrap(Buffer.alloc(32, v.version), keyVersionWrapAad(KEY_ID, v.version)) })));
    repository.rewrapMaterial('k', rewrapped);
    // The old material no longer unwraps, as under a retired root key.
    const unwrap = root.unwrapRecorded.bind(root);
    root.unwrapRecorded = async (rootKeyId, material, aad) => {
      if (wrapped.some((v) => v.material.equals(material))) throw new Error('retired');
      return unwrap(rootKeyId, material, aad);
    };
    clock.advance(5000);
    expect(await cache.getByName('k')).toBe(first);
    expect(root.unwraps).toBe(4);
    expect(bytesOf(first.versionKeys.get(3))).toEqual(Buffer.alloc(32, 3));
  });

  it('reads the whole key again once a write raised its revision', async () => {
    const { root, repository, clock, cache, first } = await loadedOnce(3);
    await repository.mutate('k', 'update', async (_key, writer) => writer.setVersionState(2, 'disabled', new Date(1)));
    clock.advance(5000);
    const reloaded = (await cache.getByName('k'))!;
    expect([...reloaded.versionKeys.keys()]).toEqual([1, 3]);
    expect([...first.versionKeys.values()].every((material) => material.isZeroed)).toBe(true);
    // Versions 1 and 3, the usable ones, unwrapped again.
    expect(root.unwraps).toBe(5);
  });

  it('does not keep an entry invalidated while its revalidation waits', async () => {
    const { root, clock, cache, first } = await loadedOnce(2);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const unwrap = root.unwrapRecorded.bind(root);
    let waiting = false;
    root.unwrapRecorded = async (...args) => {
      if (!waiting) {
        waiting = true;
        await held;
      }
      return unwrap(...args);
    };
    clock.advance(5000);
    const reload = cache.getByName('k');
    while (!waiting) await new Promise((resolve) => setImmediate(resolve));
    cache.invalidate({ id: KEY_ID, name: 'k' });
    release();
    const reloaded = (await reload)!;
    expect(reloaded).not.toBe(first);
    expect([...first.versionKeys.values()].every((material) => material.isZeroed)).toBe(true);
    expect(bytesOf(reloaded.versionKeys.get(2))).toEqual(Buffer.alloc(32, 2));
  });

  it('unwraps the newest version through the root key on every load, so a root key that stops answering stops the key', async () => {
    const { root, clock, cache } = await loadedOnce(3);
    root.unwrapRecorded = async () => {
      throw new Error('the HSM refused');
    };
    clock.advance(5000);
    await expect(cache.getByName('k')).rejects.toThrow('the HSM refused');
  });

  it('does not carry over a version disabled since the last load', async () => {
    const { root, repository, wrapped, clock, cache } = await loadedOnce(3);
    const key = withVersions(3, root);
    repository.seed({ ...key, versions: key.versions.map((v) => (v.version === 2 ? { ...v, state: 'disabled' as const } : v)) }, wrapped);
    clock.advance(5000);
    const reloaded = (await cache.getByName('k'))!;
    expect([...reloaded.versionKeys.keys()]).toEqual([1, 3]);
  });

  it('keeps what a reload unwrapped when the entry it replaces is evicted while one of its unwraps waits', async () => {
    const { root, repository, wrapped, clock, cache } = await loadedOnce(3);
    // Version 1 rewrapped: the reload unwraps it, and the test holds that unwrap while the entry is invalidated.
    const rewrapped = [{ ...wrapped[0]!, material: await root.wrap(Buffer.alloc(32, 1), keyVersionWrapAad(KEY_ID, 1)) }, ...wrapped.slice(1)];
    repository.seed(withVersions(3, root), rewrapped);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const unwrap = root.unwrapRecorded.bind(root);
    let first = true;
    root.unwrapRecorded = async (...args) => {
      if (first) {
        first = false;
        await held;
      }
      return unwrap(...args);
    };
    clock.advance(5000);
    const reload = cache.getByName('k');
    while (first) await new Promise((resolve) => setImmediate(resolve));
    cache.invalidate({ id: KEY_ID, name: 'k' });
    release();
    const reloaded = (await reload)!;
    // 3 for the first load, then all 3 again; none of the reload's material was zeroed with the evicted entry.
    expect(root.unwraps).toBe(6);
    for (let version = 1; version <= 3; version += 1) expect(bytesOf(reloaded.versionKeys.get(version))).toEqual(Buffer.alloc(32, version));
  });

  it('unwraps again what an invalidation zeroed while the reload ran', async () => {
    const root = new CountingRootKey(SecretBytes.random(32));
    const wrapped = await wrappedVersions(2, root);
    const store = controlledRepository(wrapped);
    store.repository.seed(withVersions(2, root), wrapped);
    const clock = new ManualClock();
    const cache = new KeyCache({ repository: store.repository, rootKey: root, clock, ttlMs: 5000 });
    const load = cache.getByName('k');
    await store.repository.release(0);
    await load;
    expect(root.unwraps).toBe(2);
    // Stored again (a write elsewhere, its invalidation not here yet): past the TTL the key is read again whole.
    store.repository.seed(withVersions(2, root), wrapped);
    clock.advance(5000);
    const reload = cache.getByName('k');
    // Once the reload has found the revision changed, its read of the key starts (the repository holds it): the
    // invalidation comes before it reads the versions.
    while (store.reads() < 2) await new Promise((resolve) => setImmediate(resolve));
    // The key changed elsewhere: its entry goes, material zeroed, before the reload reads the versions.
    cache.invalidate({ id: KEY_ID, name: 'k' });
    await store.repository.release(1);
    const reloaded = await reload;
    expect(root.unwraps).toBe(4);
    expect(bytesOf(reloaded?.versionKeys.get(2))).toEqual(Buffer.alloc(32, 2));
  });
});

describe('KeyCache: ids that name no key', () => {
  const UNKNOWN_ID = '0b7c1e2a-6f4d-4c3b-8a9e-1d2f3a4b5c6d';

  /** A repository that has no keys, noting the ids it is asked for; `holdNext` makes the next read by id wait for `release`. */
  class EmptyKeyRepository extends InMemoryKeyRepository {
    readonly idReads: string[] = [];
    #hold = false;
    #held: (() => void) | undefined;

    override async findRevised(where: { readonly id: string } | { readonly name: string }): Promise<RevisedKey | undefined> {
      if ('id' in where) this.idReads.push(where.id);
      if (this.#hold) {
        this.#hold = false;
        await new Promise<void>((resolve) => (this.#held = resolve));
      }
      return super.findRevised(where);
    }

    holdNext(): void {
      this.#hold = true;
    }

    release(): void {
      this.#held?.();
    }
  }

  function emptyRepository() {
    const repository = new EmptyKeyRepository();
    return { repository, reads: repository.idReads, holdNext: () => repository.holdNext(), release: () => repository.release() };
  }

  it('a second lookup of an unknown id runs no query', async () => {
    const store = emptyRepository();
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    expect(await cache.getById(UNKNOWN_ID)).toBeUndefined();
    expect(await cache.getById(UNKNOWN_ID)).toBeUndefined();
    expect(store.reads).toEqual([UNKNOWN_ID]);
  });

  it('an unknown id is looked up again once invalidated (a key created here or on another replica), or after the TTL', async () => {
    const store = emptyRepository();
    const clock = new ManualClock();
    const cache = new KeyCache({ repository: store.repository, rootKey, clock, ttlMs: 5000 });
    await cache.getById(UNKNOWN_ID);
    cache.invalidate({ id: UNKNOWN_ID, name: 'created-later' });
    await cache.getById(UNKNOWN_ID);
    expect(store.reads).toHaveLength(2);
    clock.advance(5000);
    await cache.getById(UNKNOWN_ID);
    expect(store.reads).toHaveLength(3);
    cache.clear();
    await cache.getById(UNKNOWN_ID);
    expect(store.reads).toHaveLength(4);
  });

  it('a miss read before an invalidation of that id is not remembered', async () => {
    const store = emptyRepository();
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    store.holdNext();
    const before = cache.getById(UNKNOWN_ID);
    cache.invalidate({ id: UNKNOWN_ID, name: 'just-created' });
    store.release();
    expect(await before).toBeUndefined();
    await cache.getById(UNKNOWN_ID);
    expect(store.reads).toHaveLength(2);
  });

  it('remembers at most maxMissingIds ids, forgetting the oldest first', async () => {
    const store = emptyRepository();
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000, maxMissingIds: 2 });
    const ids = ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003'];
    for (const id of ids) await cache.getById(id);
    await cache.getById(ids[2]!);
    await cache.getById(ids[1]!);
    expect(store.reads).toEqual(ids);
    await cache.getById(ids[0]!);
    expect(store.reads).toEqual([...ids, ids[0]]);
  });

  it('names are never remembered missing: anyone may guess one, then create it', async () => {
    const repository = new InMemoryKeyRepository();
    const cache = new KeyCache({ repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    await cache.getByName('guessed');
    await cache.getByName('guessed');
    expect(repository.reads.findRevisedByName).toBe(2);
  });
});
