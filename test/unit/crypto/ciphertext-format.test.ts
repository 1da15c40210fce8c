import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  bytesToUuid,
  encodeHeader,
  formatCiphertext,
  HEADER_BYTES,
  MIN_CIPHERTEXT_BYTES,
  parseCiphertext,
  TEXT_PREFIX,
  uuidToBytes,
  type CiphertextHeader,
} from '../../../src/crypto/ciphertext-format.js';
import { DecryptionFailedError } from '../../../src/errors.js';

import { DECRYPTION_FAILED_MESSAGE, expectDecryptionFailed, thrownBy } from '../../helpers/expect-error.js';

const KEY_ID = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';

function header(overrides: Partial<CiphertextHeader> = {}): CiphertextHeader {
  return {
    keyId: KEY_ID,
    keyVersion: 7,
    salt: Buffer.alloc(32, 0xa5),
    iv: Buffer.alloc(12, 0x5a),
    ...overrides,
  };
}

/** A well-formed `kh1:` text whose binary form is `HEADER_BYTES + sealedBytes` long. */
function ciphertextText(sealedBytes: number, overrides: Partial<CiphertextHeader> = {}): string {
  return formatCiphertext(encodeHeader(header(overrides)), randomBytes(sealedBytes));
}

/** The binary form of a ciphertext re-encoded canonically after `edit` changed it. */
function withBinary(text: string, edit: (bytes: Buffer) => Buffer): string {
  const bytes = Buffer.from(text.slice(TEXT_PREFIX.length), 'base64url');
  return TEXT_PREFIX + edit(bytes).toString('base64url');
}

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Sets the lowest unused bit of the last character, which a lenient decoder ignores. */
function withNonZeroTrailingBits(text: string): string {
  const last = text.at(-1)!;
  const index = BASE64URL_ALPHABET.indexOf(last);
  return text.slice(0, -1) + BASE64URL_ALPHABET[index | 1]!;
}

describe('uuidToBytes / bytesToUuid', () => {
  it('maps a UUID to its 16 bytes in textual (RFC 9562) order', () => {
    expect(uuidToBytes('00112233-4455-6677-8899-aabbccddeeff').toString('hex')).toBe('00112233445566778899aabbccddeeff');
  });

  it('maps 16 bytes back to the lower-case UUID', () => {
    expect(bytesToUuid(Buffer.from('00112233445566778899AABBCCDDEEFF', 'hex'))).toBe('00112233-4455-6677-8899-aabbccddeeff');
  });

  it.each(['0F1E2D3C-4B5A-4968-8776-A5B4C3D2E1F0', '0f1e2d3c4b5a49688776a5b4c3d2e1f0', 'not-a-uuid', ''])(
    'refuses %j as a key id',
    (text) => {
      expect(() => uuidToBytes(text)).toThrow(RangeError);
    },
  );
});

describe('encodeHeader', () => {
  it('lays out version byte, key id, big-endian key version, salt and IV (docs/ciphertext-format.md)', () => {
    const bytes = encodeHeader(header({ keyVersion: 0x01020304 }));
    expect(bytes).toHaveLength(HEADER_BYTES);
    expect(bytes.toString('hex')).toBe(
      '01' + '0f1e2d3c4b5a49688776a5b4c3d2e1f0' + '01020304' + 'a5'.repeat(32) + '5a'.repeat(12),
    );
  });

  it('is 65 bytes long, and a ciphertext is at least 81 bytes', () => {
    expect(HEADER_BYTES).toBe(65);
    expect(MIN_CIPHERTEXT_BYTES).toBe(81);
  });

  it.each([0, -1, 1.5, 2 ** 32, Number.NaN])('refuses key version %d', (keyVersion) => {
    expect(() => encodeHeader(header({ keyVersion }))).toThrow(RangeError);
  });

  it('accepts the largest u32 key version', () => {
    expect(encodeHeader(header({ keyVersion: 0xffffffff })).readUInt32BE(17)).toBe(0xffffffff);
  });

  it('refuses a salt that is not 32 bytes', () => {
    expect(() => encodeHeader(header({ salt: Buffer.alloc(31) }))).toThrow(RangeError);
  });

  it('refuses an IV that is not 12 bytes', () => {
    expect(() => encodeHeader(header({ iv: Buffer.alloc(16) }))).toThrow(RangeError);
  });

  it('refuses an upper-case key id', () => {
    expect(() => encodeHeader(header({ keyId: KEY_ID.toUpperCase() }))).toThrow(RangeError);
  });
});

describe('formatCiphertext', () => {
  it('writes "kh1:" and the unpadded base64url of header || sealed', () => {
    const headerBytes = encodeHeader(header());
    const sealed = Buffer.from([0xfb, 0xff, 0xfe]);
    const text = formatCiphertext(headerBytes, sealed);
    expect(text).toBe('kh1:' + Buffer.concat([headerBytes, sealed]).toString('base64url'));
    expect(text).toMatch(/^kh1:[A-Za-z0-9_-]+$/);
  });
});

