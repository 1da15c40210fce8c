import { describe, expect, it } from 'vitest';
import { uuidToBytes } from '../../../src/crypto/ciphertext-format.js';
import { DecryptionFailedError, KeyholdError } from '../../../src/errors.js';
import { DECRYPTION_FAILED_MESSAGE } from '../../helpers/expect-error.js';
import { keyWorld } from '../../helpers/fakes/key-world.js';

const PREFIX = 'kh1:';
const OTHER_ID = '0f8fad5b-d9cb-469f-a165-70867728950e';

function bytesOf(ciphertext: string): Buffer {
  return Buffer.from(ciphertext.slice(PREFIX.length), 'base64url');
}

/** The ciphertext with one bit of its tag flipped. */
function tampered(ciphertext: string): string {
  const bytes = bytesOf(ciphertext);
  bytes[bytes.length - 1]! ^= 1;
  return PREFIX + bytes.toString('base64url');
}

/** The ciphertext with its header naming another key id. */
function naming(ciphertext: string, fromId: string, toId: string): string {
  const bytes = bytesOf(ciphertext);
  const at = bytes.indexOf(uuidToBytes(fromId));
  uuidToBytes(toId).copy(bytes, at);
  return PREFIX + bytes.toString('base64url');
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toBeInstanceOf(KeyholdError);
  await expect(promise).rejects.toMatchObject({ code });
}

/** Every decryption failure is the same error with the same message (RFC 7516 §11.5): no oracle. */
async function failsAlike(promise: Promise<unknown>): Promise<void> {
  await expect(promise).rejects.toBeInstanceOf(DecryptionFailedError);
  await expect(promise).rejects.toMatchObject({ code: 'KH_ERR_DECRYPTION_FAILED', message: DECRYPTION_FAILED_MESSAGE });
}

async function worldWithKey(statements: Parameters<typeof keyWorld>[0] = []) {
  const world = keyWorld(statements);
  const key = await world.keys.create(world.admin(), { name: 'team.k' });
  return { ...world, key };
}

describe('EnvelopeService.encrypt and decrypt', () => {
  it('decrypts what it encrypted, under the same context', async () => {
    const world = await worldWithKey();
    const sealed = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('secret'), context: { tenant: 'a' } });
    expect(sealed).toMatchObject({ keyId: world.key.id, keyName: 'team.k', keyVersion: 1 });
    const opened = await world.envelope.decrypt(world.admin(), { ciphertext: sealed.ciphertext, context: { tenant: 'a' } });
    expect(opened.plaintext.toString()).toBe('secret');
  });

  it('zeroes the plaintext it was handed once it is sealed', async () => {
    const world = await worldWithKey();
    const plaintext = Buffer.from('secret');
    await world.envelope.encrypt(world.admin(), 'team.k', { plaintext });
    expect(plaintext.every((byte) => byte === 0)).toBe(true);
  });

  it('refuses a plaintext over 4096 bytes', async () => {
    const world = await worldWithKey();
    await rejectsWith(world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.alloc(4097) }), 'KH_ERR_VALIDATION');
  });

  it('answers KH_ERR_KEY_NOT_FOUND to encrypt under a name no key has', async () => {
    const world = await worldWithKey();
    await rejectsWith(world.envelope.encrypt(world.admin(), 'missing', { plaintext: Buffer.from('x') }), 'KH_ERR_KEY_NOT_FOUND');
  });

  it('refuses a workload without encrypt on the key, before looking the key up', async () => {
    const world = await worldWithKey([{ actions: ['decrypt'] }]);
    const reads = world.repository.reads.findRevisedByName;
    await rejectsWith(world.envelope.encrypt(world.worker(), 'team.k', { plaintext: Buffer.from('x') }), 'KH_ERR_FORBIDDEN');
    expect(world.repository.reads.findRevisedByName).toBe(reads);
  });

  describe('decryption failures look alike', () => {
    it('under another context', async () => {
      const world = await worldWithKey();
      const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x'), context: { tenant: 'a' } });
      await failsAlike(world.envelope.decrypt(world.admin(), { ciphertext, context: { tenant: 'b' } }));
    });

    it('with a flipped bit', async () => {
      const world = await worldWithKey();
      const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
      await failsAlike(world.envelope.decrypt(world.admin(), { ciphertext: tampered(ciphertext) }));
    });

    it('naming a key that does not exist', async () => {
      const world = await worldWithKey();
      const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
      await failsAlike(world.envelope.decrypt(world.admin(), { ciphertext: naming(ciphertext, world.key.id, OTHER_ID) }));
    });

    it('of another key than the one the caller named', async () => {
      const world = await worldWithKey();
      await world.keys.create(world.admin(), { name: 'other' });
      const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
      await failsAlike(world.envelope.decrypt(world.admin(), { ciphertext, keyName: 'other' }));
    });

    it('not a ciphertext at all', async () => {
      const world = await worldWithKey();
      await failsAlike(world.envelope.decrypt(world.admin(), { ciphertext: 'kh1:AAAA' }));
    });

    it('of a key the workload may never use, though it may decrypt with others', async () => {
      const world = await worldWithKey([{ actions: ['decrypt'], keys: ['mine.*'] }]);
      const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
      await failsAlike(world.envelope.decrypt(world.worker(), { ciphertext }));
    });
  });

  it('refuses a workload no statement lets decrypt any key with 403, before any lookup', async () => {
    const world = await worldWithKey([{ actions: ['encrypt'] }]);
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    const reads = world.repository.reads.findRevisedById;
    await rejectsWith(world.envelope.decrypt(world.worker(), { ciphertext }), 'KH_ERR_FORBIDDEN');
    expect(world.repository.reads.findRevisedById).toBe(reads);
  });

  it('refuses a ciphertext under a disabled version with that reason', async () => {
    const world = await worldWithKey();
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    await world.keys.rotate(world.admin(), 'team.k');
    await world.keys.disableVersion(world.admin(), 'team.k', 1);
    await rejectsWith(world.envelope.decrypt(world.admin(), { ciphertext }), 'KH_ERR_KEY_VERSION_DISABLED');
  });
});

