import { aesGcmOpen, aesGcmSeal, AES_256_KEY_BYTES, GCM_IV_BYTES } from './aes-gcm.js';
import {
  encodeHeader,
  formatCiphertext,
  KEY_ID_BYTES,
  SALT_BYTES,
  uuidToBytes,
  type ParsedCiphertext,
} from './ciphertext-format.js';
import { encodeEncryptionContext, type EncryptionContext } from './encryption-context.js';
import { hkdfSha256 } from './hkdf.js';
import { randomBytesPooled } from './random.js';
import type { SecretBytes } from './secret-bytes.js';

const HKDF_INFO_LABEL = Buffer.from('keyhold/kh1/data-encryption-key', 'ascii');

/**
 * HKDF-SHA256 (RFC 5869) from the version key and the per-request salt, as AWS KMS derives a key per request.
 * Each request encrypts under its own key, so the 2^32 random-IV bound of NIST SP 800-38D §8.3 applies per
 * request, not per key version, and never binds.
 */
function deriveRequestKey(versionKey: SecretBytes, salt: Buffer, keyId: string, keyVersion: number): Buffer {
  const info = Buffer.allocUnsafe(HKDF_INFO_LABEL.length + KEY_ID_BYTES + 4);
  HKDF_INFO_LABEL.copy(info, 0);
  uuidToBytes(keyId).copy(info, HKDF_INFO_LABEL.length);
  info.writeUInt32BE(keyVersion, HKDF_INFO_LABEL.length + KEY_ID_BYTES);
  return versionKey.use((ikm) => hkdfSha256(ikm, salt, info, AES_256_KEY_BYTES));
}

function additionalData(headerBytes: Buffer, context: EncryptionContext | undefined): Buffer {
  return Buffer.concat([headerBytes, encodeEncryptionContext(context)]);
}

export interface SealRequest {
  readonly keyId: string;
  readonly keyVersion: number;
  readonly versionKey: SecretBytes;
  readonly plaintext: Uint8Array;
  readonly context?: EncryptionContext | undefined;
}

/** Encrypts `plaintext` under one key version and returns the `kh1:` text form. */
export function sealWithKeyVersion(request: SealRequest): string {
  // Validate the context before spending randomness, so that bad input fails fast.
  const contextBytes = encodeEncryptionContext(request.context);
  const random = randomBytesPooled(SALT_BYTES + GCM_IV_BYTES);
  const salt = random.subarray(0, SALT_BYTES);
  const iv = random.subarray(SALT_BYTES);
  const headerBytes = encodeHeader({ keyId: request.keyId, keyVersion: request.keyVersion, salt, iv });
  const key = deriveRequestKey(request.versionKey, salt, request.keyId, request.keyVersion);
  try {
    const sealed = aesGcmSeal(key, iv, request.plaintext, Buffer.concat([headerBytes, contextBytes]));
    return formatCiphertext(headerBytes, sealed);
  } finally {
    key.fill(0);
  }
}

/** Decrypts a parsed `kh1` ciphertext with the version key its header names. */
export function openWithKeyVersion(
  parsed: ParsedCiphertext,
  versionKey: SecretBytes,
  context: EncryptionContext | undefined,
): Buffer {
  const aad = additionalData(parsed.headerBytes, context);
  const key = deriveRequestKey(versionKey, parsed.salt, parsed.keyId, parsed.keyVersion);
  try {
    return aesGcmOpen(key, parsed.iv, parsed.sealed, aad);
  } finally {
    key.fill(0);
  }
}

const WRAP_AAD_LABEL = Buffer.from('keyhold/key-version/v1', 'ascii');

/**
 * The AAD under which the root key wraps a version's material. It binds the key id and version, so wrapped
 * material copied onto another key or version in the store fails to unwrap.
 */
export function keyVersionWrapAad(keyId: string, version: number): Buffer {
  const aad = Buffer.allocUnsafe(WRAP_AAD_LABEL.length + KEY_ID_BYTES + 4);
  WRAP_AAD_LABEL.copy(aad, 0);
  uuidToBytes(keyId).copy(aad, WRAP_AAD_LABEL.length);
  aad.writeUInt32BE(version, WRAP_AAD_LABEL.length + KEY_ID_BYTES);
  return aad;
}
