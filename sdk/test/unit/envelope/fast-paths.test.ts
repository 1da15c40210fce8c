import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DataKeyCache } from '../../../src/cache/data-key-cache.js';
import { nodeBackend } from '../../../src/crypto/node-backend.js';
import { ByteQueue } from '../../../src/envelope/byte-queue.js';
import { DataKeyMaterial } from '../../../src/envelope/data-key-material.js';
import { decryptMessageIfCached, sealMessageSync } from '../../../src/envelope/one-shot.js';
import { createDecryptNodeStream, createEncryptNodeStream } from '../../../src/envelope/streams.js';
import { DecryptionError } from '../../../src/errors.js';
import { canonicalContext } from '../../../src/format/encryption-context.js';
import { decodeHeader } from '../../../src/format/header.js';
import { DEFAULT_SUITE } from '../../../src/format/suites.js';
import { BACKENDS, open, seal } from '../../helpers/envelope.js';
import { FakeDataKeySource } from '../../helpers/fake-source.js';

const ACME = canonicalContext({ tenant: 'acme' });
const SEGMENT = 256;
const parameters = { suite: DEFAULT_SUITE, segmentSize: SEGMENT, context: ACME };
const webCrypto = BACKENDS.find(([name]) => name === 'webcrypto')![1];

/** A cache in front of a fake service, warmed with one data key of `orders` under ACME. */
async function warmCache() {
  const source = new FakeDataKeySource();
  const cache = new DataKeyCache(source, DEFAULT_SUITE);
  const key = await cache.generate('orders', ACME);
  return { source, cache, key };
}

async function throughNode(transform: NodeJS.ReadWriteStream, input: Uint8Array, chunk: number): Promise<{ output: Buffer; error: unknown }> {
  const out: Buffer[] = [];
  const pieces = Array.from({ length: Math.ceil(input.length / chunk) }, (_, i) => input.subarray(i * chunk, (i + 1) * chunk));
  try {
    await pipeline(Readable.from(pieces, { objectMode: false }), transform, new Writable({ write(piece: Buffer, _e, done) { out.push(Buffer.from(piece)); done(); } }));
    return { output: Buffer.concat(out), error: undefined };
  } catch (error) {
    return { output: Buffer.concat(out), error };
  }
}

describe('the synchronous one-shot paths (a cached data key on node:crypto)', () => {
  it('a message sealed without promises opens on every backend', async () => {
    const { source, key } = await warmCache();
    for (const size of [0, 1, SEGMENT, 3 * SEGMENT + 5]) {
      const plaintext = randomBytes(size);
      const blob = sealMessageSync(nodeBackend, key, parameters, plaintext);
      for (const [, backend] of BACKENDS) expect(Buffer.from(await open(source, blob, { backend })).equals(plaintext)).toBe(true);
    }
  });

  it('decryptMessageIfCached opens messages of both format versions, and refuses tampering with the one error', async () => {
    const source = new FakeDataKeySource();
    const cache = new DataKeyCache(source, DEFAULT_SUITE);
    const v1 = JSON.parse(readFileSync(new URL('../../fixtures/envelope-v1.json', import.meta.url), 'utf8')).vectors[3];
    const hex = (value: string) => Buffer.from(value, 'hex');
    expect(Buffer.from(decryptMessageIfCached(nodeBackend, hex(v1.message), () => hex(v1.dataKey), undefined)!).toString('hex')).toBe(v1.plaintext);

    const plaintext = randomBytes(2 * SEGMENT + 1);
    const blob = Buffer.from(await seal(source, plaintext, { segmentSize: SEGMENT, context: { tenant: 'acme' } }));
    const cached = (header: ReturnType<typeof decodeHeader>) => cache.unwrapCached(header.wrappedKey, header.context);
    expect(decryptMessageIfCached(nodeBackend, blob, cached, ACME)).toBeUndefined();
    await cache.unwrap(decodeHeader(blob).wrappedKey, ACME);
    expect(Buffer.from(decryptMessageIfCached(nodeBackend, blob, cached, ACME)!).equals(plaintext)).toBe(true);
    // A changed wrapped key is not in the cache (undefined: the service decides); a changed commitment, message id or
    // segment is refused at once.
    const headerLength = decodeHeader(blob).bytes.length;
    for (const at of [headerLength - 25, headerLength - 1, blob.length - 1]) {
      const tampered = Buffer.from(blob);
      tampered[at]! ^= 1;
      expect(() => decryptMessageIfCached(nodeBackend, tampered, cached, ACME)).toThrow(DecryptionError);
    }
    expect(() => decryptMessageIfCached(nodeBackend, blob, cached, canonicalContext({ tenant: 'other' }))).toThrow(DecryptionError);
  });

  it('decryptMessageIfCached leaves a backend without synchronous primitives to the asynchronous path', async () => {
    const { key } = await warmCache();
    const blob = sealMessageSync(nodeBackend, key, parameters, randomBytes(10));
    expect(decryptMessageIfCached(webCrypto, blob, () => key.plaintext, undefined)).toBeUndefined();
  });

  it('a data key whose commitment is not the header\'s opens nothing', async () => {
    const { key } = await warmCache();
    const blob = sealMessageSync(nodeBackend, key, parameters, randomBytes(10));
    expect(() => decryptMessageIfCached(nodeBackend, blob, () => randomBytes(32), undefined)).toThrow(DecryptionError);
  });
});

