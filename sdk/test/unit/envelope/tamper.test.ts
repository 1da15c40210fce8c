import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DecryptionError } from '../../../src/errors.js';
import { decodeHeader } from '../../../src/format/header.js';
import { FakeDataKeySource } from '../../helpers/fake-source.js';
import { open, openStream, pipeThrough, seal } from '../../helpers/envelope.js';

const SEGMENT = 256;
const TAG = 16;

async function expectDecryptionError(promise: Promise<unknown>): Promise<void> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught);
  expect(error).toBeInstanceOf(DecryptionError);
  expect((error as DecryptionError).message).toBe('The message could not be decrypted');
  expect((error as DecryptionError).cause).toBeUndefined();
}

/** A three-segment message (256 + 256 + 100 bytes) and the offsets of its parts. */
async function threeSegments() {
  const source = new FakeDataKeySource();
  const plaintext = randomBytes(2 * SEGMENT + 100);
  const blob = Buffer.from(await seal(source, plaintext, { segmentSize: SEGMENT, context: { tenant: 'acme' } }));
  const headerLength = decodeHeader(blob).bytes.length;
  const segment = (i: number) => blob.subarray(headerLength + i * (SEGMENT + TAG), headerLength + (i + 1) * (SEGMENT + TAG));
  return { source, plaintext, blob, headerLength, header: blob.subarray(0, headerLength), segments: [segment(0), segment(1), segment(2)] };
}

describe('tampering fails with the one decryption error and releases no plaintext', () => {
  it('flipping any one bit of any byte of a small message', async () => {
    const { source, blob } = await threeSegments();
    for (let i = 0; i < blob.length; i++) {
      const tampered = Buffer.from(blob);
      tampered[i]! ^= 1 << (i % 8);
      await expectDecryptionError(open(source, tampered));
    }
  });

  it('truncating to any shorter length', async () => {
    const { source, blob } = await threeSegments();
    for (let length = 0; length < blob.length; length++) {
      await expectDecryptionError(open(source, blob.subarray(0, length)));
    }
  });

  it('appending bytes, or a whole extra segment', async () => {
    const { source, blob, segments } = await threeSegments();
    await expectDecryptionError(open(source, Buffer.concat([blob, Buffer.from([0])])));
    await expectDecryptionError(open(source, Buffer.concat([blob, randomBytes(TAG)])));
    await expectDecryptionError(open(source, Buffer.concat([blob, segments[1]!])));
  });

  it('reordering segments', async () => {
    const { source, header, segments: [a, b, c] } = await threeSegments();
    await expectDecryptionError(open(source, Buffer.concat([header, b!, a!, c!])));
  });

  it('dropping a segment, or dropping the last one so the stream ends early', async () => {
    const { source, header, segments: [a, b, c] } = await threeSegments();
    await expectDecryptionError(open(source, Buffer.concat([header, a!, c!])));
    await expectDecryptionError(open(source, Buffer.concat([header, a!, b!])));
  });

  it('a wrong expected context', async () => {
    const { source, blob } = await threeSegments();
    await expectDecryptionError(open(source, blob, { expectedContext: { tenant: 'other' } }));
    await expectDecryptionError(open(source, blob, { expectedContext: { missing: 'pair' } }));
    expect((await open(source, blob, { expectedContext: { tenant: 'acme' } })).length).toBe(2 * SEGMENT + 100);
  });

  it('splicing the header of another message under the same data key source', async () => {
    const first = await threeSegments();
    const other = Buffer.from(await seal(first.source, randomBytes(2 * SEGMENT + 100), { segmentSize: SEGMENT, context: { tenant: 'acme' } }));
    const otherHeader = other.subarray(0, decodeHeader(other).bytes.length);
    await expectDecryptionError(open(first.source, Buffer.concat([otherHeader, ...first.segments])));
  });

  it('a segment from another message, in the same position', async () => {
    const first = await threeSegments();
    const second = await threeSegments();
    await expectDecryptionError(open(first.source, Buffer.concat([first.header, second.segments[0]!, first.segments[1]!, first.segments[2]!])));
  });

  it('a data key other than the one the commitment names is refused before any segment is opened', async () => {
    const { blob } = await threeSegments();
    const wrongKey = new FakeDataKeySource();
    await expectDecryptionError(open(wrongKey, blob));
  });

  it('streaming: a dropped middle segment yields only the authenticated segments before it, then the error', async () => {
    const { source, plaintext, header, segments: [a, , c] } = await threeSegments();
    const result = await pipeThrough(openStream(source), Buffer.concat([header, a!, c!]), 37);
    expect(result.error).toBeInstanceOf(DecryptionError);
    expect(Buffer.from(result.output).equals(plaintext.subarray(0, SEGMENT))).toBe(true);
  });

  it('streaming: a truncated stream errors at its end and never releases the cut segment', async () => {
    const { source, plaintext, header, segments: [a, b] } = await threeSegments();
    const result = await pipeThrough(openStream(source), Buffer.concat([header, a!, b!]), 1000);
    expect(result.error).toBeInstanceOf(DecryptionError);
    expect(Buffer.from(result.output).equals(plaintext.subarray(0, SEGMENT))).toBe(true);
  });

  it('streaming: a flipped bit in the header releases nothing', async () => {
    const { source, blob } = await threeSegments();
    for (const i of [0, 4, 6, 8, 20, 45, 60, 120]) {
      const tampered = Buffer.from(blob);
      tampered[i]! ^= 0x80;
      const result = await pipeThrough(openStream(source), tampered, 64);
      expect(result.error).toBeInstanceOf(DecryptionError);
      expect(result.output.length).toBe(0);
    }
  });

  it('streaming: an empty input is an error, not an empty message', async () => {
    const { source } = await threeSegments();
    const result = await pipeThrough(openStream(source), new Uint8Array(0), 64);
    expect(result.error).toBeInstanceOf(DecryptionError);
  });
});
