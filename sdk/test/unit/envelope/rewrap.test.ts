import { describe, expect, it } from 'vitest';
import { nodeBackend } from '../../../src/crypto/node-backend.js';
import { inspectMessage } from '../../../src/envelope/inspect.js';
import { rewrapMessage, type DataKeyRewrapper } from '../../../src/envelope/one-shot.js';
import { createRewrapStream } from '../../../src/envelope/streams.js';
import { DecryptionError, InvalidArgumentError } from '../../../src/errors.js';
import { decodeHeader, HEADER_PREFIX_BYTES } from '../../../src/format/header.js';
import { DEFAULT_SUITE } from '../../../src/format/suites.js';
import { BACKENDS, open, pipeThrough, seal } from '../../helpers/envelope.js';
import { FakeDataKeySource } from '../../helpers/fake-source.js';

const CONTEXT = { tenant: 'acme', purpose: 'orders' };
const SEGMENT = 256;

/** A message under version 1 of the fake source's key, whose primary is then version 2. */
async function underVersion1(plaintext: Uint8Array, segmentSize = SEGMENT) {
  const source = new FakeDataKeySource();
  const message = await seal(source, plaintext, { context: CONTEXT, segmentSize });
  source.keyVersion = 2;
  const handedOut: Uint8Array[] = [];
  const rewrapKey: DataKeyRewrapper = async (header) => {
    const dataKey = await source.rewrapRevoked(header.wrappedKey, header.context);
    handedOut.push(dataKey.plaintext);
    return dataKey;
  };
  return { source, message, rewrapKey, handedOut };
}

function bytes(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff);
}

describe('inspectMessage', () => {
  it('reads the key id, key version, context, suite and segment size from the header', async () => {
    const { source, message } = await underVersion1(bytes(1000));
    expect(inspectMessage(message)).toEqual({
      keyId: source.keyId,
      keyVersion: 1,
      context: CONTEXT,
      suiteId: DEFAULT_SUITE.id,
      segmentSize: SEGMENT,
      headerLength: decodeHeader(message).bytes.length,
    });
  });

  it('needs only the header: a prefix of the message that holds it is enough', async () => {
    const { message } = await underVersion1(bytes(1000));
    const { headerLength } = inspectMessage(message);
    expect(inspectMessage(message.subarray(0, headerLength))).toEqual(inspectMessage(message));
  });

  it('asks the key source nothing', async () => {
    const { source, message } = await underVersion1(bytes(10));
    const calls = [source.generateCalls, source.unwrapCalls, source.rewrapCalls];
    inspectMessage(message);
    expect([source.generateCalls, source.unwrapCalls, source.rewrapCalls]).toEqual(calls);
  });

  it('refuses a cut-off header with the one decryption error', async () => {
    const { message } = await underVersion1(bytes(10));
    const { headerLength } = inspectMessage(message);
    expect(() => inspectMessage(message.subarray(0, headerLength - 1))).toThrow(DecryptionError);
  });

  it('refuses a header whose wrapped key is not a kh1 ciphertext with the one decryption error', async () => {
    const { message } = await underVersion1(bytes(10));
    const altered = Uint8Array.from(message);
    // Format v2: the wrapped key starts after magic, version, suite, length (9), segment size (4), its length (2).
    altered[HEADER_PREFIX_BYTES + 6] = 0x02;
    expect(() => inspectMessage(altered)).toThrow(DecryptionError);
  });

  it('refuses something that is not bytes with an InvalidArgumentError', () => {
    expect(() => inspectMessage('KHEM' as unknown as Uint8Array)).toThrow(InvalidArgumentError);
  });
});

