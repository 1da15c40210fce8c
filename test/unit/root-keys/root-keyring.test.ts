import { describe, expect, it } from 'vitest';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { RootKeyring, systemSecretWrapAad } from '../../../src/root-keys/root-keyring.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { DecryptionFailedError, KeyholdError } from '../../../src/errors.js';

function rootKey(fill: number): LocalRootKey {
  return new LocalRootKey(SecretBytes.adopt(Buffer.alloc(32, fill)));
}

const OLD = rootKey(0x01);
const NEW = rootKey(0x02);
const material = Buffer.alloc(32, 0xc4);
const aad = Buffer.from('keyhold/key-version/v1 test aad');

describe('RootKeyring', () => {
  it('wraps new material under the primary and names the primary as its id', async () => {
    const ring = new RootKeyring(NEW, [OLD]);
    expect(ring.id).toBe(NEW.id);
    expect(ring.checkValue).toBe(NEW.checkValue);
    expect(await NEW.unwrap(await ring.wrap(material, aad), aad)).toEqual(material);
  });

  it('unwraps material recorded under a previous key, chosen by the recorded id', async () => {
    const ring = new RootKeyring(NEW, [OLD]);
    expect(await ring.unwrapRecorded(OLD.id, await OLD.wrap(material, aad), aad)).toEqual(material);
    expect(await ring.unwrapRecorded(NEW.id, await NEW.wrap(material, aad), aad)).toEqual(material);
  });

  it('refuses material recorded under a key it does not hold, naming the id, without trying its own keys', async () => {
    const ring = new RootKeyring(NEW);
    const error = await ring.unwrapRecorded(OLD.id, await OLD.wrap(material, aad), aad).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(KeyholdError);
    expect(error).toMatchObject({ code: 'KH_ERR_INTERNAL' });
    expect((error as Error).message).toContain(OLD.id);
  });

  it('fails as a decryption failure when the recorded id is right but the material was wrapped by another key', async () => {
    const ring = new RootKeyring(NEW, [OLD]);
    await expect(ring.unwrapRecorded(OLD.id, await NEW.wrap(material, aad), aad)).rejects.toBeInstanceOf(DecryptionFailedError);
  });

  it('lists the primary first, then the previous keys', () => {
    expect(new RootKeyring(NEW, [OLD]).ids).toEqual([NEW.id, OLD.id]);
    expect(new RootKeyring(NEW, [OLD]).get(OLD.id)).toBe(OLD);
    expect(new RootKeyring(NEW).get(OLD.id)).toBeUndefined();
  });

  it('refuses the same key twice', () => {
    expect(() => new RootKeyring(NEW, [rootKey(0x02)])).toThrow(RangeError);
  });

  it('derives from the primary only', async () => {
    const derive = (bytes: Uint8Array) => SecretBytes.adopt(Buffer.from(bytes));
    const derived = await new RootKeyring(NEW, [OLD]).deriveKey(derive);
    expect(derived.copyInsecure()).toEqual(Buffer.alloc(32, 0x02));
  });
});

describe('systemSecretWrapAad', () => {
  it('binds the name, so a secret wrapped for one name does not unwrap as another', async () => {
    const wrapped = await OLD.wrap(material, systemSecretWrapAad('audit-key'));
    await expect(OLD.unwrap(wrapped, systemSecretWrapAad('audit-kez'))).rejects.toBeInstanceOf(DecryptionFailedError);
    expect(await OLD.unwrap(wrapped, systemSecretWrapAad('audit-key'))).toEqual(material);
  });
});
