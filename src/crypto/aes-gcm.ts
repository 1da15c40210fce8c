import { createCipheriv, createDecipheriv } from 'node:crypto';
import { DecryptionFailedError } from '../errors.js';

/** NIST SP 800-38D §8.2: 96-bit IVs are the recommended length; no other length is accepted here. */
export const GCM_IV_BYTES = 12;
/** Full 128-bit tags only: truncated tags weaken forgery resistance (SP 800-38D Appendix C). */
export const GCM_TAG_BYTES = 16;
export const AES_256_KEY_BYTES = 32;

const CIPHER_BY_KEY_LENGTH: Record<number, 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm'> = {
  16: 'aes-128-gcm',
  24: 'aes-192-gcm',
  32: 'aes-256-gcm',
};

function cipherFor(key: Buffer): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  const name = CIPHER_BY_KEY_LENGTH[key.length];
  if (name === undefined) throw new RangeError('AES-GCM key must be 16, 24 or 32 bytes');
  return name;
}

/** AES-GCM seal over node:crypto. Returns `ciphertext || tag`. */
export function aesGcmSeal(key: Buffer, iv: Buffer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  if (iv.length !== GCM_IV_BYTES) throw new RangeError('AES-GCM IV must be 12 bytes');
  const cipher = createCipheriv(cipherFor(key), key, iv, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  return Buffer.concat([head, tail, cipher.getAuthTag()]);
}

/**
 * AES-GCM open of `ciphertext || tag`. Every failure, including a wrong length, throws the one
 * {@link DecryptionFailedError}; no partial plaintext is returned.
 */
export function aesGcmOpen(key: Buffer, iv: Buffer, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (iv.length !== GCM_IV_BYTES || sealed.length < GCM_TAG_BYTES) throw new DecryptionFailedError();
  const tagStart = sealed.length - GCM_TAG_BYTES;
  try {
    const decipher = createDecipheriv(cipherFor(key), key, iv, { authTagLength: GCM_TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(tagStart));
    const head = decipher.update(sealed.subarray(0, tagStart));
    const tail = decipher.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    throw new DecryptionFailedError();
  }
}