describe('per-data-key material', () => {
  it('is derived once per cached data key and serves every message under it', async () => {
    const { cache, key } = await warmCache();
    sealMessageSync(nodeBackend, key, parameters, randomBytes(10));
    const material = key.derived!.value;
    expect(material).toBeInstanceOf(DataKeyMaterial);
    const again = cache.generateCached('orders', ACME, 10)!;
    sealMessageSync(nodeBackend, again, parameters, randomBytes(10));
    expect(again.derived!.value).toBe(material);
  });

  it('is disposed of when its entry is purged, and refuses to derive after', async () => {
    const { cache, key } = await warmCache();
    sealMessageSync(nodeBackend, key, parameters, randomBytes(10));
    const material = key.derived!.value as DataKeyMaterial;
    cache.purge('orders');
    expect(key.derived!.value).not.toBeInstanceOf(DataKeyMaterial);
    expect(() => material.contentKeySync(new Uint8Array(24))).toThrow();
  });

  it('is not parked in the slot of a purged entry by a caller still holding its key: that caller disposes of its own', async () => {
    const { cache, key } = await warmCache();
    cache.purge('orders');
    const blob = sealMessageSync(nodeBackend, key, parameters, Buffer.from('late'));
    expect(key.derived!.value).not.toBeInstanceOf(DataKeyMaterial);
    expect(blob.length).toBeGreaterThan(0);
  });

  it('zeroes the derivation blocks (the CMAC subkey mixed with the message id) once a content key is derived', () => {
    const seen: Uint8Array[] = [];
    const sync = nodeBackend.sync!;
    const recording = {
      ...sync,
      blockCipher(key: Uint8Array) {
        const cipher = sync.blockCipher(key);
        return {
          encryptBlocks(blocks: Uint8Array) {
            seen.push(blocks);
            return cipher.encryptBlocks(blocks);
          },
        };
      },
    };
    const material = DataKeyMaterial.fromSync(recording, DEFAULT_SUITE, randomBytes(32));
    seen.length = 0;
    const contentKey = material.contentKeySync(randomBytes(24));
    expect(contentKey.some((byte) => byte !== 0)).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.length).toBe(32);
    expect(seen[0]!.every((byte) => byte === 0)).toBe(true);
  });

  it('of a key with no cache slot is used for one message and disposed of', async () => {
    const source = new FakeDataKeySource();
    const key = await source.generate('orders', ACME);
    const blob = sealMessageSync(nodeBackend, key, parameters, Buffer.from('once'));
    expect(Buffer.from(await open(source, blob)).toString()).toBe('once');
  });
});

