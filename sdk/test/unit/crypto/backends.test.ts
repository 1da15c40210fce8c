import { hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nodeBackend } from '../../../src/crypto/node-backend.js';
import { CMAC_ZERO_BLOCK, cmacSubkey, xaesKdfBlocks } from '../../../src/crypto/xaes-kdf.js';
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

/** C2SP XAES-256-GCM's own test vectors: the derived key Kₓ for K and the first 12 bytes of N. */
const XAES_VECTORS = [
  { key: '01'.repeat(32), l: '7298caa565031eadc6ce23d23ea66378', k1: 'e531954aca063d5b8d9c47a47d4cc6f0', kx: 'c8612c9ed53fe43e8e005b828a1631a0bbcb6ab2f46514ec4f439fcfd0fa969b' },
  { key: '03'.repeat(32), l: '91c08762876dccf9ba204a33768fa5fe', k1: '23810ec50edb99f374409466ed1f4b7b', kx: 'e9c621d4cdd9b11b00a6427ad7e559aeedd66b3857646677748f8ca796cb3fd8' },
];
const XAES_NONCE = Buffer.from('ABCDEFGHIJKL');

describe('XAES-256-GCM key derivation (C2SP test vectors)', () => {
  for (const [name, backend] of BACKENDS) {
    it(`gives L, K1 and Kₓ of both vectors (${name})`, async () => {
      for (const vector of XAES_VECTORS) {
        const cipher = await backend.blockCipher(Buffer.from(vector.key, 'hex'));
        const l = await cipher.encryptBlocks(CMAC_ZERO_BLOCK);
        expect(Buffer.from(l).toString('hex')).toBe(vector.l);
        const k1 = cmacSubkey(l);
        expect(Buffer.from(k1).toString('hex')).toBe(vector.k1);
        expect(Buffer.from(await cipher.encryptBlocks(xaesKdfBlocks(k1, XAES_NONCE))).toString('hex')).toBe(vector.kx);
      }
    });
  }

  it('the synchronous block cipher gives the same Kₓ', () => {
    for (const vector of XAES_VECTORS) {
      const cipher = nodeBackend.sync!.blockCipher(Buffer.from(vector.key, 'hex'));
      const k1 = cmacSubkey(cipher.encryptBlocks(CMAC_ZERO_BLOCK));
      expect(Buffer.from(cipher.encryptBlocks(xaesKdfBlocks(k1, XAES_NONCE))).toString('hex')).toBe(vector.kx);
    }
  });
});
