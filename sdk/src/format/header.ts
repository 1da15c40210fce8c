import { DecryptionError } from '../errors.js';
import type { CanonicalContext } from './encryption-context.js';
import { compareBytes, MAX_CONTEXT_BYTES, MAX_CONTEXT_PAIRS, RESERVED_CONTEXT_PREFIX } from './encryption-context.js';
import { suiteById, type Suite } from './suites.js';

/**
 * The message header (docs/envelope-format.md). All integers are big-endian. Both versions start with the same
 * prefix, which says how long the header is:
 *
 * | bytes | field                                                          |
 * |-------|----------------------------------------------------------------|
 * | 4     | magic `KHEM`                                                    |
 * | 1     | format version, 0x01 or 0x02                                    |
 * | 2     | suite id, a suite of that version                               |
 * | 2     | header length in bytes, from the magic to the header's end     |
 *
 * Version 1 continues with the message id (32 bytes), the segment size (u32), the wrapped data key's length W (u16)
 * and its W bytes (the service's `kh1` ciphertext, binary), the encryption context (canonical encoding, starting with
 * its count) and the key commitment (32). Version 2 has the same fields with the message id (24 bytes) moved to the
 * end: everything before it is the same for every message under one data key, context and segment size, so a writer
 * fills in a template and a reader recognises a header it has already parsed by that prefix alone.
 *
 * The whole header is the AAD of every segment, so changing any header byte fails every segment.
 */
export const MAGIC = Uint8Array.from([0x4b, 0x48, 0x45, 0x4d]);
/** The format version new messages are written in; version 1 is still read. */
export const FORMAT_VERSION = 0x02;
/** Magic, version, suite and length: enough to know how many bytes the rest of the header needs. */
export const HEADER_PREFIX_BYTES = 9;
/** The header length field is a u16. */
export const MAX_HEADER_BYTES = 0xffff;
/** Segment sizes a reader accepts: small enough to bound its memory, large enough to bound the tag overhead. */
export const MIN_SEGMENT_SIZE = 256;
/** See {@link MIN_SEGMENT_SIZE}. */
export const MAX_SEGMENT_SIZE = 1 << 24;
/**
 * The segment size new messages use: 1 MiB, as Tink's streaming AEAD. Each segment costs a cipher context and a tag
 * whatever its size; at 64 KiB that was about 40% of a stream's CPU (`node --cpu-prof`, 64 MiB), at 1 MiB it is lost
 * in the AES-GCM. A decrypting stream holds about one segment, so memory stays bounded.
 */
export const DEFAULT_SEGMENT_SIZE = 1 << 20;
/** Far above a `kh1` ciphertext of a 32-byte key (113 bytes), and a bound on what a reader sends to the service. */
export const MAX_WRAPPED_KEY_BYTES = 1024;

/** A parsed or newly written header. */
export interface MessageHeader {
  readonly suite: Suite;
  /** Random, fresh for every message: `suite.messageIdBytes` bytes. */
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

/** The fields every message under one data key, context and segment size shares, encoded once. */
export interface HeaderTemplate {
  readonly fields: Omit<HeaderFields, 'messageId'>;
  /** The header with zeros where the message id goes. */
  readonly bytes: Uint8Array;
  readonly messageIdOffset: number;
}

/** True for an integer segment size in the range readers accept. */
export function isValidSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= MIN_SEGMENT_SIZE && size <= MAX_SEGMENT_SIZE;
}

/** Serialises a header. Arguments come from the SDK itself, so a bad one is a bug: it throws a RangeError. */
export function encodeHeader(fields: HeaderFields): MessageHeader {
  const template = headerTemplate(fields);
  return writeHeader(template, fields.messageId, new Uint8Array(template.bytes.length));
}

/** Encodes every field of a header but the message id; see {@link writeHeader}. Throws a RangeError on a bad one. */
export function headerTemplate(fields: Omit<HeaderFields, 'messageId'>): HeaderTemplate {
  const { suite, segmentSize, wrappedKey, context, commitment } = fields;
  if (commitment.length !== suite.commitmentBytes) throw new RangeError('commitment of the wrong length');
  if (!isValidSegmentSize(segmentSize)) throw new RangeError('segment size out of range');
  if (wrappedKey.length === 0 || wrappedKey.length > MAX_WRAPPED_KEY_BYTES) throw new RangeError('wrapped key length out of range');
  const length = HEADER_PREFIX_BYTES + suite.messageIdBytes + 4 + 2 + wrappedKey.length + context.encoded.length + commitment.length;
  if (length > MAX_HEADER_BYTES) throw new RangeError('header too long');
  // Byte stores rather than a DataView: a DataView and `{ ...fields }` were once more than half of a header's cost.
  const bytes = new Uint8Array(length);
  bytes.set(MAGIC, 0);
  bytes[4] = suite.formatVersion;
  writeUint16(bytes, 5, suite.id);
  writeUint16(bytes, 7, length);
  let offset = HEADER_PREFIX_BYTES;
  // Version 1 has the message id first; version 2 last (see the layout above).
  const messageIdOffset = suite.formatVersion === 1 ? offset : length - suite.messageIdBytes;
  if (suite.formatVersion === 1) offset += suite.messageIdBytes;
  writeUint16(bytes, offset, segmentSize >>> 16);
  writeUint16(bytes, offset + 2, segmentSize & 0xffff);
  writeUint16(bytes, offset + 4, wrappedKey.length);
  offset += 6;
  bytes.set(wrappedKey, offset);
  offset += wrappedKey.length;
  bytes.set(context.encoded, offset);
  offset += context.encoded.length;
  bytes.set(commitment, offset);
  return Object.freeze({ fields: Object.freeze({ suite, segmentSize, wrappedKey, context, commitment }), bytes, messageIdOffset });
}

