import type { CryptoBackend, SyncCryptoBackend } from '../crypto/primitives.js';
import { DecryptionError } from '../errors.js';
import { contextIncludes, type CanonicalContext } from '../format/encryption-context.js';
import { decodeHeader, encodeHeader, writeHeader, type HeaderFields, type MessageHeader } from '../format/header.js';
import type { Suite } from '../format/suites.js';
import type { DataKey } from '../keys/data-key-source.js';
import { materialOf, materialOfAsync } from './data-key-material.js';
import { dataKeyPlaintext, deriveMessageKeys, MessageCipher, messageKeysSync, nonceBase, segmentNonce, type DataKeyBytes } from './message-cipher.js';

/** What a new message needs besides its plaintext. */
export interface MessageParameters {
  readonly suite: Suite;
  readonly segmentSize: number;
  readonly context: CanonicalContext;
}

/**
 * Starts a message under a data key: a fresh message id, the derived content key and commitment, the header. The
 * data key is not kept; the caller zeroes its copy.
 */
export async function startMessage(backend: CryptoBackend, dataKey: DataKey, parameters: MessageParameters): Promise<MessageCipher> {
  const { suite } = parameters;
  const messageId = backend.randomBytes(suite.messageIdBytes);
  let keys: { contentKey: Uint8Array; commitment: Uint8Array };
  if (suite.derivation === 'per-message-hkdf') {
    keys = await deriveMessageKeys(backend, suite, dataKey.plaintext, messageId);
  } else {
    const { material, owned } = await materialOfAsync(backend, suite, dataKey);
    try {
      keys = { contentKey: await material.contentKey(messageId), commitment: material.commitment };
    } finally {
      if (owned) material.dispose();
    }
  }
  try {
    const header = encodeHeader({ ...templateFields(dataKey, parameters, keys.commitment), messageId });
    return await MessageCipher.forEncryption(backend, header, keys.contentKey);
  } finally {
    keys.contentKey.fill(0);
  }
}

function templateFields(dataKey: DataKey, parameters: MessageParameters, commitment: Uint8Array): Omit<HeaderFields, 'messageId'> {
  return { suite: parameters.suite, segmentSize: parameters.segmentSize, wrappedKey: dataKey.wrapped, context: parameters.context, commitment };
}

/** Where each segment of a message of `length` plaintext bytes lies: the segment count and the last one's length. */
function segmentsOf(length: number, segmentSize: number): { count: number; lastLength: number } {
  const count = Math.max(1, Math.ceil(length / segmentSize));
  return { count, lastLength: length - (count - 1) * segmentSize };
}

/**
 * Encrypts a whole message in one synchronous call, for a format v2 suite on a backend without promises: what
 * `encrypt` does with a cached data key. The message is written straight into its own buffer, header first.
 */
export function sealMessageSync(backend: CryptoBackend, dataKey: DataKey, parameters: MessageParameters, plaintext: Uint8Array): Uint8Array {
  const { suite, segmentSize } = parameters;
  const sync = backend.sync;
  if (sync === undefined || suite.derivation !== 'xaes') throw new RangeError('sealMessageSync needs synchronous primitives and a format v2 suite');
  const { material, owned } = materialOf(sync, suite, dataKey);
  try {
    const template = material.headerTemplate(templateFields(dataKey, parameters, material.commitment));
    const { count } = segmentsOf(plaintext.length, segmentSize);
    // Not zero-filled, and not from Buffer's shared pool: header and segments tile it exactly, so every byte is
    // written before the caller gets it, and the caller's buffer shares its memory with nothing else.
    const out = Buffer.allocUnsafeSlow(template.bytes.length + plaintext.length + count * suite.tagBytes);
    const header = writeHeader(template, backend.randomBytes(suite.messageIdBytes), out);
    const contentKey = material.contentKeySync(header.messageId);
    try {
      const base = nonceBase(header);
      let offset = header.bytes.length;
      for (let index = 0; index < count; index++) {
        const start = index * segmentSize;
        const segment = plaintext.subarray(start, Math.min(plaintext.length, start + segmentSize));
        sync.seal(contentKey, segmentNonce(base, index, index === count - 1), segment, header.bytes, out, offset);
        offset += segment.length + suite.tagBytes;
      }
    } finally {
      contentKey.fill(0);
    }
    return out;
  } finally {
    if (owned) material.dispose();
  }
}

