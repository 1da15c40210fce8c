const PREFIX = 'kh1:';
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** docs/ciphertext-format.md: format version (1 byte), key id (16), key version (u32), then salt, IV and body. */
const FORMAT_VERSION_1 = 0x01;
const KEY_ID_OFFSET = 1;
const KEY_ID_BYTES = 16;
const KEY_VERSION_OFFSET = KEY_ID_OFFSET + KEY_ID_BYTES;

/** The binary form of a service ciphertext (`kh1:` + unpadded base64url), or undefined if it is not one. */
export function decodeWrappedKey(text: string): Uint8Array | undefined {
  if (!text.startsWith(PREFIX) || !BASE64URL.test(text.slice(PREFIX.length))) return undefined;
  const bytes = Buffer.from(text.slice(PREFIX.length), 'base64url');
  return bytes.length > KEY_ID_OFFSET + KEY_ID_BYTES ? new Uint8Array(bytes) : undefined;
}

/** The service's text form of a wrapped data key. */
export function encodeWrappedKey(wrapped: Uint8Array): string {
  return PREFIX + Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength).toString('base64url');
}

/** The id of the service key a wrapped data key names (docs/ciphertext-format.md: bytes 1–16), as a UUID. */
export function wrappedKeyId(wrapped: Uint8Array): string | undefined {
  if (wrapped.length < KEY_ID_OFFSET + KEY_ID_BYTES) return undefined;
  const hex = Buffer.from(wrapped.subarray(KEY_ID_OFFSET, KEY_ID_OFFSET + KEY_ID_BYTES)).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The service key and version a wrapped data key names (docs/ciphertext-format.md), read without unwrapping it, or
 * undefined if it is not a `kh1` ciphertext. Unauthenticated: only the service can tell whether it is genuine.
 */
export function wrappedKeyRef(wrapped: Uint8Array): { readonly keyId: string; readonly keyVersion: number } | undefined {
  if (wrapped.length < KEY_VERSION_OFFSET + 4 || wrapped[0] !== FORMAT_VERSION_1) return undefined;
  const keyVersion = Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength).readUInt32BE(KEY_VERSION_OFFSET);
  const keyId = wrappedKeyId(wrapped);
  return keyId === undefined || keyVersion === 0 ? undefined : { keyId, keyVersion };
}
