import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalRootKey, parseRootKeyText } from '../../../src/root-keys/root-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { DecryptionFailedError } from '../../../src/errors.js';

const KEY_A = Buffer.alloc(32, 0x01);
const KEY_B = Buffer.alloc(32, 0x02);

function rootKey(bytes: Buffer = KEY_A): LocalRootKey {
  return new LocalRootKey(SecretBytes.adopt(Buffer.from(bytes)));
}

const material = Buffer.alloc(32, 0xc4);
const aad = Buffer.from('keyhold/key-version/v1 and friends');

async function expectUnwrapFails(promise: Promise<unknown>): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(DecryptionFailedError);
  expect(error).toMatchObject({ code: 'KH_ERR_DECRYPTION_FAILED', message: 'The ciphertext could not be decrypted' });
}

describe('LocalRootKey', () => {
  it('unwraps what it wrapped', async () => {
    const key = rootKey();
    expect(await key.unwrap(await key.wrap(material, aad), aad)).toEqual(material);
  });

  it('unwraps with another instance made from the same key bytes', async () => {
    expect(await rootKey().unwrap(await rootKey().wrap(material, aad), aad)).toEqual(material);
  });

  it('stores iv (12) || ciphertext || tag (16)', async () => {
    expect(await rootKey().wrap(material, aad)).toHaveLength(12 + material.length + 16);
  });

  it('draws a fresh IV for every wrap', async () => {
    const key = rootKey();
    const first = await key.wrap(material, aad);
    const second = await key.wrap(material, aad);
    expect(first.subarray(0, 12).equals(second.subarray(0, 12))).toBe(false);
  });

  it('unwraps a Uint8Array view that starts inside a larger buffer', async () => {
    const key = rootKey();
    const wrapped = await key.wrap(material, aad);
    const larger = new Uint8Array(wrapped.length + 10);
    larger.set(wrapped, 5);
    expect(await key.unwrap(larger.subarray(5, 5 + wrapped.length), aad)).toEqual(material);
  });

  it('fails to unwrap with a different AAD', async () => {
    const key = rootKey();
    const wrapped = await key.wrap(material, aad);
    await expectUnwrapFails(key.unwrap(wrapped, Buffer.from('keyhold/key-version/v1 and friendz')));
  });

  it('fails to unwrap under a different root key', async () => {
    await expectUnwrapFails(rootKey(KEY_B).unwrap(await rootKey(KEY_A).wrap(material, aad), aad));
  });

  it('fails to unwrap tampered material', async () => {
    const key = rootKey();
    const wrapped = await key.wrap(material, aad);
    wrapped[20]! ^= 0x01;
    await expectUnwrapFails(key.unwrap(wrapped, aad));
  });

  it('fails to unwrap material shorter than an IV and a tag', async () => {
    await expectUnwrapFails(rootKey().unwrap(new Uint8Array(27), aad));
    await expectUnwrapFails(rootKey().unwrap(new Uint8Array(5), aad));
  });

  it('unwraps material recorded under its own id', async () => {
    const key = rootKey();
    expect(await key.unwrapRecorded(key.id, await key.wrap(material, aad), aad)).toEqual(material);
  });

  it('refuses material recorded under another root key id, naming it, as an internal error', async () => {
    const error = await rootKey(KEY_A)
      .unwrapRecorded(rootKey(KEY_B).id, await rootKey(KEY_A).wrap(material, aad), aad)
      .catch((reason: unknown) => reason);
    expect(error).toMatchObject({ code: 'KH_ERR_INTERNAL' });
    expect((error as Error).message).toContain(rootKey(KEY_B).id);
  });

  it('refuses a key that is not 32 bytes', () => {
    expect(() => new LocalRootKey(SecretBytes.adopt(Buffer.alloc(16)))).toThrow(RangeError);
  });

  it('has the same id for the same key bytes', () => {
    expect(rootKey().id).toBe(rootKey().id);
  });

  it('has different ids for different keys', () => {
    expect(rootKey(KEY_A).id).not.toBe(rootKey(KEY_B).id);
  });

  it('has an id of 16 hex characters: HMAC-SHA256(key, "keyhold/root-key/id/v1"), truncated', () => {
    const expected = createHmac('sha256', KEY_A).update('keyhold/root-key/id/v1').digest('hex').slice(0, 16);
    expect(rootKey().id).toBe(expected);
    expect(rootKey().id).toMatch(/^[0-9a-f]{16}$/);
  });

  it('has the same check value for the same key bytes', () => {
    expect(rootKey().checkValue).toBe(rootKey().checkValue);
  });

  it('has different check values for different keys', () => {
    expect(rootKey(KEY_A).checkValue).not.toBe(rootKey(KEY_B).checkValue);
  });

  it('has a check value that is HMAC-SHA256(key, "keyhold/root-key/check/v1") in hex, as stored check values expect', () => {
    const expected = createHmac('sha256', KEY_A).update('keyhold/root-key/check/v1').digest('hex');
    expect(rootKey().checkValue).toBe(expected);
  });

  it('has an id and check value that differ from each other', () => {
    expect(rootKey().checkValue.startsWith(rootKey().id)).toBe(false);
  });
});

describe('parseRootKeyText', () => {
  // fb ef be encodes as "++++" and ff ff ff as "////", so the standard and URL-safe alphabets differ here.
  const bytes = Buffer.concat([Buffer.from('fbefbeffffff', 'hex'), Buffer.from(Array.from({ length: 26 }, (_, i) => i * 9))]);
  const text = bytes.toString('base64');

  it('accepts the padded base64 of 32 bytes and returns those bytes', () => {
    expect(text).toMatch(/^\+{4}\/{4}/);
    expect(parseRootKeyText(text)?.copyInsecure()).toEqual(bytes);
  });

  it.each([
    ['a trailing newline', `${text}\n`],
    ['a trailing CRLF', `${text}\r\n`],
    ['leading and trailing spaces', `  ${text}  `],
    ['tabs', `\t${text}\t`],
  ])('accepts surrounding whitespace: %s', (_description, input) => {
    expect(parseRootKeyText(input)?.copyInsecure()).toEqual(bytes);
  });

  it.each([
    ['an empty string', ''],
    ['whitespace only', ' \n '],
    ['base64 of 31 bytes', Buffer.alloc(31, 9).toString('base64')],
    ['base64 of 33 bytes', Buffer.alloc(33, 9).toString('base64')],
    ['base64 of 64 bytes', Buffer.alloc(64, 9).toString('base64')],
    ['unpadded base64 of 32 bytes', text.replace(/=+$/, '')],
    ['base64url of 32 bytes', bytes.toString('base64url') + '='],
    ['hex of 32 bytes', bytes.toString('hex')],
    ['whitespace inside', `${text.slice(0, 20)} ${text.slice(20)}`],
    ['a newline inside', `${text.slice(0, 20)}\n${text.slice(20)}`],
    ['double padding', `${text}=`],
    ['a "base64:" prefix', `base64:${text}`],
  ])('rejects %s', (_description, input) => {
    expect(parseRootKeyText(input)).toBeUndefined();
  });
});
