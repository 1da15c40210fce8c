import { Crypto as PeculiarCrypto } from '@peculiar/webcrypto';
import { ReadableStream } from 'node:stream/web';
import type { CryptoBackend } from '../../src/crypto/primitives.js';
import { nodeBackend } from '../../src/crypto/node-backend.js';
import { webCryptoBackend } from '../../src/crypto/webcrypto-backend.js';
import { decryptMessage, encryptMessage, startMessage } from '../../src/envelope/one-shot.js';
import { createDecryptStream, createEncryptStream } from '../../src/envelope/streams.js';
import { canonicalContext, type EncryptionContext } from '../../src/format/encryption-context.js';
import { DEFAULT_SEGMENT_SIZE } from '../../src/format/header.js';
import { DEFAULT_SUITE } from '../../src/format/suites.js';
import { FakeDataKeySource } from './fake-source.js';

/** node:crypto, the runtime's WebCrypto, and `@peculiar/webcrypto`: a second WebCrypto implementation the backend must agree with. */
export const BACKENDS: ReadonlyArray<readonly [string, CryptoBackend]> = [
  ['node', nodeBackend],
  ['webcrypto', webCryptoBackend(globalThis.crypto as unknown as Parameters<typeof webCryptoBackend>[0])],
  ['@peculiar/webcrypto', webCryptoBackend(new PeculiarCrypto() as unknown as Parameters<typeof webCryptoBackend>[0])],
];

export interface SealOptions {
  readonly backend?: CryptoBackend;
  readonly segmentSize?: number;
  readonly context?: EncryptionContext;
}

export async function seal(source: FakeDataKeySource, plaintext: Uint8Array, options: SealOptions = {}): Promise<Uint8Array> {
  const backend = options.backend ?? nodeBackend;
  const context = canonicalContext(options.context);
  const dataKey = await source.generate('fake', context);
  const message = await startMessage(backend, dataKey, { suite: DEFAULT_SUITE, segmentSize: options.segmentSize ?? DEFAULT_SEGMENT_SIZE, context });
  return encryptMessage(message, plaintext);
}

export async function open(
  source: FakeDataKeySource,
  blob: Uint8Array,
  options: { backend?: CryptoBackend; expectedContext?: EncryptionContext } = {},
): Promise<Uint8Array> {
  const expected = options.expectedContext === undefined ? undefined : canonicalContext(options.expectedContext);
  const { plaintext } = await decryptMessage(options.backend ?? nodeBackend, blob, async (header) => (await source.unwrap(header.wrappedKey, header.context)).plaintext, expected);
  return plaintext;
}

/** Feeds `input` through a transform in chunks of `chunkSize` and collects what comes out, and the error if any. */
export async function pipeThrough(
  transform: TransformStream<Uint8Array, Uint8Array> | import('node:stream/web').TransformStream<Uint8Array, Uint8Array>,
  input: Uint8Array,
  chunkSize: number,
): Promise<{ output: Uint8Array; chunks: Uint8Array[]; error: unknown }> {
  let offset = 0;
  const readable = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= input.length) {
        controller.close();
        return;
      }
      controller.enqueue(input.slice(offset, offset + chunkSize));
      offset += chunkSize;
    },
  });
  const chunks: Uint8Array[] = [];
  let error: unknown;
  try {
    for await (const chunk of readable.pipeThrough(transform as never) as AsyncIterable<Uint8Array>) chunks.push(chunk);
  } catch (caught) {
    error = caught;
  }
  return { output: Buffer.concat(chunks), chunks, error };
}

export function sealStream(source: FakeDataKeySource, options: SealOptions = {}) {
  const context = canonicalContext(options.context);
  return createEncryptStream(options.backend ?? nodeBackend, () => source.generate('fake', context), {
    suite: DEFAULT_SUITE,
    segmentSize: options.segmentSize ?? DEFAULT_SEGMENT_SIZE,
    context,
  });
}

export function openStream(source: FakeDataKeySource, options: { backend?: CryptoBackend; expectedContext?: EncryptionContext } = {}) {
  const expected = options.expectedContext === undefined ? undefined : canonicalContext(options.expectedContext);
  return createDecryptStream(options.backend ?? nodeBackend, async (header) => (await source.unwrap(header.wrappedKey, header.context)).plaintext, expected);
}
