import { Transform } from 'node:stream';
import { TransformStream } from 'node:stream/web';
import type { CryptoBackend, SyncCryptoBackend } from '../crypto/primitives.js';
import { DecryptionError, InvalidArgumentError } from '../errors.js';
import { contextIncludes, type CanonicalContext } from '../format/encryption-context.js';
import { decodeHeader, HEADER_PREFIX_BYTES, headerLength, writeHeader, type MessageHeader } from '../format/header.js';
import type { DataKey } from '../keys/data-key-source.js';
import { ByteQueue } from './byte-queue.js';
import { materialOf } from './data-key-material.js';
import { dataKeyPlaintext, MAX_SEGMENTS, MessageCipher, messageKeysSync, nonceBase, segmentNonce } from './message-cipher.js';
import { rewrappedParameters, startMessage, type DataKeyRewrapper, type DataKeyUnwrapper, type MessageParameters } from './one-shot.js';

/** Hands on one piece of output. */
type Emit = (chunk: Uint8Array) => void;

/**
 * The work of one streaming transform, apart from the stream API: the Web Streams and the Node.js transforms both
 * drive it, so each has its native machinery and neither pays for an adapter around the other.
 */
interface StreamEngine {
  write(chunk: Uint8Array, emit: Emit): Promise<void>;
  /** The input has ended: emits the rest, then disposes. */
  end(emit: Emit): Promise<void>;
  /** Forgets keys; after an error or a cancel. */
  dispose(): void;
}

/**
 * One message's segments sealed or opened on node:crypto, each fed to the cipher piece by piece as the input chunks
 * hold it: no segment is gathered into a buffer of its own, and no await is taken per segment.
 */
interface SyncSegments {
  readonly sync: SyncCryptoBackend;
  readonly header: MessageHeader;
  readonly contentKey: Uint8Array;
  readonly nonceBase: Uint8Array;
  next: number;
}

function nextNonce(segments: SyncSegments, final: boolean, error: () => Error): Uint8Array {
  if (segments.next >= MAX_SEGMENTS) throw error();
  return segmentNonce(segments.nonceBase, segments.next++, final);
}

/**
 * Encrypts: the data key is fetched when the first chunk (or the end) arrives; the header goes out first, then one
 * sealed segment whenever more than a segment of plaintext is queued, so memory stays at about one segment plus the
 * chunk being read, whatever the message size.
 */
class EncryptEngine implements StreamEngine {
  readonly #queue = new ByteQueue();
  #started: Promise<void> | undefined;
  #segments: SyncSegments | undefined;
  #message: MessageCipher | undefined;
  #charge: ((bytes: number) => void) | undefined;

  constructor(
    private readonly backend: CryptoBackend | Promise<CryptoBackend>,
    private readonly dataKey: () => Promise<DataKey>,
    private readonly parameters: MessageParameters,
  ) {}

