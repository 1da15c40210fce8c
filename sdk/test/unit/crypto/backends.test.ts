import { hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DecryptionError } from '../../../src/errors.js';
import { BACKENDS } from '../../helpers/envelope.js';

describe('crypto backends', () => {
  for (const [name, backend] of BACKENDS) {
    describe(name, () => {
      it('HKDF-SHA256 gives the bytes of node:crypto hkdfSync for every length up to three blocks', async () => {
        for (let length = 1; length <= 96; length += 7) {
          const ikm = randomBytes(32);
          const salt = randomBytes(32);
          const info = randomBytes(length % 40);
          const expected = Buffer.from(hkdfSync('sha256', ikm, salt, info, length));
          expect(Buffer.from(await backend.hkdf(ikm, salt, info, length)).equals(expected)).toBe(true);
        }
      });

      it('random bytes are of the asked length and differ call to call', () => {
        const seen = new Set<string>();
        for (let i = 0; i < 300; i++) seen.add(Buffer.from(backend.randomBytes(32)).toString('hex'));
        expect(seen.size).toBe(300);
        expect(backend.randomBytes(70_000).length).toBe(70_000);
      });

      it('a segment opened with another nonce, AAD or tag fails with the decryption error', async () => {
        const cipher = await backend.segmentCipher(randomBytes(32));
        const nonce = randomBytes(12);
        const sealed = await cipher.seal(nonce, Buffer.from('secret'), Buffer.from('aad'));
        expect(Buffer.from(await cipher.open(nonce, sealed, Buffer.from('aad'))).toString()).toBe('secret');
        await expect(cipher.open(randomBytes(12), sealed, Buffer.from('aad'))).rejects.toBeInstanceOf(DecryptionError);
        await expect(cipher.open(nonce, sealed, Buffer.from('other'))).rejects.toBeInstanceOf(DecryptionError);
        await expect(cipher.open(nonce, sealed.subarray(0, 10), Buffer.from('aad'))).rejects.toBeInstanceOf(DecryptionError);
      });

      it('compares in constant time, and unequal lengths are unequal', () => {
        expect(backend.equalConstantTime(Buffer.from('abc'), Buffer.from('abc'))).toBe(true);
        expect(backend.equalConstantTime(Buffer.from('abc'), Buffer.from('abd'))).toBe(false);
        expect(backend.equalConstantTime(Buffer.from('abc'), Buffer.from('ab'))).toBe(false);
      });
    });
  }
});
