import { describe, expect, it } from 'vitest';
import { keyVersionWrapAad } from '../../../src/crypto/key-version-cipher.js';
import { LocalRootKey } from '../../../src/crypto/root-key.js';
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