/** Encrypts a whole message held in memory. */
export async function encryptMessage(message: MessageCipher, plaintext: Uint8Array): Promise<Uint8Array> {
  const { segmentSize } = message.header;
  const parts: Uint8Array[] = [message.header.bytes];
  let length = message.header.bytes.length;
  try {
    let offset = 0;
    do {
      const end = Math.min(plaintext.length, offset + segmentSize);
      const sealed = await message.seal(plaintext.subarray(offset, end), end === plaintext.length);
      parts.push(sealed);
      length += sealed.length;
      offset = end;
    } while (offset < plaintext.length);
  } finally {
    message.dispose();
  }
  // Not zero-filled, and not from Buffer's shared pool: the parts tile it exactly, so every byte is written below
  // before the caller gets it, and the caller's buffer shares its memory with nothing else.
  const out = Buffer.allocUnsafeSlow(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Unwraps the data key of a parsed header: the service or a cache behind it. */
export type DataKeyUnwrapper = (header: MessageHeader) => Promise<DataKeyBytes>;

/**
 * Decrypts a whole message held in memory. The header is parsed and the expected context checked before the data
 * key is asked for; the commitment is checked before any segment is opened; the plaintext is returned only after
 * every segment, the last one included, has authenticated.
 */
export async function decryptMessage(
  backend: CryptoBackend,
  blob: Uint8Array,
  unwrap: DataKeyUnwrapper,
  expectedContext: CanonicalContext | undefined,
): Promise<{ header: MessageHeader; plaintext: Uint8Array }> {
  const header = decodeHeader(blob);
  if (expectedContext !== undefined && !contextIncludes(header.context, expectedContext)) throw new DecryptionError();
  const layout = sealedLayout(header, blob);
  const dataKey = await unwrap(header);
  if (backend.sync !== undefined) {
    try {
      return { header, plaintext: openLayoutSync(backend.sync, backend, header, layout, dataKey) };
    } finally {
      zero(dataKey);
    }
  }
  let message: MessageCipher;
  try {
    message = await MessageCipher.forDecryption(backend, header, dataKey);
  } finally {
    zero(dataKey);
  }
  try {
    return { header, plaintext: await openSegments(layout, (sealed, final) => message.open(sealed, final)) };
  } finally {
    message.dispose();
  }
}

/**
 * {@link decryptMessage} in one synchronous call, when the backend has synchronous primitives and `cached` has the
 * data key at once (a cache hit): what `decrypt` tries first. Undefined when it cannot, and the caller then takes the
 * asynchronous path; every failure about the message is the decryption error, as there.
 */
export function decryptMessageIfCached(
  backend: CryptoBackend,
  blob: Uint8Array,
  cached: (header: MessageHeader) => DataKeyBytes | undefined,
  expectedContext: CanonicalContext | undefined,
): Uint8Array | undefined {
  if (backend.sync === undefined) return undefined;
  const header = decodeHeader(blob);
  if (expectedContext !== undefined && !contextIncludes(header.context, expectedContext)) throw new DecryptionError();
  const layout = sealedLayout(header, blob);
  const dataKey = cached(header);
  if (dataKey === undefined) return undefined;
  try {
    return openLayoutSync(backend.sync, backend, header, layout, dataKey);
  } finally {
    zero(dataKey);
  }
}

/** The sealed segments of a message after its header, checked to be a canonical segmentation. */
interface SealedLayout {
  readonly body: Uint8Array;
  readonly count: number;
  readonly sealedSegment: number;
  readonly plaintextLength: number;
}

function sealedLayout(header: MessageHeader, blob: Uint8Array): SealedLayout {
  const { tagBytes } = header.suite;
  // A plain Uint8Array view even when `blob` is a Buffer: the subarrays of a Buffer are Buffers, which cost more to
  // create, and each segment is cut into two more.
  const body = new Uint8Array(blob.buffer, blob.byteOffset + header.bytes.length, blob.length - header.bytes.length);
  const sealedSegment = header.segmentSize + tagBytes;
  const { count, lastLength } = segmentsOf(body.length, sealedSegment);
  // The encryptor writes an empty last segment only for an empty message, so any other one is not canonical.
  if (lastLength < tagBytes || (count > 1 && lastLength === tagBytes)) throw new DecryptionError();
  return { body, count, sealedSegment, plaintextLength: body.length - count * tagBytes };
}

function openLayoutSync(sync: SyncCryptoBackend, backend: CryptoBackend, header: MessageHeader, layout: SealedLayout, dataKey: DataKeyBytes): Uint8Array {
  const { contentKey, commitment, release } = messageKeysSync(sync, header, dataKey);
  try {
    if (!backend.equalConstantTime(commitment, header.commitment)) throw new DecryptionError();
    const base = nonceBase(header);
    // One segment, the common small message, without the closure the general case needs.
    if (layout.count === 1) return sync.open(contentKey, segmentNonce(base, 0, true), layout.body, header.bytes);
    return openSegmentsSync(layout, (sealed, final, index) => sync.open(contentKey, segmentNonce(base, index, final), sealed, header.bytes));
  } finally {
    contentKey.fill(0);
    release();
  }
}

/**
 * The plaintext of a message of several segments, gathered as they are opened in order. Not zero-filled, and not from
 * Buffer's shared pool: the opened segments tile it exactly, so every byte is written before it is returned, and on a
 * failure all of it is zeroed, written or not. Each opened segment is zeroed once copied.
 */
class Gathered {
  readonly plaintext: Buffer;
  #offset = 0;

  constructor(readonly layout: SealedLayout) {
    this.plaintext = Buffer.allocUnsafeSlow(layout.plaintextLength);
  }

  /** Segment `index`'s sealed bytes, and whether it is the last. */
  segment(index: number): [sealed: Uint8Array, final: boolean] {
    const { body, count, sealedSegment } = this.layout;
    const start = index * sealedSegment;
    return [body.subarray(start, Math.min(body.length, start + sealedSegment)), index === count - 1];
  }

  add(opened: Uint8Array): void {
    this.plaintext.set(opened, this.#offset);
    this.#offset += opened.length;
    opened.fill(0);
  }

  fail(error: unknown): never {
    this.plaintext.fill(0);
    throw error;
  }
}

/** Opens every segment in order; one segment's plaintext is returned as it is, several are gathered into one buffer. */
function openSegmentsSync(layout: SealedLayout, open: (sealed: Uint8Array, final: boolean, index: number) => Uint8Array): Uint8Array {
  // The common small message: the opened segment is the plaintext, with no second buffer to fill and zero.
  if (layout.count === 1) return open(layout.body, true, 0);
  const gathered = new Gathered(layout);
  try {
    for (let index = 0; index < layout.count; index++) gathered.add(open(...gathered.segment(index), index));
  } catch (error) {
    gathered.fail(error);
  }
  return gathered.plaintext;
}

/** {@link openSegmentsSync} with a segment cipher that answers with promises. */
async function openSegments(layout: SealedLayout, open: (sealed: Uint8Array, final: boolean) => Promise<Uint8Array>): Promise<Uint8Array> {
  if (layout.count === 1) return open(layout.body, true);
  const gathered = new Gathered(layout);
  try {
    for (let index = 0; index < layout.count; index++) gathered.add(await open(...gathered.segment(index)));
  } catch (error) {
    gathered.fail(error);
  }
  return gathered.plaintext;
}

function zero(dataKey: DataKeyBytes): void {
  dataKeyPlaintext(dataKey).fill(0);
}

/**
 * The data key of a received header, wrapped again by the service under its key's primary version: the new wrapped
 * key with its plaintext, which the caller zeroes.
 */
export type DataKeyRewrapper = (header: MessageHeader) => Promise<DataKey>;

/**
 * The parameters of a message that replaces `header`'s under its re-wrapped data key. The message is encrypted again
 * rather than given a new header: the whole header, wrapped data key included, is the AAD of every segment
 * (docs/envelope-format.md), so a swapped wrapped key breaks every tag, and sealing the segments again under the same
 * message id would reuse AES-GCM nonces under the same content key. The new message keeps the data key, context,
 * suite and segment size, and gets a fresh message id, hence a fresh content key and commitment.
 */
export function rewrappedParameters(header: MessageHeader): MessageParameters {
  return { suite: header.suite, segmentSize: header.segmentSize, context: header.context };
}

/** Re-encrypts a whole message held in memory under its re-wrapped data key. */
export async function rewrapMessage(backend: CryptoBackend, blob: Uint8Array, rewrapKey: DataKeyRewrapper): Promise<Uint8Array> {
  let dataKey: DataKey | undefined;
  try {
    const { header, plaintext } = await decryptMessage(backend, blob, async (received) => {
      dataKey = await rewrapKey(received);
      // A copy: decryptMessage zeroes the key it is given, and the new message still needs it.
      return Uint8Array.prototype.slice.call(dataKey.plaintext);
    }, undefined);
    try {
      return await encryptMessage(await startMessage(backend, dataKey!, rewrappedParameters(header)), plaintext);
    } finally {
      plaintext.fill(0);
    }
  } finally {
    dataKey?.plaintext.fill(0);
  }
}
