import { createDecipheriv, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MIN_CIPHERTEXT_BYTES, parseCiphertext, TEXT_PREFIX, type ParsedCiphertext } from '../../../src/crypto/ciphertext-format.js';
import type { EncryptionContext } from '../../../src/crypto/encryption-context.js';
import { keyVersionWrapAad, openWithKeyVersion, sealWithKeyVersion } from '../../../src/crypto/key-version-cipher.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { DecryptionFailedError, ValidationError } from '../../../src/errors.js';

import { DECRYPTION_FAILED_MESSAGE, expectDecryptionFailed, thrownBy } from '../../helpers/expect-error.js';

const KEY_ID = '6f9619ff-8b86-4011-b42d-00c04fc964ff';
const OTHER_KEY_ID = '6f9619ff-8b86-4011-b42d-00c04fc96500';
const VERSION_KEY_BYTES = Buffer.alloc(32, 0x11);
const versionKey = SecretBytes.adopt(Buffer.from(VERSION_KEY_BYTES));
const CONTEXT: EncryptionContext = { tenant: 'acme', purpose: 'backup' };
const PLAINTEXT = Buffer.from('the quick brown fox');

interface SealOptions {
  readonly plaintext?: Uint8Array;
  /** Present and `undefined` means "no context"; absent means {@link CONTEXT}. */
  readonly context?: EncryptionContext | undefined;
  readonly keyVersion?: number;
}

function seal(options: SealOptions = {}): string {
  return sealWithKeyVersion({
    keyId: KEY_ID,
    keyVersion: options.keyVersion ?? 3,
    versionKey,
    plaintext: options.plaintext ?? PLAINTEXT,
    context: 'context' in options ? options.context : CONTEXT,
  });
}

interface OpenOptions {
  /** Present and `undefined` means "no context"; absent means {@link CONTEXT}. */
  readonly context?: EncryptionContext | undefined;
  readonly key?: SecretBytes;
}

/** Parse and open in one step, as the decrypt path does: either step may be the one that fails. */
function open(text: string, options: OpenOptions = {}): Buffer {
  return openWithKeyVersion(parseCiphertext(text), options.key ?? versionKey, 'context' in options ? options.context : CONTEXT);
}

function decode(text: string): Buffer {
  return Buffer.from(text.slice(TEXT_PREFIX.length), 'base64url');
}

function encode(bytes: Buffer): string {
  return TEXT_PREFIX + bytes.toString('base64url');
}

function withByteXored(text: string, offset: number, mask: number): string {
  const bytes = decode(text);
  bytes[offset]! ^= mask;
  return encode(bytes);
}

