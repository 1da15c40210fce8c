import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { DecryptionError } from '../errors.js';
import type { CryptoBackend, SegmentCipher } from './backend.js';

const TAG_BYTES = 16;

class NodeSegmentCipher implements SegmentCipher {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    // A private copy, so dispose() can zero it without touching the caller's bytes.
    this.#key = Buffer.alloc(key.length);
    this.#key.set(key);
  }

  async seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad);
    const head = cipher.update(plaintext);
    const tail = cipher.final();
    return Buffer.concat([head, tail, cipher.getAuthTag()]);
  }

  async open(nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    if (sealed.length < TAG_BYTES) throw new DecryptionError();
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plaintext = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
    try {
      decipher.final();
    } catch {
      plaintext.fill(0);
      throw new DecryptionError();
    }
    return plaintext;
  }

  dispose(): void {
    this.#key.fill(0);
  }
}

/** node:crypto: OpenSSL AES-GCM and HKDF. */
export const nodeBackend: CryptoBackend = Object.freeze({
  name: 'node' as const,
  async hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array> {
    return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  },
  async segmentCipher(key: Uint8Array): Promise<SegmentCipher> {
    return new NodeSegmentCipher(key);
  },
  randomBytes(length: number): Uint8Array {
    return randomBytes(length);
  },
  equalConstantTime(a: Uint8Array, b: Uint8Array): boolean {
    return a.length === b.length && timingSafeEqual(a, b);
  },
});
