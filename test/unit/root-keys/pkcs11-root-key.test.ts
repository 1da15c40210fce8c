import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { aesGcmOpen, aesGcmSeal } from '../../../src/crypto/aes-gcm.js';
import { DecryptionFailedError } from '../../../src/errors.js';
import { FINGERPRINT_AAD, FINGERPRINT_IV, Pkcs11RootKey, type TokenAesKey } from '../../../src/root-keys/pkcs11-root-key.js';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';

/** A token key in memory: node:crypto's AES-256-GCM, and a record of every IV it was asked to seal under. */
function tokenKey(bytes = randomBytes(32)): TokenAesKey & { readonly ivs: Buffer[] } {
  const ivs: Buffer[] = [];
  return {
    description: 'key "test" in token "memory"',
    ivs,
    encrypt: async (iv, aad, plaintext) => {
      ivs.push(Buffer.from(iv));
      return aesGcmSeal(bytes, iv, plaintext, aad);
    },
    decrypt: async (iv, aad, sealed) => aesGcmOpen(bytes, iv, sealed, aad),
    close: async () => undefined,
  };
}

const material = Buffer.alloc(32, 0xc4);
const aad = Buffer.from('keyhold/key-version/v1 and friends');

describe('Pkcs11RootKey', () => {
  it('takes its id and check value from the GCM tag of the fingerprint message under the reserved IV', async () => {
    const bytes = randomBytes(32);
    const key = await Pkcs11RootKey.open(tokenKey(bytes));
    const cipher = createCipheriv('aes-256-gcm', bytes, FINGERPRINT_IV);
    cipher.setAAD(FINGERPRINT_AAD);
    cipher.update(Buffer.alloc(16));
    cipher.final();
    const tag = cipher.getAuthTag();
    expect(key.id).toBe(createHmac('sha256', tag).update('keyhold/root-key/id/v1').digest('hex').slice(0, 16));
    expect(key.checkValue).toBe(createHmac('sha256', tag).update('keyhold/root-key/check/v1').digest('hex'));
  });

  it('gives one token key the same id and check value every time, and another key others', async () => {
    const bytes = randomBytes(32);
    const [a, again, other] = await Promise.all([Pkcs11RootKey.open(tokenKey(bytes)), Pkcs11RootKey.open(tokenKey(bytes)), Pkcs11RootKey.open(tokenKey())]);
    expect([again.id, again.checkValue]).toEqual([a.id, a.checkValue]);
    expect(other.id).not.toBe(a.id);
    expect(other.checkValue).not.toBe(a.checkValue);
  });

  it('is not named like a local key of the same bytes: the schemes differ, so the ids do', async () => {
    const bytes = randomBytes(32);
    const local = new LocalRootKey(SecretBytes.adopt(Buffer.from(bytes)));
    expect((await Pkcs11RootKey.open(tokenKey(bytes))).id).not.toBe(local.id);
  });

  it('unwraps what it wrapped, stored as iv (12) || ciphertext || tag (16) like a local key', async () => {
    const key = await Pkcs11RootKey.open(tokenKey());
    const wrapped = await key.wrap(material, aad);
    expect(wrapped).toHaveLength(12 + 32 + 16);
    expect(await key.unwrap(wrapped, aad)).toEqual(material);
    expect(await key.unwrapRecorded(key.id, wrapped, aad)).toEqual(material);
  });

  it('draws a fresh random IV for every wrap, never the reserved one', async () => {
    const token = tokenKey();
    const key = await Pkcs11RootKey.open(token);
    await Promise.all(Array.from({ length: 50 }, () => key.wrap(material, aad)));
    const wrapIvs = token.ivs.slice(1).map((iv) => iv.toString('hex'));
    expect(token.ivs[0]).toEqual(FINGERPRINT_IV);
    expect(new Set(wrapIvs).size).toBe(50);
    expect(wrapIvs).not.toContain(FINGERPRINT_IV.toString('hex'));
  });

  it('refuses to unwrap material under the reserved IV, tampered material, a wrong AAD or too few bytes', async () => {
    const key = await Pkcs11RootKey.open(tokenKey());
    const wrapped = await key.wrap(material, aad);
    const reserved = Buffer.concat([FINGERPRINT_IV, wrapped.subarray(12)]);
    const tampered = Buffer.from(wrapped);
    tampered[20]! ^= 1;
    for (const attempt of [key.unwrap(reserved, aad), key.unwrap(tampered, aad), key.unwrap(wrapped, Buffer.from('other')), key.unwrap(new Uint8Array(27), aad)]) {
      await expect(attempt).rejects.toBeInstanceOf(DecryptionFailedError);
    }
  });

  it('refuses material recorded under another root key id, naming it', async () => {
    const key = await Pkcs11RootKey.open(tokenKey());
    await expect(key.unwrapRecorded('0123456789abcdef', await key.wrap(material, aad), aad)).rejects.toThrow(/root key 0123456789abcdef/);
  });
});