describe('sealWithKeyVersion / openWithKeyVersion', () => {
  it('opens what it sealed, under the same context', () => {
    expect(open(seal())).toEqual(PLAINTEXT);
  });

  it('names the key id and version in the ciphertext header', () => {
    const parsed = parseCiphertext(seal({ keyVersion: 9 }));
    expect(parsed.keyId).toBe(KEY_ID);
    expect(parsed.keyVersion).toBe(9);
  });

  it('follows docs/ciphertext-format.md: HKDF-SHA256 request key, AAD = header || canonical(context)', () => {
    const text = seal({ context: { a: 'b' }, keyVersion: 3 });
    const parsed = parseCiphertext(text);
    const info = Buffer.concat([
      Buffer.from('keyhold/kh1/data-encryption-key', 'ascii'),
      Buffer.from(KEY_ID.replaceAll('-', ''), 'hex'),
      Buffer.from([0, 0, 0, 3]),
    ]);
    const requestKey = Buffer.from(hkdfSync('sha256', VERSION_KEY_BYTES, parsed.salt, info, 32));
    const canonicalContext = Buffer.from('0001' + '0001' + '61' + '0001' + '62', 'hex');
    const decipher = createDecipheriv('aes-256-gcm', requestKey, parsed.iv, { authTagLength: 16 });
    decipher.setAAD(Buffer.concat([parsed.headerBytes, canonicalContext]));
    decipher.setAuthTag(parsed.sealed.subarray(-16));
    const plaintext = Buffer.concat([decipher.update(parsed.sealed.subarray(0, -16)), decipher.final()]);
    expect(plaintext).toEqual(PLAINTEXT);
  });

  it('opens regardless of the order of the context properties', () => {
    const text = seal({ context: { a: '1', b: '2', c: '3' } });
    expect(open(text, { context: { c: '3', a: '1', b: '2' } })).toEqual(PLAINTEXT);
  });

  it('treats an absent context and an empty context as the same context', () => {
    expect(open(seal({ context: undefined }), { context: {} })).toEqual(PLAINTEXT);
    expect(open(seal({ context: {} }), { context: undefined })).toEqual(PLAINTEXT);
  });

  it('seals and opens an empty plaintext, as the smallest ciphertext', () => {
    const text = seal({ plaintext: new Uint8Array(0) });
    expect(decode(text)).toHaveLength(MIN_CIPHERTEXT_BYTES);
    expect(open(text)).toHaveLength(0);
  });

  it('draws a fresh salt and IV for every encryption', () => {
    const first = parseCiphertext(seal());
    const second = parseCiphertext(seal());
    expect(first.salt.equals(second.salt)).toBe(false);
    expect(first.iv.equals(second.iv)).toBe(false);
    expect(first.sealed.equals(second.sealed)).toBe(false);
  });

  it('refuses an invalid context with ValidationError before encrypting', () => {
    expect(() => seal({ context: { '': 'empty key' } })).toThrow(ValidationError);
  });

  describe('fails with DecryptionFailedError', () => {
    it('when a context value differs', () => {
      expectDecryptionFailed(() => open(seal(), { context: { ...CONTEXT, tenant: 'acme2' } }));
    });

    it('when a context key differs', () => {
      expectDecryptionFailed(() => open(seal(), { context: { tenant: 'acme', purposE: 'backup' } }));
    });

    it('when the context has an extra pair', () => {
      expectDecryptionFailed(() => open(seal(), { context: { ...CONTEXT, extra: '' } }));
    });

    it('when the context misses a pair', () => {
      expectDecryptionFailed(() => open(seal(), { context: { tenant: 'acme' } }));
    });

    it('when the context is omitted on open', () => {
      expectDecryptionFailed(() => open(seal(), { context: undefined }));
    });

    it('when a context is given on open but none was sealed', () => {
      expectDecryptionFailed(() => open(seal({ context: undefined }), { context: CONTEXT }));
    });

    it('under a different version key', () => {
      expectDecryptionFailed(() => open(seal(), { key: SecretBytes.adopt(Buffer.alloc(32, 0x12)) }));
    });

    it('when the key id in the header is changed', () => {
      expectDecryptionFailed(() => open(withByteXored(seal(), 16, 0x01)));
    });

    it('when the key version in the header is changed', () => {
      expectDecryptionFailed(() => open(withByteXored(seal(), 20, 0x04)));
    });

    it('when the salt is changed', () => {
      expectDecryptionFailed(() => open(withByteXored(seal(), 21, 0x01)));
    });

    it('when the IV is changed', () => {
      expectDecryptionFailed(() => open(withByteXored(seal(), 53, 0x01)));
    });

    it('when the parsed key id is swapped without touching the header bytes (the HKDF info binds it)', () => {
      const parsed = parseCiphertext(seal());
      const swapped: ParsedCiphertext = { ...parsed, keyId: OTHER_KEY_ID };
      expectDecryptionFailed(() => openWithKeyVersion(swapped, versionKey, CONTEXT));
    });

    it('when the parsed key version is swapped without touching the header bytes (the HKDF info binds it)', () => {
      const parsed = parseCiphertext(seal());
      const swapped: ParsedCiphertext = { ...parsed, keyVersion: parsed.keyVersion + 1 };
      expectDecryptionFailed(() => openWithKeyVersion(swapped, versionKey, CONTEXT));
    });

    it('when the parsed salt is swapped without touching the header bytes (the HKDF salt binds it)', () => {
      const parsed = parseCiphertext(seal());
      const salt = Buffer.from(parsed.salt);
      salt[0]! ^= 0x01;
      expectDecryptionFailed(() => openWithKeyVersion({ ...parsed, salt }, versionKey, CONTEXT));
    });

    it('when the header bytes are swapped for another valid header (the AAD binds them)', () => {
      const parsed = parseCiphertext(seal());
      const other = parseCiphertext(seal());
      expectDecryptionFailed(() => openWithKeyVersion({ ...parsed, headerBytes: other.headerBytes }, versionKey, CONTEXT));
    });

    it('when the ciphertext is truncated by one byte', () => {
      expectDecryptionFailed(() => open(encode(decode(seal()).subarray(0, -1))));
    });

    it('when a byte is appended to the ciphertext', () => {
      expectDecryptionFailed(() => open(encode(Buffer.concat([decode(seal()), Buffer.from([0])]))));
    });

    it.each([0x01, 0x80, 0xff])('for every single-byte flip (xor 0x%s) of the decoded ciphertext', (mask) => {
      const text = seal();
      const length = decode(text).length;
      let refused = 0;
      for (let offset = 0; offset < length; offset += 1) {
        const tampered = withByteXored(text, offset, mask);
        const error = thrownBy(() => open(tampered));
        expect(error, `flip at offset ${offset}`).toBeInstanceOf(DecryptionFailedError);
        expect((error as DecryptionFailedError).message).toBe(DECRYPTION_FAILED_MESSAGE);
        refused += 1;
      }
      expect(refused).toBe(MIN_CIPHERTEXT_BYTES + PLAINTEXT.length);
    });
  });
});

describe('keyVersionWrapAad', () => {
  it('is "keyhold/key-version/v1" || key id (16 bytes) || version (u32 big-endian)', () => {
    expect(keyVersionWrapAad(KEY_ID, 0x01020304)).toEqual(
      Buffer.concat([
        Buffer.from('keyhold/key-version/v1', 'ascii'),
        Buffer.from('6f9619ff8b864011b42d00c04fc964ff', 'hex'),
        Buffer.from([1, 2, 3, 4]),
      ]),
    );
  });

  it('differs between key ids', () => {
    expect(keyVersionWrapAad(KEY_ID, 1).equals(keyVersionWrapAad(OTHER_KEY_ID, 1))).toBe(false);
  });

  it('differs between versions', () => {
    expect(keyVersionWrapAad(KEY_ID, 1).equals(keyVersionWrapAad(KEY_ID, 2))).toBe(false);
  });
});
