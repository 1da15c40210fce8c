import { DecryptionFailedError } from '../errors.js';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from './aes-gcm.js';

/**
 * The `kh1` ciphertext format (docs/ciphertext-format.md):
 *
 * | offset | bytes | field                                   |
 * |--------|-------|-----------------------------------------|
 * | 0      | 1     | format version, 0x01                    |
 * | 1      | 16    | key id (UUID, binary)                   |
 * | 17     | 4     | key version, unsigned big-endian        |
 * | 21     | 32    | salt for the per-request HKDF           |
 * | 53     | 12    | AES-GCM IV                              |
 * | 65     | n     | AES-GCM ciphertext                      |
 * | 65 + n | 16    | AES-GCM tag                             |
 *
 * Bytes 0..65 are the header; the header is authenticated as the first part of the AAD.
 */
export const FORMAT_VERSION_1 = 0x01;
export const TEXT_PREFIX = 'kh1:';
export const KEY_ID_BYTES = 16;
export const SALT_BYTES = 32;
export const HEADER_BYTES = 1 + KEY_ID_BYTES + 4 + SALT_BYTES + GCM_IV_BYTES;
export const MIN_CIPHERTEXT_BYTES = HEADER_BYTES + GCM_TAG_BYTES;

const OFFSET_KEY_ID = 1;
const OFFSET_KEY_VERSION = OFFSET_KEY_ID + KEY_ID_BYTES;
const OFFSET_SALT = OFFSET_KEY_VERSION + 4;
const OFFSET_IV = OFFSET_SALT + SALT_BYTES;

const BASE64URL_UNPADDED = /^[A-Za-z0-9_-]*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface CiphertextHeader {
  readonly keyId: string;
  readonly keyVersion: number;
  readonly salt: Buffer;
  readonly iv: Buffer;
}

export interface ParsedCiphertext extends CiphertextHeader {
  /** The 65 header bytes, exactly as received, for the AAD. */
  readonly headerBytes: Buffer;
  /** AES-GCM ciphertext followed by the tag. */
  readonly sealed: Buffer;
}

const MAX_MEMOISED_UUIDS = 10_000;
const uuidBytes = new Map<string, Buffer>();

/**
 * The 16 bytes of a lower-case UUID. Memoised, because every encryption and decryption converts its key's id; the
 * returned buffer is shared and read-only: callers copy from it and never write to it.
 */
export function uuidToBytes(uuid: string): Buffer {
  const memoised = uuidBytes.get(uuid);
  if (memoised !== undefined) return memoised;
  if (!UUID.test(uuid)) throw new RangeError('not a lower-case UUID');
  const bytes = Buffer.from(uuid.replaceAll('-', ''), 'hex');
  if (uuidBytes.size >= MAX_MEMOISED_UUIDS) uuidBytes.clear();
  uuidBytes.set(uuid, bytes);
  return bytes;
}

export function bytesToUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function encodeHeader(header: CiphertextHeader): Buffer {
  if (header.salt.length !== SALT_BYTES || header.iv.length !== GCM_IV_BYTES) {
    throw new RangeError('salt or IV of the wrong length');
  }
  if (!Number.isInteger(header.keyVersion) || header.keyVersion < 1 || header.keyVersion > 0xffffffff) {
    throw new RangeError('key version out of range');
  }
  const out = Buffer.allocUnsafe(HEADER_BYTES);
  out[0] = FORMAT_VERSION_1;
  uuidToBytes(header.keyId).copy(out, OFFSET_KEY_ID);
  out.writeUInt32BE(header.keyVersion, OFFSET_KEY_VERSION);
  header.salt.copy(out, OFFSET_SALT);
  header.iv.copy(out, OFFSET_IV);
  return out;
}

export function formatCiphertext(headerBytes: Buffer, sealed: Buffer): string {
  return TEXT_PREFIX + Buffer.concat([headerBytes, sealed]).toString('base64url');
}

/**
 * Parses a `kh1:` string. Any malformation throws the same {@link DecryptionFailedError} that a failed tag
 * check throws, so the parser is no oracle either.
 */
export function parseCiphertext(text: string): ParsedCiphertext {
  if (typeof text !== 'string' || !text.startsWith(TEXT_PREFIX)) throw new DecryptionFailedError();
  const encoded = text.slice(TEXT_PREFIX.length);
  // Buffer's base64url decoder skips characters it does not know; the alphabet check keeps it strict, and the
  // length check refuses a dangling sextet that a decoder would silently drop.
  if (!BASE64URL_UNPADDED.test(encoded) || encoded.length % 4 === 1) throw new DecryptionFailedError();
  const bytes = Buffer.from(encoded, 'base64url');
  if (bytes.length < MIN_CIPHERTEXT_BYTES || bytes[0] !== FORMAT_VERSION_1) throw new DecryptionFailedError();
  if (bytes.toString('base64url') !== encoded) throw new DecryptionFailedError();
  const keyVersion = bytes.readUInt32BE(OFFSET_KEY_VERSION);
  if (keyVersion === 0) throw new DecryptionFailedError();
  return {
    keyId: bytesToUuid(bytes.subarray(OFFSET_KEY_ID, OFFSET_KEY_VERSION)),
    keyVersion,
    salt: bytes.subarray(OFFSET_SALT, OFFSET_IV),
    iv: bytes.subarray(OFFSET_IV, HEADER_BYTES),
    headerBytes: bytes.subarray(0, HEADER_BYTES),
    sealed: bytes.subarray(HEADER_BYTES),
  };
}
