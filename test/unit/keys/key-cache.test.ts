import { describe, expect, it } from 'vitest';
import { keyVersionWrapAad } from '../../../src/crypto/key-version-cipher.js';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { KeyCache } from '../../../src/keys/key-cache.js';
import type { KeyRecord, WrappedKeyVersion } from '../../../src/keys/key-record.js';
import type { KeyRepository } from '../../../src/keys/key-repository.js';
import { ManualClock } from '../../helpers/clock.js';

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

/** A repository whose reads the test releases by hand, to order them against invalidations. */
function controlledRepository(wrapped: WrappedKeyVersion[]) {
  const pending: Array<(key: KeyRecord) => void> = [];
  let reads = 0;
  const repository = {
    findByName: () => {
      reads += 1;
      return new Promise<KeyRecord>((resolve) => pending.push(resolve));
    },
    findById: () => Promise.reject(new Error('not used')),
    findWrappedVersions: async () => wrapped,
  } as unknown as KeyRepository;
  return { repository, pending, reads: () => reads };
}

describe('KeyCache', () => {
  it('a write to one key does not discard loads of another', async () => {
    const store = controlledRepository([]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    const first = cache.getByName('k');
    cache.invalidate({ id: '00000000-0000-4000-8000-000000000000', name: 'other' });
    const joined = cache.getByName('k');
    expect(store.reads()).toBe(1);
    store.pending[0]!(record('disabled'));
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

    store.pending[0]!(record('enabled'));
    store.pending[1]!(record('disabled'));
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
    store.pending[0]!(record('disabled'));
    expect(new Set(await Promise.all(loads)).size).toBe(1);
  });

  it('holds no material for a key that is not enabled', async () => {
    const material = await rootKey.wrap(Buffer.alloc(32, 1), keyVersionWrapAad(KEY_ID, 1));
    const store = controlledRepository([{ version: 1, rootKeyId: rootKey.id, material }]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    const load = cache.getByName('k');
    store.pending[0]!(record('disabled'));
    expect((await load)?.versionKeys.size).toBe(0);
  });

  it('zeroes the material of an entry it invalidates', async () => {
    const material = await rootKey.wrap(Buffer.alloc(32, 1), keyVersionWrapAad(KEY_ID, 1));
    const store = controlledRepository([{ version: 1, rootKeyId: rootKey.id, material }]);
    const cache = new KeyCache({ repository: store.repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    const load = cache.getByName('k');
    store.pending[0]!(record('enabled'));
    const versionKey = (await load)!.versionKeys.get(1)!;
    expect(versionKey.isZeroed).toBe(false);
    cache.invalidate({ id: KEY_ID, name: 'k' });
    expect(versionKey.isZeroed).toBe(true);
  });
});

describe('KeyCache: ids that name no key', () => {
  const UNKNOWN_ID = '0b7c1e2a-6f4d-4c3b-8a9e-1d2f3a4b5c6d';

  /** A repository that has no keys, counting its reads by id; `hold` makes the next read wait for `release`. */
  function emptyRepository() {
    const reads: string[] = [];
    let held: (() => void) | undefined;
    let hold = false;
    const repository = {
      findByName: () => Promise.reject(new Error('not used')),
      findById: (id: string) => {
        reads.push(id);
        if (!hold) return Promise.resolve(undefined);
        hold = false;
        return new Promise<undefined>((resolve) => (held = () => resolve(undefined)));
      },
      findWrappedVersions: async () => [],
    } as unknown as KeyRepository;
    return { repository, reads, holdNext: () => (hold = true), release: () => held?.() };
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
    let reads = 0;
    const repository = {
      findByName: async () => {
        reads += 1;
        return undefined;
      },
    } as unknown as KeyRepository;
    const cache = new KeyCache({ repository, rootKey, clock: new ManualClock(), ttlMs: 5000 });
    await cache.getByName('guessed');
    await cache.getByName('guessed');
    expect(reads).toBe(2);
  });
});
