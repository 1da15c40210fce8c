import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeHeader } from '../../../src/format/header.js';
import { FakeDataKeySource } from '../../helpers/fake-source.js';
import { BACKENDS, open, openStream, pipeThrough, seal, sealStream } from '../../helpers/envelope.js';

const SEGMENT = 65_536;
const SIZES = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 10 * 1024 * 1024];
/** @peculiar/webcrypto is pure JavaScript GHASH over a native cipher; 10 MiB through it takes long for no new coverage. */
const SLOW_BACKEND_MAX = 3 * SEGMENT;

describe('envelope round trips', () => {
  for (const [name, backend] of BACKENDS) {
    describe(`on the ${name} backend`, () => {
      for (const size of SIZES.filter((size) => name !== '@peculiar/webcrypto' || size <= SLOW_BACKEND_MAX)) {
        it(`one-shot: ${size} bytes decrypt to themselves`, async () => {
          const source = new FakeDataKeySource();
          const plaintext = randomBytes(size);
          const blob = await seal(source, plaintext, { backend, context: { tenant: 'a' } });
          expect(Buffer.from(await open(source, blob, { backend })).equals(plaintext)).toBe(true);
        });
      }
    });
  }

  it('a message sealed on any backend opens on every other', async () => {
    const source = new FakeDataKeySource();
    const plaintext = randomBytes(SEGMENT * 2 + 5);
    for (const [, sealer] of BACKENDS) {
      const blob = await seal(source, plaintext, { backend: sealer });
      for (const [, opener] of BACKENDS) expect(Buffer.from(await open(source, blob, { backend: opener })).equals(plaintext)).toBe(true);
    }
  });

  for (const size of SIZES) {
    it(`streaming: ${size} bytes in odd-sized chunks round-trip, and match the one-shot format`, async () => {
      const source = new FakeDataKeySource();
      const plaintext = randomBytes(size);
      const sealed = await pipeThrough(sealStream(source), plaintext, 10_007);
      expect(sealed.error).toBeUndefined();
      expect(Buffer.from(await open(source, sealed.output)).equals(plaintext)).toBe(true);
      const opened = await pipeThrough(openStream(source), sealed.output, 4_093);
      expect(opened.error).toBeUndefined();
      expect(Buffer.from(opened.output).equals(plaintext)).toBe(true);
    });
  }

  it('a one-shot message opens as a stream, fed one byte at a time', async () => {
    const source = new FakeDataKeySource();
    const plaintext = randomBytes(700);
    const blob = await seal(source, plaintext, { segmentSize: 256 });
    const opened = await pipeThrough(openStream(source), blob, 1);
    expect(opened.error).toBeUndefined();
    expect(Buffer.from(opened.output).equals(plaintext)).toBe(true);
  });

  it('every message under one data key has its own message id', async () => {
    const source = new FakeDataKeySource();
    const a = await seal(source, Buffer.from('same'));
    const b = await seal(source, Buffer.from('same'));
    expect(Buffer.from(decodeHeader(a).messageId)).not.toEqual(Buffer.from(decodeHeader(b).messageId));
  });

  it('a message that starts partway into a larger buffer decrypts to its plaintext', async () => {
    const source = new FakeDataKeySource();
    for (const size of [1024, 2 * SEGMENT + 5]) {
      const plaintext = randomBytes(size);
      const blob = await seal(source, plaintext, { context: { tenant: 'a' } });
      const larger = Buffer.concat([randomBytes(13), blob, randomBytes(7)]);
      expect(Buffer.from(await open(source, larger.subarray(13, 13 + blob.length))).equals(plaintext)).toBe(true);
    }
  });
});
