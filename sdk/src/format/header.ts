import { DecryptionError } from '../errors.js';
import type { CanonicalContext } from './encryption-context.js';
import { compareBytes, MAX_CONTEXT_BYTES, MAX_CONTEXT_PAIRS, RESERVED_CONTEXT_PREFIX } from './encryption-context.js';
import { suiteById, type Suite } from './suites.js';

/**
 * The v1 message header (docs/envelope-format.md). All integers are big-endian.
 *
 * | bytes | field                                                          |
 * |-------|----------------------------------------------------------------|
 * | 4     | magic `KHEM`                                                    |
 * | 1     | format version, 0x01                                            |
 * | 2     | suite id                                                        |
 * | 2     | header length in bytes, from the magic to the commitment's end |
 * | 32    | message id (random)                                             |
 * | 4     | segment size: plaintext bytes in every segment but the last     |
 * | 2     | wrapped data key length W                                       |
 * | W     | wrapped data key: the service's `kh1` ciphertext, binary        |
 * | C     | encryption context, canonical encoding (starts with its count)  |
 * | 32    | key commitment                                                  |
 *
 * The whole header is the AAD of every segment, so changing any header byte fails every segment.
 */
export const MAGIC = Uint8Array.from([0x4b, 0x48, 0x45, 0x4d]);
/** The format version this SDK writes and reads. */
export const FORMAT_VERSION = 0x01;
/** A 256-bit random message id: the HKDF salt, so content keys never repeat across messages. */
export const MESSAGE_ID_BYTES = 32;
/** Magic, version, suite and length: enough to know how many bytes the rest of the header needs. */
export const HEADER_PREFIX_BYTES = 9;
/** The header length field is a u16. */
export const MAX_HEADER_BYTES = 0xffff;
/** Segment sizes a reader accepts: small enough to bound its memory, large enough to bound the tag overhead. */
export const MIN_SEGMENT_SIZE = 256;
/** See {@link MIN_SEGMENT_SIZE}. */
export const MAX_SEGMENT_SIZE = 1 << 24;
/** The segment size new messages use: 64 KiB. */
export const DEFAULT_SEGMENT_SIZE = 1 << 16;
/** Far above a `kh1` ciphertext of a 32-byte key (113 bytes), and a bound on what a reader sends to the service. */
export const MAX_WRAPPED_KEY_BYTES = 1024;

/** A parsed or newly written header. */
export interface MessageHeader {
  readonly suite: Suite;
  readonly messageId: Uint8Array;
  readonly segmentSize: number;
  readonly wrappedKey: Uint8Array;
  readonly context: CanonicalContext;
  readonly commitment: Uint8Array;
  /** The header exactly as written or read: the AAD of every segment. */
  readonly bytes: Uint8Array;
}

/** What a new header is made of. */
export type HeaderFields = Omit<MessageHeader, 'bytes'>;

/** True for an integer segment size in the range readers accept. */
export function isValidSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= MIN_SEGMENT_SIZE && size <= MAX_SEGMENT_SIZE;
}

/** Serialises a header. Arguments come from the SDK itself, so a bad one is a bug: it throws a RangeError. */
export function encodeHeader(fields: HeaderFields): MessageHeader {
  const { suite, messageId, segmentSize, wrappedKey, context, commitment } = fields;
  if (messageId.length !== MESSAGE_ID_BYTES) throw new RangeError('message id of the wrong length');
  if (commitment.length !== suite.commitmentBytes) throw new RangeError('commitment of the wrong length');
  if (!isValidSegmentSize(segmentSize)) throw new RangeError('segment size out of range');
  if (wrappedKey.length === 0 || wrappedKey.length > MAX_WRAPPED_KEY_BYTES) throw new RangeError('wrapped key length out of range');
  const length = HEADER_PREFIX_BYTES + MESSAGE_ID_BYTES + 4 + 2 + wrappedKey.length + context.encoded.length + commitment.length;
  if (length > MAX_HEADER_BYTES) throw new RangeError('header too long');
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  bytes[4] = FORMAT_VERSION;
  view.setUint16(5, suite.id);
  view.setUint16(7, length);
  let offset = HEADER_PREFIX_BYTES;
  bytes.set(messageId, offset);
  offset += MESSAGE_ID_BYTES;
  view.setUint32(offset, segmentSize);
  view.setUint16(offset + 4, wrappedKey.length);
  offset += 6;
  bytes.set(wrappedKey, offset);
  offset += wrappedKey.length;
  bytes.set(context.encoded, offset);
  offset += context.encoded.length;
  bytes.set(commitment, offset);
  return Object.freeze({ ...fields, bytes });
}