describe('EnvelopeService caching', () => {
  it('serves repeated encrypts and decrypts from memory: one read of the key', async () => {
    const world = await worldWithKey();
    world.cache.clear();
    const before = { ...world.repository.reads };
    for (let i = 0; i < 3; i += 1) {
      const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
      await world.envelope.decrypt(world.admin(), { ciphertext });
    }
    expect(world.repository.reads.findRevisedByName - before.findRevisedByName).toBe(1);
    expect(world.repository.reads.findRevisedById - before.findRevisedById).toBe(0);
    expect(world.repository.reads.findWrappedVersions - before.findWrappedVersions).toBe(1);
  });

  it('remembers an unknown key id: a ciphertext sent again runs no second read', async () => {
    const world = await worldWithKey();
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    const forged = naming(ciphertext, world.key.id, OTHER_ID);
    const before = world.repository.reads.findRevisedById;
    await failsAlike(world.envelope.decrypt(world.admin(), { ciphertext: forged }));
    await failsAlike(world.envelope.decrypt(world.admin(), { ciphertext: forged }));
    expect(world.repository.reads.findRevisedById - before).toBe(1);
  });

  it('checks the key again after the TTL: its revision, and the whole key once it changed', async () => {
    const world = await worldWithKey();
    await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    const before = { ...world.repository.reads };
    world.clock.advance(5000);
    await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    expect(world.repository.reads.findRevision - before.findRevision).toBe(1);
    expect(world.repository.reads.findRevisedByName - before.findRevisedByName).toBe(0);

    // Rotated on another replica (no invalidation here): seen at the next check, after the TTL.
    await world.repository.mutate('team.k', 'rotate', async (key, writer) => writer.updateKey({ description: 'rotated elsewhere', updatedAt: new Date(key.updatedAt.getTime() + 1) }));
    world.clock.advance(5000);
    await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    expect(world.repository.reads.findRevision - before.findRevision).toBe(2);
    expect(world.repository.reads.findRevisedByName - before.findRevisedByName).toBe(1);
    expect((await world.cache.getByName('team.k'))?.key.description).toBe('rotated elsewhere');
  });
});

describe('EnvelopeService.generateDataKey', () => {
  it('returns a data key of the asked length and its ciphertext, which decrypts to it', async () => {
    const world = await worldWithKey();
    const result = await world.envelope.generateDataKey(world.admin(), 'team.k', { bytes: 16 });
    expect(result.plaintext).toHaveLength(16);
    const opened = await world.envelope.decrypt(world.admin(), { ciphertext: result.ciphertext });
    expect(opened.plaintext.equals(result.plaintext!)).toBe(true);
  });

  it('leaves the plaintext out when asked for the wrapped key only', async () => {
    const world = await worldWithKey();
    expect((await world.envelope.generateDataKey(world.admin(), 'team.k', { includePlaintext: false })).plaintext).toBeUndefined();
  });

  it('refuses a length outside 16..64', async () => {
    const world = await worldWithKey();
    await rejectsWith(world.envelope.generateDataKey(world.admin(), 'team.k', { bytes: 15 }), 'KH_ERR_VALIDATION');
    await rejectsWith(world.envelope.generateDataKey(world.admin(), 'team.k', { bytes: 65 }), 'KH_ERR_VALIDATION');
  });

  it('refuses a workload granted encrypt but not datakey', async () => {
    const world = await worldWithKey([{ actions: ['encrypt'] }]);
    await rejectsWith(world.envelope.generateDataKey(world.worker(), 'team.k', {}), 'KH_ERR_FORBIDDEN');
  });
});

