import type { CryptoBackend } from '../crypto/primitives.js';
import { DecryptionError } from '../errors.js';
import { contextIncludes, type CanonicalContext } from '../format/encryption-context.js';
import { decodeHeader, encodeHeader, MESSAGE_ID_BYTES, type MessageHeader } from '../format/header.js';
import type { Suite } from '../format/suites.js';
import type { DataKey } from '../keys/data-key-source.js';
import { deriveMessageKeys, MessageCipher } from './message-cipher.js';

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
  const messageId = backend.randomBytes(MESSAGE_ID_BYTES);
  const { contentKey, commitment } = await deriveMessageKeys(backend, parameters.suite, dataKey.plaintext, messageId);
  try {
    const header = encodeHeader({
      suite: parameters.suite,
      messageId,
      segmentSize: parameters.segmentSize,
      wrappedKey: dataKey.wrapped,
      context: parameters.context,
      commitment,
    });
    return await MessageCipher.forEncryption(backend, header, contentKey);
  } finally {
    contentKey.fill(0);
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
export type DataKeyUnwrapper = (header: MessageHeader) => Promise<Uint8Array>;

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
  // A plain Uint8Array view even when `blob` is a Buffer: the subarrays of a Buffer are Buffers, which cost more to
  // create, and each segment is cut into two more.
  const body = new Uint8Array(blob.buffer, blob.byteOffset + header.bytes.length, blob.length - header.bytes.length);
  const sealedSegment = header.segmentSize + header.suite.tagBytes;
  const segments = Math.max(1, Math.ceil(body.length / sealedSegment));
  const lastLength = body.length - (segments - 1) * sealedSegment;
  // The encryptor writes an empty last segment only for an empty message, so any other one is not canonical.
  if (lastLength < header.suite.tagBytes || (segments > 1 && lastLength === header.suite.tagBytes)) throw new DecryptionError();

  const dataKey = await unwrap(header);
  let message: MessageCipher;
  try {
    message = await MessageCipher.forDecryption(backend, header, dataKey);
  } finally {
    dataKey.fill(0);
  }
  if (segments === 1) {
    // The common small message: the opened segment is the plaintext, with no second buffer to fill and zero.
    try {
      return { header, plaintext: await message.open(body, true) };
    } finally {
      message.dispose();
    }
  }
  // Not zero-filled, and not from Buffer's shared pool: the opened segments tile it exactly, so every byte is written
  // before it is returned, and on a failure all of it is zeroed, written or not.
  const plaintext = Buffer.allocUnsafeSlow(body.length - segments * header.suite.tagBytes);
  try {
    for (let index = 0; index < segments; index++) {
      const start = index * sealedSegment;
      const opened = await message.open(body.subarray(start, Math.min(body.length, start + sealedSegment)), index === segments - 1);
      plaintext.set(opened, index * header.segmentSize);
      opened.fill(0);
    }
  } catch (error) {
    plaintext.fill(0);
    throw error;
  } finally {
    message.dispose();
  }
  return { header, plaintext };
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
