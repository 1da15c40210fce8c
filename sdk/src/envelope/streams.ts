import { TransformStream } from 'node:stream/web';
import type { CryptoBackend } from '../crypto/primitives.js';
import { DecryptionError } from '../errors.js';
import { contextIncludes, type CanonicalContext } from '../format/encryption-context.js';
import { decodeHeader, HEADER_PREFIX_BYTES, headerLength } from '../format/header.js';
import type { DataKey } from '../keys/data-key-source.js';
import { ByteQueue } from './byte-queue.js';
import { MessageCipher } from './message-cipher.js';
import { rewrappedParameters, startMessage, type DataKeyRewrapper, type DataKeyUnwrapper, type MessageParameters } from './one-shot.js';

/**
 * An encrypting transform. The data key is fetched when the stream starts; the header goes out first, then one
 * sealed segment whenever more than a segment of plaintext is queued, so memory stays at about one segment plus the
 * chunk being read, whatever the message size.
 */
export function createEncryptStream(
  backend: CryptoBackend | Promise<CryptoBackend>,
  dataKey: () => Promise<DataKey>,
  parameters: MessageParameters,
): TransformStream<Uint8Array, Uint8Array> {
  const queue = new ByteQueue();
  let message: MessageCipher | undefined;
  let charge: ((bytes: number) => void) | undefined;
  const release = () => message?.dispose();
  return new TransformStream<Uint8Array, Uint8Array>({
    async start(controller) {
      const key = await dataKey();
      charge = key.charge;
      try {
        message = await startMessage(await backend, key, parameters);
      } finally {
        key.plaintext.fill(0);
      }
      controller.enqueue(message.header.bytes);
    },
    async transform(chunk, controller) {
      queue.push(toBytes(chunk));
      try {
        // Strictly more than a segment: the segment sealed here is then known not to be the last.
        while (queue.length > parameters.segmentSize) {
          controller.enqueue(await message!.seal(queue.take(parameters.segmentSize), false));
          charge?.(parameters.segmentSize);
        }
      } catch (error) {
        release();
        throw error;
      }
    },
    async flush(controller) {
      try {
        const rest = queue.length;
        controller.enqueue(await message!.seal(queue.take(rest), true));
        charge?.(rest);
      } finally {
        release();
      }
    },
    cancel: release,
  } as ConstructorParameters<typeof TransformStream<Uint8Array, Uint8Array>>[0]);
}

/**
 * A decrypting transform. It parses the header, checks the expected context, unwraps the data key and checks the
 * commitment before opening anything; it releases a segment's plaintext only after that segment's tag verifies. A
 * truncated stream is detected at its end: the last segment received is opened as the last one and fails unless it
 * was sealed as such. The stream then errors with the decryption error, after the segments that did authenticate.
 */
export function createDecryptStream(
  backend: CryptoBackend | Promise<CryptoBackend>,
  unwrap: DataKeyUnwrapper,
  expectedContext: CanonicalContext | undefined,
): TransformStream<Uint8Array, Uint8Array> {
  const queue = new ByteQueue();
  let message: MessageCipher | undefined;
  let headerBytes = 0;
  const release = () => message?.dispose();

  async function readHeader(): Promise<boolean> {
    if (headerBytes === 0) {
      if (queue.length < HEADER_PREFIX_BYTES) return false;
      headerBytes = headerLength(queue.peek(HEADER_PREFIX_BYTES));
    }
    if (queue.length < headerBytes) return false;
    const header = decodeHeader(queue.take(headerBytes));
    if (expectedContext !== undefined && !contextIncludes(header.context, expectedContext)) throw new DecryptionError();
    const dataKey = await unwrap(header);
    try {
      message = await MessageCipher.forDecryption(await backend, header, dataKey);
    } finally {
      dataKey.fill(0);
    }
    return true;
  }

  return new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      queue.push(toBytes(chunk));
      try {
        if (message === undefined && !(await readHeader())) return;
        const sealedSegment = message!.header.segmentSize + message!.header.suite.tagBytes;
        while (queue.length > sealedSegment) {
          controller.enqueue(await message!.open(queue.take(sealedSegment), false));
        }
      } catch (error) {
        release();
        throw error;
      }
    },
    async flush(controller) {
      try {
        if (message === undefined && !(await readHeader())) throw new DecryptionError();
        const { tagBytes } = message!.header.suite;
        const rest = queue.length;
        if (rest < tagBytes || (message!.segmentsDone > 0 && rest === tagBytes)) throw new DecryptionError();
        controller.enqueue(await message!.open(queue.take(rest), true));
      } finally {
        release();
      }
    },
    cancel: release,
  } as ConstructorParameters<typeof TransformStream<Uint8Array, Uint8Array>>[0]);
}

/**
 * A transform from a message to the same message under its re-wrapped data key, in constant memory: each segment is
 * opened, authenticated, and sealed again before the next is read, and the new message ends with a final segment
 * only if the old one did. On any failure the stream errors, and what it has written so far is not a message a
 * reader accepts (it lacks its final segment).
 */
export function createRewrapStream(
  backend: CryptoBackend | Promise<CryptoBackend>,
  rewrapKey: DataKeyRewrapper,
): TransformStream<Uint8Array, Uint8Array> {
  const queue = new ByteQueue();
  let opener: MessageCipher | undefined;
  let sealer: MessageCipher | undefined;
  let headerBytes = 0;
  const release = () => {
    opener?.dispose();
    sealer?.dispose();
  };

  async function readHeader(controller: TransformStreamDefaultController<Uint8Array>): Promise<boolean> {
    if (headerBytes === 0) {
      if (queue.length < HEADER_PREFIX_BYTES) return false;
      headerBytes = headerLength(queue.peek(HEADER_PREFIX_BYTES));
    }
    if (queue.length < headerBytes) return false;
    const header = decodeHeader(queue.take(headerBytes));
    const dataKey = await rewrapKey(header);
    try {
      opener = await MessageCipher.forDecryption(await backend, header, dataKey.plaintext);
      sealer = await startMessage(await backend, dataKey, rewrappedParameters(header));
    } finally {
      dataKey.plaintext.fill(0);
    }
    controller.enqueue(sealer.header.bytes);
    return true;
  }

  async function moveSegment(sealed: Uint8Array, final: boolean): Promise<Uint8Array> {
    const plaintext = await opener!.open(sealed, final);
    try {
      return await sealer!.seal(plaintext, final);
    } finally {
      plaintext.fill(0);
    }
  }

  return new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      queue.push(toBytes(chunk));
      try {
        if (opener === undefined && !(await readHeader(controller))) return;
        const sealedSegment = opener!.header.segmentSize + opener!.header.suite.tagBytes;
        while (queue.length > sealedSegment) controller.enqueue(await moveSegment(queue.take(sealedSegment), false));
      } catch (error) {
        release();
        throw error;
      }
    },
    async flush(controller) {
      try {
        if (opener === undefined && !(await readHeader(controller))) throw new DecryptionError();
        const { tagBytes } = opener!.header.suite;
        const rest = queue.length;
        if (rest < tagBytes || (opener!.segmentsDone > 0 && rest === tagBytes)) throw new DecryptionError();
        controller.enqueue(await moveSegment(queue.take(rest), true));
      } finally {
        release();
      }
    },
    cancel: release,
  } as ConstructorParameters<typeof TransformStream<Uint8Array, Uint8Array>>[0]);
}

function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  throw new TypeError('stream chunks must be Uint8Array or Buffer');
}