describe('the cache without waiting', () => {
  it('generateCached and unwrapCached answer hits only, and count them as hits', async () => {
    const { source, cache, key } = await warmCache();
    expect(cache.generateCached('orders', canonicalContext({ tenant: 'other' }), 1)).toBeUndefined();
    expect(cache.unwrapCached(key.wrapped, ACME)).toBeUndefined();
    const hits = cache.stats().hits;
    expect(cache.generateCached('orders', ACME, 1)?.wrapped).toBe(key.wrapped);
    await cache.unwrap(key.wrapped, ACME);
    expect(Buffer.from(cache.unwrapCached(key.wrapped, ACME)!.plaintext).equals(Buffer.from(key.plaintext))).toBe(true);
    expect(cache.stats().hits).toBe(hits + 2);
    expect([source.generateCalls, source.unwrapCalls]).toEqual([1, 1]);
  });

  it('unwrapCached refuses an expired entry', async () => {
    let now = 0;
    const source = new FakeDataKeySource();
    const cache = new DataKeyCache(source, DEFAULT_SUITE, { maxAgeMs: 1000 }, () => now);
    const key = await source.generate('orders', ACME);
    await cache.unwrap(key.wrapped, ACME);
    now = 1000;
    expect(cache.unwrapCached(key.wrapped, ACME)).toBeUndefined();
  });

  it('a wrapped key with a large context is cached under a hashed id, and still found', async () => {
    const source = new FakeDataKeySource();
    const cache = new DataKeyCache(source, DEFAULT_SUITE);
    const large = canonicalContext({ note: 'x'.repeat(2000) });
    const key = await source.generate('orders', large);
    await cache.unwrap(key.wrapped, large);
    expect(cache.unwrapCached(key.wrapped, large)).toBeDefined();
    expect(source.unwrapCalls).toBe(1);
  });
});

describe('Node.js stream transforms', () => {
  for (const size of [0, 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT + 3]) {
    it(`round-trip ${size} bytes in odd chunks, and match the one-shot format`, async () => {
      const source = new FakeDataKeySource();
      const plaintext = randomBytes(size);
      const sealed = await throughNode(createEncryptNodeStream(nodeBackend, () => source.generate('fake', ACME), parameters), plaintext, 97);
      expect(sealed.error).toBeUndefined();
      expect(Buffer.from(await open(source, sealed.output)).equals(plaintext)).toBe(true);
      const unwrap = async (header: ReturnType<typeof decodeHeader>) => source.unwrap(header.wrappedKey, header.context);
      const opened = await throughNode(createDecryptNodeStream(nodeBackend, unwrap, ACME), sealed.output, 61);
      expect(opened.error).toBeUndefined();
      expect(opened.output.equals(plaintext)).toBe(true);
    });
  }

  it('a truncated message errors with the decryption error after the segments that authenticated', async () => {
    const source = new FakeDataKeySource();
    const plaintext = randomBytes(3 * SEGMENT);
    const blob = Buffer.from(await seal(source, plaintext, { segmentSize: SEGMENT, context: { tenant: 'acme' } }));
    const unwrap = async (header: ReturnType<typeof decodeHeader>) => source.unwrap(header.wrappedKey, header.context);
    const cut = blob.subarray(0, blob.length - (SEGMENT + 16));
    const opened = await throughNode(createDecryptNodeStream(nodeBackend, unwrap, undefined), cut, 100);
    expect(opened.error).toBeInstanceOf(DecryptionError);
    expect(opened.output.equals(plaintext.subarray(0, opened.output.length))).toBe(true);
    expect(opened.output.length).toBeLessThan(2 * SEGMENT);
  });

  it('a format v1 message decrypts through the Node.js transform', async () => {
    const v1 = JSON.parse(readFileSync(new URL('../../fixtures/envelope-v1.json', import.meta.url), 'utf8')).vectors[3];
    const hex = (value: string) => Buffer.from(value, 'hex');
    const opened = await throughNode(createDecryptNodeStream(nodeBackend, async () => hex(v1.dataKey), undefined), hex(v1.message), 50);
    expect(opened.error).toBeUndefined();
    expect(opened.output.toString('hex')).toBe(v1.plaintext);
  });
});

describe('ByteQueue.takeViews', () => {
  it('gives the bytes across chunks as views, without copying them', () => {
    const queue = new ByteQueue();
    const a = Uint8Array.of(1, 2, 3);
    const b = Uint8Array.of(4, 5, 6);
    queue.push(a);
    queue.push(b);
    const views = queue.takeViews(4);
    expect(views.map((view) => [...view])).toEqual([[1, 2, 3], [4]]);
    expect(views[0]!.buffer).toBe(a.buffer);
    expect(queue.length).toBe(2);
    expect([...queue.take(2)]).toEqual([5, 6]);
    expect(() => queue.takeViews(1)).toThrow(RangeError);
  });
});