describe('parseCiphertext', () => {
  it('reads back the header fields that were encoded', () => {
    const original = header({ keyVersion: 42, salt: randomBytes(32), iv: randomBytes(12) });
    const headerBytes = encodeHeader(original);
    const sealed = randomBytes(40);
    const parsed = parseCiphertext(formatCiphertext(headerBytes, sealed));
    expect(parsed.keyId).toBe(original.keyId);
    expect(parsed.keyVersion).toBe(42);
    expect(parsed.salt).toEqual(original.salt);
    expect(parsed.iv).toEqual(original.iv);
    expect(parsed.headerBytes).toEqual(headerBytes);
    expect(parsed.sealed).toEqual(sealed);
  });

  it('reads back the largest u32 key version', () => {
    expect(parseCiphertext(ciphertextText(16, { keyVersion: 0xffffffff })).keyVersion).toBe(0xffffffff);
  });

  it('accepts the smallest ciphertext: a header and a bare tag (empty plaintext)', () => {
    const parsed = parseCiphertext(ciphertextText(16));
    expect(parsed.sealed).toHaveLength(16);
  });

  it.each([1, 2, 3])('accepts a canonical encoding whose binary length leaves %i byte(s) in the last group', (extra) => {
    // 81 is a multiple of 3, so these lengths end in a partial base64 group.
    expect(parseCiphertext(ciphertextText(16 + extra)).sealed).toHaveLength(16 + extra);
  });

  describe('refuses every malformation with the one DecryptionFailedError', () => {
    const valid81 = ciphertextText(16); // 108 characters, no partial group
    const valid82 = ciphertextText(17); // last character carries 4 unused bits
    const valid83 = ciphertextText(18); // last character carries 2 unused bits

    const malformed: Array<[string, string]> = [
      ['an empty string', ''],
      ['the prefix alone', 'kh1:'],
      ['no prefix', valid81.slice(TEXT_PREFIX.length)],
      ['a different prefix', 'kh2:' + valid81.slice(TEXT_PREFIX.length)],
      ['an upper-case prefix', 'KH1:' + valid81.slice(TEXT_PREFIX.length)],
      ['leading whitespace', ' ' + valid81],
      ['trailing whitespace', valid81 + ' '],
      ['a trailing newline', valid81 + '\n'],
      ['a standard-base64 "+" character', valid81.slice(0, 20) + '+' + valid81.slice(21)],
      ['a standard-base64 "/" character', valid81.slice(0, 20) + '/' + valid81.slice(21)],
      ['a "." that a lenient decoder would skip', valid81.slice(0, 20) + '.' + valid81.slice(20, -1)],
      ['"=" padding', valid82 + '=='],
      ['a single "=" pad', valid83 + '='],
      ['an encoded length of 1 mod 4', valid81 + 'A'],
      ['non-zero unused trailing bits (4 unused bits)', withNonZeroTrailingBits(valid82)],
      ['non-zero unused trailing bits (2 unused bits)', withNonZeroTrailingBits(valid83)],
      ['one byte less than the smallest ciphertext', withBinary(valid81, (b) => b.subarray(0, MIN_CIPHERTEXT_BYTES - 1))],
      ['a header without tag', withBinary(valid81, (b) => b.subarray(0, HEADER_BYTES))],
      ['format version byte 0x02', withBinary(valid81, (b) => Buffer.concat([Buffer.from([0x02]), b.subarray(1)]))],
      ['format version byte 0x00', withBinary(valid81, (b) => Buffer.concat([Buffer.from([0x00]), b.subarray(1)]))],
      ['format version byte 0xff', withBinary(valid81, (b) => Buffer.concat([Buffer.from([0xff]), b.subarray(1)]))],
      [
        'key version 0',
        withBinary(valid81, (b) => {
          const copy = Buffer.from(b);
          copy.writeUInt32BE(0, 17);
          return copy;
        }),
      ],
    ];

    it.each(malformed)('%s', (_description, text) => {
      expectDecryptionFailed(() => parseCiphertext(text));
    });

    it('a non-string input', () => {
      expectDecryptionFailed(() => parseCiphertext(undefined as unknown as string));
      expectDecryptionFailed(() => parseCiphertext(Buffer.from(valid81) as unknown as string));
    });

    it('the same code and message for every malformation', () => {
      const seen = new Set(
        malformed.map(([, text]) => {
          const error = thrownBy(() => parseCiphertext(text)) as DecryptionFailedError;
          return `${error.name}|${error.code}|${error.message}`;
        }),
      );
      expect([...seen]).toEqual([`DecryptionFailedError|KH_ERR_DECRYPTION_FAILED|${DECRYPTION_FAILED_MESSAGE}`]);
    });
  });
});
