import { ValidationError } from '../errors.js';

/** String-to-string pairs bound to a ciphertext as additional authenticated data. */
export type EncryptionContext = Readonly<Record<string, string>>;

export const MAX_CONTEXT_PAIRS = 64;
export const MAX_CONTEXT_BYTES = 8192;
/** Keys under this prefix are set by the server from the caller's identity, never by the caller. */
export const RESERVED_CONTEXT_PREFIX = 'kh.';

const EMPTY_CONTEXT_ENCODING = Buffer.from([0, 0]);
/**
 * A lone UTF-16 surrogate has no UTF-8 form: the encoder would map every one of them to U+FFFD, so distinct
 * contexts would share an encoding and the context would no longer bind exactly.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Most strings hold no surrogate at all, which one plain class answers faster than the precise pattern. */
const ANY_SURROGATE = /[\uD800-\uDFFF]/;

function isWellFormed(text: string): boolean {
  return !ANY_SURROGATE.test(text) || !LONE_SURROGATE.test(text);
}

/**
 * Orders well-formed strings as their UTF-8 bytes order, without encoding them. UTF-8 byte order is code point
 * order; UTF-16 code unit order differs from it only between a surrogate (U+D800..DFFF, the halves of code points
 * above U+FFFF) and a unit of U+E000..FFFF, which the shift below puts back in code point order.
 */
function compareUtf8(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i += 1) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Checks the limits and returns the canonical encoding: a big-endian u16 pair count, then for each pair, sorted
 * by the UTF-8 bytes of its key, u16 length + key bytes and u16 length + value bytes. The same context always
 * encodes to the same bytes, whatever the order of its JSON properties.
 */
export function encodeEncryptionContext(context: EncryptionContext | undefined): Buffer {
  if (context === undefined) return EMPTY_CONTEXT_ENCODING;
  const keys = Object.keys(context);
  if (keys.length === 0) return EMPTY_CONTEXT_ENCODING;
  if (keys.length > MAX_CONTEXT_PAIRS) {
    throw new ValidationError(`The encryption context has more than ${MAX_CONTEXT_PAIRS} pairs`);
  }
  // Every encryption and decryption encodes its context: sizes first, then one buffer written in place.
  let size = 2;
  for (const key of keys) {
    const value = context[key];
    if (typeof value !== 'string') throw new ValidationError('Encryption context values must be strings');
    if (!isWellFormed(key) || !isWellFormed(value)) {
      throw new ValidationError('Encryption context keys and values must be well-formed Unicode');
    }
    if (key.length === 0) throw new ValidationError('Encryption context keys must not be empty');
    size += 4 + Buffer.byteLength(key, 'utf8') + Buffer.byteLength(value, 'utf8');
  }
  if (size > MAX_CONTEXT_BYTES) {
    throw new ValidationError(`The encryption context is larger than ${MAX_CONTEXT_BYTES} bytes`);
  }
  keys.sort(compareUtf8);
  const out = Buffer.allocUnsafe(size);
  let offset = out.writeUInt16BE(keys.length, 0);
  for (const key of keys) {
    const keyBytes = out.write(key, offset + 2, 'utf8');
    out.writeUInt16BE(keyBytes, offset);
    offset += 2 + keyBytes;
    const valueBytes = out.write(context[key]!, offset + 2, 'utf8');
    out.writeUInt16BE(valueBytes, offset);
    offset += 2 + valueBytes;
  }
  return out;
}

/** Rejects caller-supplied keys in the namespace the server reserves for identity-bound context. */
export function assertNoReservedContextKeys(context: EncryptionContext | undefined): void {
  if (context === undefined) return;
  for (const key of Object.keys(context)) {
    if (key.startsWith(RESERVED_CONTEXT_PREFIX)) {
      throw new ValidationError(`Encryption context keys starting with "${RESERVED_CONTEXT_PREFIX}" are reserved`);
    }
  }
}
