import { describe, expect, it } from 'vitest';
import { callerOf } from '../../../src/context/caller.js';
import { keyVersionWrapAad, sealWithKeyVersion } from '../../../src/crypto/key-version-cipher.js';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { KeyholdError } from '../../../src/errors.js';
import type { Principal } from '../../../src/context/principal.js';
import { EnvelopeService } from '../../../src/keys/envelope-service.js';
import { KeyCache } from '../../../src/keys/key-cache.js';
import type { KeyRecord, KeyState, WrappedKeyVersion } from '../../../src/keys/key-record.js';
import { PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { EMPTY_POLICY_SET } from '../../../src/policy/evaluate.js';
import { ManualClock } from '../../helpers/clock.js';
import { InMemoryKeyRepository } from '../../helpers/fakes/in-memory-key-repository.js';
import { FIXTURE_KEY_ID, keyRecord, versionRecord } from '../../helpers/key-fixtures.js';

/**
 * The key cache holds only what workloads may use. Rewrap-revoked therefore unwraps the revoked version (and, for a
 * disabled key, the primary) for its one request: these tests check that the material is zeroed when the request
 * ends, whatever its outcome, and that the cache never starts holding it.
 */

const rootKey = new LocalRootKey(SecretBytes.random(32));
const ADMIN: Principal = Object.freeze({ id: 'token:root', type: 'token', admin: true, attributes: Object.freeze({}) });
const CONTEXT = { tenant: 'acme' };
const VERSION_KEYS = [1, 2].map((version) => Buffer.alloc(32, version));

async function storedVersions(): Promise<WrappedKeyVersion[]> {
  return Promise.all(
    VERSION_KEYS.map(async (material, index) => ({
      version: index + 1,
      rootKeyId: rootKey.id,
      material: await rootKey.wrap(material, keyVersionWrapAad(FIXTURE_KEY_ID, index + 1)),
    })),
  );
}

/** Version 1 disabled, version 2 primary, the key in `state`; every unwrap the cache hands out is recorded. */
async function setUp(state: KeyState = 'enabled') {
  const key: KeyRecord = keyRecord({ state, primaryVersion: 2, versions: [versionRecord(1, 'disabled'), versionRecord(2)] });
  const wrapped = await storedVersions();
  const repository = new InMemoryKeyRepository();
  repository.seed(key, wrapped);
  const clock = new ManualClock();
  const cache = new KeyCache({ repository, rootKey, clock, ttlMs: 60_000 });
  const handedOut: SecretBytes[] = [];
  const unwrapUncached = cache.unwrapUncached.bind(cache);
  cache.unwrapUncached = async (record, versions) => {
    const material = await unwrapUncached(record, versions);
    handedOut.push(...material.values());
    return material;
  };
  const crypto = new EnvelopeService({ cache, authorizer: new PolicyAuthorizer(() => EMPTY_POLICY_SET), clock });
  const ciphertext = sealWithKeyVersion({
    keyId: key.id,
    keyVersion: 1,
    versionKey: SecretBytes.adopt(Buffer.from(VERSION_KEYS[0]!)),
    plaintext: Buffer.from('secret'),
    context: CONTEXT,
  });
  return { key, cache, crypto, ciphertext, handedOut };
}

describe('rewrap-revoked: the material it unwraps', () => {
  it('unwraps the revoked version and the primary for the request, and zeroes both before it answers', async () => {
    const { key, crypto, ciphertext, handedOut } = await setUp();
    const moved = await crypto.rewrapRevoked(callerOf(ADMIN), key.name, { ciphertext, context: CONTEXT });
    expect(moved.keyVersion).toBe(2);
    expect(handedOut).toHaveLength(2);
    expect(handedOut.map((material) => material.isZeroed)).toEqual([true, true]);
  });

  it('zeroes the material when the ciphertext fails to open', async () => {
    const { key, crypto, ciphertext, handedOut } = await setUp();
    const error = await crypto.rewrapRevoked(callerOf(ADMIN), key.name, { ciphertext, context: { tenant: 'evil' } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'KH_ERR_DECRYPTION_FAILED' });
    expect(handedOut).toHaveLength(2);
    expect(handedOut.map((material) => material.isZeroed)).toEqual([true, true]);
  });

  it('leaves the cache holding only the primary version of an enabled key', async () => {
    const { key, cache, crypto, ciphertext } = await setUp();
    await crypto.rewrapRevoked(callerOf(ADMIN), key.name, { ciphertext, context: CONTEXT });
    expect([...(await cache.getById(key.id))!.versionKeys.keys()]).toEqual([2]);
  });

  it('leaves the cache holding nothing of a disabled key', async () => {
    const { key, cache, crypto, ciphertext, handedOut } = await setUp('disabled');
    await crypto.rewrapRevoked(callerOf(ADMIN), key.name, { ciphertext, context: CONTEXT });
    expect((await cache.getById(key.id))!.versionKeys.size).toBe(0);
    expect(handedOut.map((material) => material.isZeroed)).toEqual([true, true]);
  });

  it('unwraps nothing when the key state refuses', async () => {
    const { key, crypto, ciphertext, handedOut } = await setUp('pending_deletion');
    const error = await crypto.rewrapRevoked(callerOf(ADMIN), key.name, { ciphertext, context: CONTEXT }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeyholdError);
    expect(error).toMatchObject({ code: 'KH_ERR_KEY_PENDING_DELETION' });
    expect(handedOut).toHaveLength(0);
  });
});