/**
 * Writes the header of one message, the template with its message id, at the start of `out`, which is usually the
 * message's own buffer: the returned header's bytes are a view of it.
 */
export function writeHeader(template: HeaderTemplate, messageId: Uint8Array, out: Uint8Array): MessageHeader {
  const { fields } = template;
  if (messageId.length !== fields.suite.messageIdBytes) throw new RangeError('message id of the wrong length');
  out.set(template.bytes, 0);
  out.set(messageId, template.messageIdOffset);
  const bytes = out.subarray(0, template.bytes.length);
  return Object.freeze({
    suite: fields.suite,
    messageId: bytes.subarray(template.messageIdOffset, template.messageIdOffset + messageId.length),
    segmentSize: fields.segmentSize,
    wrappedKey: fields.wrappedKey,
    context: fields.context,
    commitment: fields.commitment,
    bytes,
  });
}

function writeUint16(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 8;
  bytes[offset + 1] = value & 0xff;
}

function readUint16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 8) | bytes[offset + 1]!;
}

/**
 * How many bytes the header at the start of `prefix` has, once at least HEADER_PREFIX_BYTES are known. Throws the
 * decryption error for anything that is not a header of a known version and a suite of that version.
 */
export function headerLength(prefix: Uint8Array): number {
  if (prefix.length < HEADER_PREFIX_BYTES) throw new RangeError('need the header prefix');
  for (let i = 0; i < MAGIC.length; i++) if (prefix[i] !== MAGIC[i]) throw new DecryptionError();
  const suite = suiteById(readUint16(prefix, 5));
  if (suite === undefined || prefix[4] !== suite.formatVersion) throw new DecryptionError();
  const length = readUint16(prefix, 7);
  const minimum = HEADER_PREFIX_BYTES + suite.messageIdBytes + 6 + 1 + 2 + suite.commitmentBytes;
  if (length < minimum) throw new DecryptionError();
  return length;
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The fields of a parsed header other than its message id and bytes. */
type HeaderBody = Omit<HeaderFields, 'messageId'>;

/**
 * Version 2 headers parsed before, by the bytes before their message id. Parsing is a function of those bytes, so a
 * header seen again (every message under a cached data key has the same ones) skips the strict parse of its context,
 * which was most of a small message's parse. Bounded; the oldest goes first.
 */
const parsed = new Map<string, HeaderBody>();
const MAX_PARSED_HEADERS = 256;

/**
 * Parses a header that starts `input`. Strict: every length must be in range, the fields must use exactly the
 * declared header length, and the context must be canonical (sorted, unique, well-formed UTF-8). So one message has
 * exactly one header encoding. Every refusal is the one decryption error.
 */
export function decodeHeader(input: Uint8Array): MessageHeader {
  if (input.length < HEADER_PREFIX_BYTES) throw new DecryptionError();
  const length = headerLength(input);
  if (input.length < length) throw new DecryptionError();
  // A copy, so later changes to the caller's buffer cannot change a header already checked. It comes from Buffer's
  // shared pool without zero-filling: `set` writes every byte, a header is public, and a received header is never
  // handed to the caller. It is then viewed as a plain Uint8Array, because the subarrays of a Buffer are Buffers,
  // which cost more to create. Fields are read with byte loads rather than a DataView.
  const pooled = Buffer.allocUnsafe(length);
  const bytes = new Uint8Array(pooled.buffer, pooled.byteOffset, length);
  bytes.set(new Uint8Array(input.buffer, input.byteOffset, length));
  const suite = suiteById(readUint16(bytes, 5))!;
  if (suite.formatVersion === 1) {
    const body = parseBody(bytes, suite, HEADER_PREFIX_BYTES + suite.messageIdBytes, length);
    return Object.freeze({ ...body, messageId: bytes.subarray(HEADER_PREFIX_BYTES, HEADER_PREFIX_BYTES + suite.messageIdBytes), bytes });
  }
  const messageIdOffset = length - suite.messageIdBytes;
  const body = bodyOf(bytes, suite, messageIdOffset);
  return Object.freeze({
    suite,
    messageId: bytes.subarray(messageIdOffset),
    segmentSize: body.segmentSize,
    wrappedKey: body.wrappedKey,
    context: body.context,
    commitment: body.commitment,
    bytes,
  });
}

/**
 * The last version 2 header body parsed or recalled, and its bytes: one busy data key needs no lookup at all. Its
 * views are of a copy of its own, as are the memo's, so they outlive the header they were parsed from.
 */
let last: { readonly prefix: Uint8Array; readonly body: HeaderBody } | undefined;

/** The parsed fields of a version 2 header, whose message id starts at `messageIdOffset`: recalled, or parsed now. */
function bodyOf(bytes: Uint8Array, suite: Suite, messageIdOffset: number): HeaderBody {
  if (last !== undefined && last.prefix.length === messageIdOffset && equalPrefix(last.prefix, bytes)) return last.body;
  const key = Buffer.from(bytes.buffer, bytes.byteOffset, messageIdOffset).toString('latin1');
  let body = parsed.get(key);
  if (body === undefined) {
    body = parseBody(bytes.slice(0, messageIdOffset), suite, HEADER_PREFIX_BYTES, messageIdOffset);
    if (parsed.size >= MAX_PARSED_HEADERS) parsed.delete(parsed.keys().next().value as string);
    parsed.set(key, body);
  }
  last = { prefix: bytes.slice(0, messageIdOffset), body };
  return body;
}

function equalPrefix(prefix: Uint8Array, bytes: Uint8Array): boolean {
  // Buffer.compare is a native memcmp; a JavaScript loop over a typical 170-byte prefix cost as much again.
  return Buffer.compare(prefix, bytes.subarray(0, prefix.length)) === 0;
}

/**
 * The fields from the segment size to the commitment, which ends at `end`. Its views are of `bytes`, which a version 2
 * header gives as a copy of its own, since the memo keeps them.
 */
function parseBody(bytes: Uint8Array, suite: Suite, start: number, end: number): HeaderBody {
  const bodyEnd = end - suite.commitmentBytes;
  let offset = start;
  const segmentSize = readUint16(bytes, offset) * 0x10000 + readUint16(bytes, offset + 2);
  if (!isValidSegmentSize(segmentSize)) throw new DecryptionError();
  const wrappedLength = readUint16(bytes, offset + 4);
  offset += 6;
  if (wrappedLength === 0 || wrappedLength > MAX_WRAPPED_KEY_BYTES || offset + wrappedLength > bodyEnd) throw new DecryptionError();
  const wrappedKey = bytes.subarray(offset, offset + wrappedLength);
  offset += wrappedLength;
  const contextStart = offset;
  if (offset + 2 > bodyEnd) throw new DecryptionError();
  const count = readUint16(bytes, offset);
  // The service's own limits (docs/envelope-format.md): a larger context never came from a real message.
  if (count > MAX_CONTEXT_PAIRS || bodyEnd - contextStart > MAX_CONTEXT_BYTES) throw new DecryptionError();
  offset += 2;
  const pairs: Array<readonly [string, string]> = [];
  let previous: Uint8Array | undefined;
  for (let i = 0; i < count; i++) {
    const name = readString(bytes, offset, bodyEnd);
    offset = name.end;
    const value = readString(bytes, offset, bodyEnd);
    offset = value.end;
    if (name.raw.length === 0 || name.text.startsWith(RESERVED_CONTEXT_PREFIX)) throw new DecryptionError();
    if (previous !== undefined && compareBytes(previous, name.raw) >= 0) throw new DecryptionError();
    previous = name.raw;
    pairs.push(Object.freeze([name.text, value.text] as const));
  }
  if (offset !== bodyEnd) throw new DecryptionError();
  const context = new ReceivedContext(Object.freeze(pairs), bytes.subarray(contextStart, bodyEnd));
  const commitment = bytes.subarray(bodyEnd, end);
  return Object.freeze({ suite, segmentSize, wrappedKey, context, commitment });
}

/**
 * The context of a received header. Only the encrypt side of the data-key cache reads `key`, never from a received
 * header, so it is computed when read instead of on every decryption, where the JSON cost about a third of the parse.
 * A prototype getter, because a getter in an object literal made each context slower to create than the JSON itself.
 */
class ReceivedContext implements CanonicalContext {
  constructor(
    readonly pairs: ReadonlyArray<readonly [string, string]>,
    readonly encoded: Uint8Array,
  ) {
    Object.freeze(this);
  }

  get key(): string {
    return this.pairs.length === 0 ? '' : JSON.stringify(this.pairs);
  }
}

function readString(bytes: Uint8Array, offset: number, end: number): { raw: Uint8Array; text: string; end: number } {
  if (offset + 2 > end) throw new DecryptionError();
  const length = readUint16(bytes, offset);
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