describe('rewrapMessage', () => {
  it.each([0, 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT + 17])(
    'gives a message of %i bytes under the primary version that decrypts to the same plaintext, with the same context',
    async (length) => {
      const plaintext = bytes(length);
      const { source, message, rewrapKey } = await underVersion1(plaintext);
      const moved = await rewrapMessage(nodeBackend, message, rewrapKey);
      expect(inspectMessage(moved)).toMatchObject({ keyVersion: 2, context: CONTEXT, segmentSize: SEGMENT });
      expect(Buffer.from(await open(source, moved, { expectedContext: CONTEXT }))).toEqual(Buffer.from(plaintext));
      expect(moved.length).toBe(message.length);
    },
  );

  it('writes a fresh message id, so no content key and nonce pair is used twice', async () => {
    const { message, rewrapKey } = await underVersion1(bytes(700));
    const before = decodeHeader(message);
    const after = decodeHeader(await rewrapMessage(nodeBackend, message, rewrapKey));
    // Format v2 derives the content key from the message id (its first 12 bytes) and randomises the nonces with the
    // rest; the commitment belongs to the data key, which a rewrap keeps.
    expect(Buffer.from(after.messageId.subarray(0, 12))).not.toEqual(Buffer.from(before.messageId.subarray(0, 12)));
    expect(Buffer.from(after.messageId.subarray(12))).not.toEqual(Buffer.from(before.messageId.subarray(12)));
    expect(Buffer.from(after.commitment)).toEqual(Buffer.from(before.commitment));
  });

  it('zeroes the data key the service handed back', async () => {
    const { message, rewrapKey, handedOut } = await underVersion1(bytes(700));
    await rewrapMessage(nodeBackend, message, rewrapKey);
    expect(handedOut).toHaveLength(1);
    expect(handedOut[0]!.every((byte) => byte === 0)).toBe(true);
  });

  it('refuses a tampered segment with the one decryption error, and zeroes the data key', async () => {
    const { message, rewrapKey, handedOut } = await underVersion1(bytes(700));
    const tampered = Uint8Array.from(message);
    tampered[tampered.length - 20]! ^= 1;
    await expect(rewrapMessage(nodeBackend, tampered, rewrapKey)).rejects.toThrow(DecryptionError);
    expect(handedOut[0]!.every((byte) => byte === 0)).toBe(true);
  });

  it('refuses a message truncated to whole segments with the one decryption error', async () => {
    const { message, rewrapKey } = await underVersion1(bytes(3 * SEGMENT + 5));
    const truncated = message.subarray(0, message.length - (5 + DEFAULT_SUITE.tagBytes));
    await expect(rewrapMessage(nodeBackend, truncated, rewrapKey)).rejects.toThrow(DecryptionError);
  });
});

describe('createRewrapStream', () => {
  it.each(BACKENDS)('moves a multi-segment message, fed in odd chunks, to the primary version (%s)', async (_name, backend) => {
    const plaintext = bytes(7 * SEGMENT + 3);
    const { source, message, rewrapKey } = await underVersion1(plaintext);
    const { output, error } = await pipeThrough(createRewrapStream(backend, rewrapKey), message, 97);
    expect(error).toBeUndefined();
    expect(inspectMessage(output)).toMatchObject({ keyVersion: 2, context: CONTEXT });
    expect(Buffer.from(await open(source, output, { expectedContext: CONTEXT }))).toEqual(Buffer.from(plaintext));
  });

  it('emits the new header, then each segment as soon as the old one has authenticated', async () => {
    const { message, rewrapKey } = await underVersion1(bytes(4 * SEGMENT + 1));
    const { chunks, error } = await pipeThrough(createRewrapStream(nodeBackend, rewrapKey), message, SEGMENT + DEFAULT_SUITE.tagBytes);
    expect(error).toBeUndefined();
    expect(chunks.map((chunk) => chunk.length)).toEqual([
      decodeHeader(chunks[0]!).bytes.length,
      ...Array<number>(4).fill(SEGMENT + DEFAULT_SUITE.tagBytes),
      1 + DEFAULT_SUITE.tagBytes,
    ]);
  });

  it('moves an empty message', async () => {
    const { source, message, rewrapKey } = await underVersion1(new Uint8Array(0));
    const { output, error } = await pipeThrough(createRewrapStream(nodeBackend, rewrapKey), message, 1000);
    expect(error).toBeUndefined();
    expect(await open(source, output)).toHaveLength(0);
  });

  it('errors on a tampered segment, and what it wrote is not a message a reader accepts', async () => {
    const { source, message, rewrapKey, handedOut } = await underVersion1(bytes(5 * SEGMENT));
    const tampered = Uint8Array.from(message);
    tampered[tampered.length - SEGMENT]! ^= 1;
    const { output, error } = await pipeThrough(createRewrapStream(nodeBackend, rewrapKey), tampered, 64);
    expect(error).toBeInstanceOf(DecryptionError);
    await expect(open(source, output)).rejects.toThrow(DecryptionError);
    expect(handedOut[0]!.every((byte) => byte === 0)).toBe(true);
  });

  it('errors on a message truncated to whole segments, without writing a final segment', async () => {
    const { source, message, rewrapKey } = await underVersion1(bytes(3 * SEGMENT + 5));
    const truncated = message.subarray(0, message.length - (5 + DEFAULT_SUITE.tagBytes));
    const { output, error } = await pipeThrough(createRewrapStream(nodeBackend, rewrapKey), truncated, 64);
    expect(error).toBeInstanceOf(DecryptionError);
    await expect(open(source, output)).rejects.toThrow(DecryptionError);
  });

  it('errors on input that ends inside the header', async () => {
    const { message, rewrapKey } = await underVersion1(bytes(10));
    const { error } = await pipeThrough(createRewrapStream(nodeBackend, rewrapKey), message.subarray(0, 20), 8);
    expect(error).toBeInstanceOf(DecryptionError);
  });
});
