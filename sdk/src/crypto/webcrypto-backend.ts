import type { webcrypto } from 'node:crypto';
import { DecryptionError } from '../errors.js';
import type { BlockCipher, CryptoBackend, SegmentCipher } from './primitives.js';

interface WebCrypto {
  readonly subtle: webcrypto.SubtleCrypto;
  getRandomValues<T extends ArrayBufferView>(array: T): T;
}

const TAG_BITS = 128;
const BLOCK_BYTES = 16;
/** getRandomValues refuses more than 65,536 bytes a call (WebCrypto §10.1.1). */
const MAX_RANDOM_CHUNK = 65_536;

/** WebCrypto: the runtime's own, or any implementation of it. Keys are imported non-extractable. */
export function webCryptoBackend(crypto: WebCrypto): CryptoBackend {
  const { subtle } = crypto;
  return Object.freeze({
    name: 'webcrypto' as const,
    async hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array> {
      const key = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
      return new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, key, length * 8));
    },
    async segmentCipher(raw: Uint8Array): Promise<SegmentCipher> {
      const key = await subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
      return {
        async seal(nonce, plaintext, aad) {
          return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: TAG_BITS }, key, plaintext));
        },
        async open(nonce, sealed, aad) {
          try {
            return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: TAG_BITS }, key, sealed));
          } catch {
            throw new DecryptionError();
          }
        },
        dispose() {
          // A non-extractable CryptoKey has no bytes to zero; dropping the reference is all WebCrypto allows.
        },
      };
    },
    async blockCipher(raw: Uint8Array): Promise<BlockCipher> {
      // WebCrypto has no ECB. AES-CBC of one block under a zero IV starts with that block's encryption (the padding
      // block after it is dropped), so each block is one CBC call.
      const key = await subtle.importKey('raw', raw, 'AES-CBC', false, ['encrypt']);
      const zeroIv = new Uint8Array(BLOCK_BYTES);
      return {
        async encryptBlocks(blocks) {
          if (blocks.length % BLOCK_BYTES !== 0) throw new RangeError('whole blocks only');
          const out = new Uint8Array(blocks.length);
          await Promise.all(Array.from({ length: blocks.length / BLOCK_BYTES }, async (_, i) => {
            const block = blocks.subarray(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES);
            const sealed = new Uint8Array(await subtle.encrypt({ name: 'AES-CBC', iv: zeroIv }, key, block));
            out.set(sealed.subarray(0, BLOCK_BYTES), i * BLOCK_BYTES);
          }));
          return out;
        },
      };
    },
    randomBytes(length: number): Uint8Array {
      const out = new Uint8Array(length);
      for (let offset = 0; offset < length; offset += MAX_RANDOM_CHUNK) {
        crypto.getRandomValues(out.subarray(offset, Math.min(length, offset + MAX_RANDOM_CHUNK)));
      }
      return out;
    },
    equalConstantTime(a: Uint8Array, b: Uint8Array): boolean {
      if (a.length !== b.length) return false;
      let difference = 0;
      for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!;
      return difference === 0;
    },
  });
}