  async write(chunk: Uint8Array, emit: Emit): Promise<void> {
    try {
      await (this.#started ??= this.#start(emit));
      this.#queue.push(chunk);
      // Strictly more than a segment: the segment sealed here is then known not to be the last.
      while (this.#queue.length > this.parameters.segmentSize) await this.#seal(this.parameters.segmentSize, false, emit);
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  async end(emit: Emit): Promise<void> {
    try {
      await (this.#started ??= this.#start(emit));
      await this.#seal(this.#queue.length, true, emit);
    } finally {
      this.dispose();
    }
  }

  dispose(): void {
    this.#segments?.contentKey.fill(0);
    this.#message?.dispose();
  }

  async #start(emit: Emit): Promise<void> {
    const backend = await this.backend;
    const key = await this.dataKey();
    this.#charge = key.charge;
    const { suite } = this.parameters;
    try {
      if (backend.sync !== undefined && suite.derivation === 'xaes') {
        const { material, owned } = materialOf(backend.sync, suite, key);
        try {
          const template = material.headerTemplate({ ...this.parameters, wrappedKey: key.wrapped, commitment: material.commitment });
          const header = writeHeader(template, backend.randomBytes(suite.messageIdBytes), new Uint8Array(template.bytes.length));
          this.#segments = { sync: backend.sync, header, contentKey: material.contentKeySync(header.messageId), nonceBase: nonceBase(header), next: 0 };
          emit(header.bytes);
        } finally {
          if (owned) material.dispose();
        }
      } else {
        this.#message = await startMessage(backend, key, this.parameters);
        emit(this.#message.header.bytes);
      }
    } finally {
      key.plaintext.fill(0);
    }
  }

  async #seal(count: number, final: boolean, emit: Emit): Promise<void> {
    const segments = this.#segments;
    if (segments === undefined) {
      emit(await this.#message!.seal(this.#queue.take(count), final));
    } else {
      const nonce = nextNonce(segments, final, () => new InvalidArgumentError('the message is longer than the format allows'));
      const sealer = segments.sync.sealer(segments.contentKey, nonce, segments.header.bytes);
      for (const piece of this.#queue.takeViews(count)) emit(sealer.update(piece));
      emit(sealer.finish());
    }
    this.#charge?.(count);
  }
}

/**
 * Decrypts: parses the header, checks the expected context, unwraps the data key and checks the commitment before
 * opening anything, and releases a segment's plaintext only after that segment's tag verifies. A truncated stream is
 * detected at its end: the last segment received is opened as the last one and fails unless it was sealed as such.
 * The stream then errors with the decryption error, after the segments that did authenticate.
 */
class DecryptEngine implements StreamEngine {
  readonly #queue = new ByteQueue();
  #headerBytes = 0;
  #header: MessageHeader | undefined;
  #segments: SyncSegments | undefined;
  #message: MessageCipher | undefined;

  constructor(
    private readonly backend: CryptoBackend | Promise<CryptoBackend>,
    private readonly unwrap: DataKeyUnwrapper,
    private readonly expectedContext: CanonicalContext | undefined,
  ) {}

  async write(chunk: Uint8Array, emit: Emit): Promise<void> {
    this.#queue.push(chunk);
    try {
      if (this.#header === undefined && !(await this.#readHeader())) return;
      const sealedSegment = this.#header!.segmentSize + this.#header!.suite.tagBytes;
      while (this.#queue.length > sealedSegment) await this.#open(sealedSegment, false, emit);
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  async end(emit: Emit): Promise<void> {
    try {
      if (this.#header === undefined && !(await this.#readHeader())) throw new DecryptionError();
      const { tagBytes } = this.#header!.suite;
      const rest = this.#queue.length;
      const done = this.#segments?.next ?? this.#message!.segmentsDone;
      if (rest < tagBytes || (done > 0 && rest === tagBytes)) throw new DecryptionError();
      await this.#open(rest, true, emit);
    } finally {
      this.dispose();
    }
  }

  dispose(): void {
    this.#segments?.contentKey.fill(0);
    this.#message?.dispose();
  }

  async #readHeader(): Promise<boolean> {
    if (this.#headerBytes === 0) {
      if (this.#queue.length < HEADER_PREFIX_BYTES) return false;
      this.#headerBytes = headerLength(this.#queue.peek(HEADER_PREFIX_BYTES));
    }
    if (this.#queue.length < this.#headerBytes) return false;
    const header = decodeHeader(this.#queue.take(this.#headerBytes));
    if (this.expectedContext !== undefined && !contextIncludes(header.context, this.expectedContext)) throw new DecryptionError();
    const dataKey = await this.unwrap(header);
    const backend = await this.backend;
    try {
      if (backend.sync !== undefined) {
        const keys = messageKeysSync(backend.sync, header, dataKey);
        try {
          if (!backend.equalConstantTime(keys.commitment, header.commitment)) throw new DecryptionError();
          const contentKey = Uint8Array.prototype.slice.call(keys.contentKey);
          this.#segments = { sync: backend.sync, header, contentKey, nonceBase: nonceBase(header), next: 0 };
        } finally {
          keys.contentKey.fill(0);
          keys.release();
        }
      } else {
        this.#message = await MessageCipher.forDecryption(backend, header, dataKey);
      }
    } finally {
      dataKeyPlaintext(dataKey).fill(0);
    }
    this.#header = header;
    return true;
  }

  async #open(count: number, final: boolean, emit: Emit): Promise<void> {
    const segments = this.#segments;
    if (segments === undefined) {
      emit(await this.#message!.open(this.#queue.take(count), final));
      return;
    }
    const { tagBytes } = segments.header.suite;
    const opener = segments.sync.opener(segments.contentKey, nextNonce(segments, final, () => new DecryptionError()), segments.header.bytes);
    const pieces = this.#queue.takeViews(count - tagBytes).map((piece) => opener.update(piece));
    try {
      opener.verify(this.#queue.take(tagBytes));
    } catch (error) {
      for (const piece of pieces) piece.fill(0);
      throw error;
    }
    for (const piece of pieces) emit(piece);
  }
}

/** A Web Streams transform driven by an engine. */
function webTransform(engine: StreamEngine): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform: (chunk, controller) => engine.write(toBytes(chunk), (piece) => controller.enqueue(piece)),
    flush: (controller) => engine.end((piece) => controller.enqueue(piece)),
    cancel: () => engine.dispose(),
  } as ConstructorParameters<typeof TransformStream<Uint8Array, Uint8Array>>[0]);
}

/** A Node.js transform driven by an engine: Node's own stream machinery, without an adapter to Web Streams. */
function nodeTransform(engine: StreamEngine): Transform {
  return new Transform({
    transform(chunk: unknown, _encoding, done) {
      engine.write(toBytes(chunk), (piece) => this.push(piece)).then(() => done(), done);
    },
    flush(done) {
      engine.end((piece) => this.push(piece)).then(() => done(), done);
    },
    destroy(error, done) {
      engine.dispose();
      done(error);
    },
  });
}

/** An encrypting Web Streams transform: see {@link EncryptEngine}. */
export function createEncryptStream(
  backend: CryptoBackend | Promise<CryptoBackend>,
  dataKey: () => Promise<DataKey>,
  parameters: MessageParameters,
): TransformStream<Uint8Array, Uint8Array> {
  return webTransform(new EncryptEngine(backend, dataKey, parameters));
}

/** {@link createEncryptStream} as a Node.js transform. */
export function createEncryptNodeStream(
  backend: CryptoBackend | Promise<CryptoBackend>,
  dataKey: () => Promise<DataKey>,
  parameters: MessageParameters,
): Transform {
  return nodeTransform(new EncryptEngine(backend, dataKey, parameters));
}

/** A decrypting Web Streams transform: see {@link DecryptEngine}. */
export function createDecryptStream(
  backend: CryptoBackend | Promise<CryptoBackend>,
  unwrap: DataKeyUnwrapper,
  expectedContext: CanonicalContext | undefined,
): TransformStream<Uint8Array, Uint8Array> {
  return webTransform(new DecryptEngine(backend, unwrap, expectedContext));
}

/** {@link createDecryptStream} as a Node.js transform. */
export function createDecryptNodeStream(
  backend: CryptoBackend | Promise<CryptoBackend>,
  unwrap: DataKeyUnwrapper,
  expectedContext: CanonicalContext | undefined,
): Transform {
  return nodeTransform(new DecryptEngine(backend, unwrap, expectedContext));
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