describe('EnvelopeService.rewrap', () => {
  it('moves a ciphertext to the destination key’s primary version, without the plaintext leaving', async () => {
    const world = await worldWithKey();
    await world.keys.create(world.admin(), { name: 'dest' });
    await world.keys.rotate(world.admin(), 'dest');
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    const moved = await world.envelope.rewrap(world.admin(), 'dest', { ciphertext });
    expect(moved).toMatchObject({ keyName: 'dest', keyVersion: 2 });
    expect(moved).not.toHaveProperty('plaintext');
    expect((await world.envelope.decrypt(world.admin(), { ciphertext: moved.ciphertext })).plaintext.toString()).toBe('x');
  });

  it('refuses a workload that may decrypt the source but not rewrap into the destination', async () => {
    const world = await worldWithKey([{ actions: ['decrypt'] }]);
    await world.keys.create(world.admin(), { name: 'dest' });
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    await rejectsWith(world.envelope.rewrap(world.worker(), 'dest', { ciphertext }), 'KH_ERR_FORBIDDEN');
  });

  it('fails as any decryption does for a tampered source, before the destination is looked at', async () => {
    const world = await worldWithKey();
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    await failsAlike(world.envelope.rewrap(world.admin(), 'missing', { ciphertext: naming(ciphertext, world.key.id, OTHER_ID) }));
  });
});

describe('EnvelopeService.rewrapRevoked', () => {
  async function revokedCiphertext() {
    const world = await worldWithKey([{ actions: ['rewrap-revoked'] }]);
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    await world.keys.rotate(world.admin(), 'team.k');
    await world.keys.disableVersion(world.admin(), 'team.k', 1);
    return { world, ciphertext };
  }

  it('moves a ciphertext under a disabled version to the primary, with the same context', async () => {
    const { world, ciphertext } = await revokedCiphertext();
    const moved = await world.envelope.rewrapRevoked(world.worker(), 'team.k', { ciphertext });
    expect(moved).toMatchObject({ keyName: 'team.k', keyVersion: 2 });
    expect((await world.envelope.decrypt(world.admin(), { ciphertext: moved.ciphertext })).plaintext.toString()).toBe('x');
  });

  it('works for a disabled key too, and leaves no revoked material in the cache', async () => {
    const { world, ciphertext } = await revokedCiphertext();
    await world.keys.disable(world.admin(), 'team.k');
    await world.envelope.rewrapRevoked(world.worker(), 'team.k', { ciphertext });
    expect((await world.cache.getByName('team.k'))!.versionKeys.size).toBe(0);
  });

  it('refuses a caller without the rewrap-revoked grant, though it may decrypt', async () => {
    const world = await worldWithKey([{ actions: ['decrypt', 'encrypt'] }]);
    const { ciphertext } = await world.envelope.encrypt(world.admin(), 'team.k', { plaintext: Buffer.from('x') });
    await rejectsWith(world.envelope.rewrapRevoked(world.worker(), 'team.k', { ciphertext }), 'KH_ERR_FORBIDDEN');
  });

  it('fails as any decryption does for a ciphertext of another key than the one named', async () => {
    const { world, ciphertext } = await revokedCiphertext();
    await world.keys.create(world.admin(), { name: 'other' });
    await failsAlike(world.envelope.rewrapRevoked(world.worker(), 'other', { ciphertext }));
  });

  it('refuses a ciphertext of a destroyed key with that reason', async () => {
    const { world, ciphertext } = await revokedCiphertext();
    await world.keys.scheduleDeletion(world.admin(), 'team.k', 7);
    world.clock.advance(7 * 24 * 3600 * 1000);
    await world.keys.destroyDueKeys();
    await rejectsWith(world.envelope.rewrapRevoked(world.worker(), 'team.k', { ciphertext }), 'KH_ERR_KEY_DESTROYED');
  });
});
