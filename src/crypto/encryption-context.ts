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
  const pairs: Array<[Buffer, Buffer]> = [];
  let size = 2;
  for (const key of keys) {
    const value = context[key];
    if (typeof value !== 'string') throw new ValidationError('Encryption context values must be strings');
    if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value)) {
      throw new ValidationError('Encryption context keys and values must be well-formed Unicode');
    }
    const keyBytes = Buffer.from(key, 'utf8');
    const valueBytes = Buffer.from(value, 'utf8');
    if (keyBytes.length === 0) throw new ValidationError('Encryption context keys must not be empty');
    size += 4 + keyBytes.length + valueBytes.length;
    pairs.push([keyBytes, valueBytes]);
  }
  if (size > MAX_CONTEXT_BYTES) {
    throw new ValidationError(`The encryption context is larger than ${MAX_CONTEXT_BYTES} bytes`);
  }
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  const out = Buffer.allocUnsafe(size);
  let offset = out.writeUInt16BE(pairs.length, 0);
  for (const [keyBytes, valueBytes] of pairs) {
    offset = out.writeUInt16BE(keyBytes.length, offset);
    offset += keyBytes.copy(out, offset);
    offset = out.writeUInt16BE(valueBytes.length, offset);
    offset += valueBytes.copy(out, offset);
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