/**
 * How many bytes the header at the start of `prefix` has, once at least HEADER_PREFIX_BYTES are known. Throws the
 * decryption error for anything that is not a v1 header of a known suite.
 */
export function headerLength(prefix: Uint8Array): number {
  if (prefix.length < HEADER_PREFIX_BYTES) throw new RangeError('need the header prefix');
  for (let i = 0; i < MAGIC.length; i++) if (prefix[i] !== MAGIC[i]) throw new DecryptionError();
  if (prefix[4] !== FORMAT_VERSION) throw new DecryptionError();
  const suite = suiteById((prefix[5]! << 8) | prefix[6]!);
  if (suite === undefined) throw new DecryptionError();
  const length = (prefix[7]! << 8) | prefix[8]!;
  const minimum = HEADER_PREFIX_BYTES + MESSAGE_ID_BYTES + 6 + 1 + 2 + suite.commitmentBytes;
  if (length < minimum) throw new DecryptionError();
  return length;
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses a header that starts `input`. Strict: every length must be in range, the fields must use exactly the
 * declared header length, and the context must be canonical (sorted, unique, well-formed UTF-8). So one message has
 * exactly one header encoding. Every refusal is the one decryption error.
 */
export function decodeHeader(input: Uint8Array): MessageHeader {
  if (input.length < HEADER_PREFIX_BYTES) throw new DecryptionError();
  const length = headerLength(input);
  if (input.length < length) throw new DecryptionError();
  // A copy, so later changes to the caller's buffer cannot change a header already checked. Buffer#slice would
  // return a view, hence Uint8Array's own slice.
  const bytes = Uint8Array.prototype.slice.call(input, 0, length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const suite = suiteById(view.getUint16(5))!;
  const bodyEnd = length - suite.commitmentBytes;
  let offset = HEADER_PREFIX_BYTES;
  const messageId = bytes.subarray(offset, offset + MESSAGE_ID_BYTES);
  offset += MESSAGE_ID_BYTES;
  const segmentSize = view.getUint32(offset);
  if (!isValidSegmentSize(segmentSize)) throw new DecryptionError();
  const wrappedLength = view.getUint16(offset + 4);
  offset += 6;
  if (wrappedLength === 0 || wrappedLength > MAX_WRAPPED_KEY_BYTES || offset + wrappedLength > bodyEnd) throw new DecryptionError();
  const wrappedKey = bytes.subarray(offset, offset + wrappedLength);
  offset += wrappedLength;
  const contextStart = offset;
  if (offset + 2 > bodyEnd) throw new DecryptionError();
  const count = view.getUint16(offset);
  // The service's own limits (docs/envelope-format.md): a larger context never came from a real message.
  if (count > MAX_CONTEXT_PAIRS || bodyEnd - contextStart > MAX_CONTEXT_BYTES) throw new DecryptionError();
  offset += 2;
  const pairs: Array<readonly [string, string]> = [];
  let previous: Uint8Array | undefined;
  for (let i = 0; i < count; i++) {
    const name = readString(bytes, view, offset, bodyEnd);
    offset = name.end;
    const value = readString(bytes, view, offset, bodyEnd);
    offset = value.end;
    if (name.raw.length === 0 || name.text.startsWith(RESERVED_CONTEXT_PREFIX)) throw new DecryptionError();
    if (previous !== undefined && compareBytes(previous, name.raw) >= 0) throw new DecryptionError();
    previous = name.raw;
    pairs.push(Object.freeze([name.text, value.text] as const));
  }
  if (offset !== bodyEnd) throw new DecryptionError();
  const encoded = bytes.subarray(contextStart, bodyEnd);
  const frozenPairs = Object.freeze(pairs);
  const context: CanonicalContext = Object.freeze({ pairs: frozenPairs, encoded, key: count === 0 ? '' : JSON.stringify(frozenPairs) });
  const commitment = bytes.subarray(bodyEnd, length);
  return Object.freeze({ suite, messageId, segmentSize, wrappedKey, context, commitment, bytes });
}

function readString(bytes: Uint8Array, view: DataView, offset: number, end: number): { raw: Uint8Array; text: string; end: number } {
  if (offset + 2 > end) throw new DecryptionError();
  const length = view.getUint16(offset);
  const start = offset + 2;
  if (start + length > end) throw new DecryptionError();
  const raw = bytes.subarray(start, start + length);
  let text: string;
  try {
    text = decoder.decode(raw);
  } catch {
    throw new DecryptionError();
  }
  return { raw, text, end: start + length };
}
