import { hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hkdfSha256 } from '../../../src/crypto/hkdf.js';

describe('hkdfSha256', () => {
  it('matches RFC 5869 test case 1 (first 32 bytes of the OKM)', () => {
    const ikm = Buffer.alloc(22, 0x0b);
    const salt = Buffer.from('000102030405060708090a0b0c', 'hex');
    const info = Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex');
    expect(hkdfSha256(ikm, salt, info, 32).toString('hex')).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf',
    );
  });

  it('matches RFC 5869 test case 3 (empty salt and info)', () => {
    expect(hkdfSha256(Buffer.alloc(22, 0x0b), Buffer.alloc(0), Buffer.alloc(0), 32).toString('hex')).toBe(
      '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d',
    );
  });

  it('is byte-identical to node:crypto hkdfSync for random inputs and every length up to 32', () => {
    for (let length = 1; length <= 32; length += 1) {
      const ikm = randomBytes(32);
      const salt = randomBytes(32);
      const info = randomBytes(length + 5);
      expect(hkdfSha256(ikm, salt, info, length)).toEqual(Buffer.from(hkdfSync('sha256', ikm, salt, info, length)));
    }
  });

  it.each([0, 33, 1.5])('refuses an output length of %s', (length) => {
    expect(() => hkdfSha256(randomBytes(32), randomBytes(32), Buffer.alloc(0), length)).toThrow(RangeError);
  });
});
