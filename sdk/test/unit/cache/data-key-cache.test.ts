import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DataKeyCache, type CacheOptions } from '../../../src/cache/data-key-cache.js';
import { nodeBackend } from '../../../src/crypto/node-backend.js';
import { createEncryptStream } from '../../../src/envelope/streams.js';
import { DecryptionError, InvalidArgumentError, ServiceError } from '../../../src/errors.js';
import { canonicalContext } from '../../../src/format/encryption-context.js';
import { DEFAULT_SUITE } from '../../../src/format/suites.js';
import type { DataKey } from '../../../src/keys/data-key-source.js';
import { pipeThrough } from '../../helpers/envelope.js';
import { FakeDataKeySource } from '../../helpers/fake-source.js';

/**
 * The data-key cache in front of a fake service. Every request that reaches "the service" is counted by the fake
 * (`generateCalls`, `unwrapCalls`), and time is a number the tests move by hand.
 */

const ACME = canonicalContext({ tenant: 'acme' });
const GLOBEX = canonicalContext({ tenant: 'globex' });
const START = Date.parse('2026-01-01T00:00:00Z');

function setup(options: CacheOptions = {}) {
  const source = new FakeDataKeySource();
  const clock = { time: START };
  const cache = new DataKeyCache(source, DEFAULT_SUITE, options, () => clock.time);
  return { source, clock, cache };
}

/** Holds every call to the fake until the returned function releases them. */
function hold(source: FakeDataKeySource): () => void {
  let release!: () => void;
  source.gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  return () => {
    source.gate = undefined;
    release();
  };
}

/** Lets every pending promise and I/O callback run: one turn of the event loop, not a timed wait. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
const isZero = (bytes: Uint8Array): boolean => bytes.every((byte) => byte === 0);

/**
 * Runs `action` and returns, with its result, every 32-byte buffer that `Buffer.alloc` made meanwhile. The cache
 * copies data keys with `Buffer.alloc`, so its own copy of a key it just fetched is among them; this is how a test
 * gets hold of the bytes the cache keeps, to see them zeroed.
 */
async function allocationsDuring<T>(action: () => Promise<T>): Promise<{ result: T; buffers: Buffer[] }> {
  const spy = vi.spyOn(Buffer, 'alloc');
  try {
    const result = await action();
    const buffers = spy.mock.results.flatMap((entry) => (entry.type === 'return' && (entry.value as Buffer).length === 32 ? [entry.value as Buffer] : []));
    return { result, buffers };
  } finally {
    spy.mockRestore();
  }
}

/** The cache's own copy of `handedOut`: a buffer with the same bytes that is not the one the caller got. */
function cachedCopies(buffers: Buffer[], handedOut: Uint8Array): Buffer[] {
  const copies = buffers.filter((buffer) => buffer !== handedOut && same(buffer, handedOut));
  expect(copies.length).toBeGreaterThan(0);
  return copies;
}

function refusal(status: number, code: string): { status: number; code: string } {
  return { status, code };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('DataKeyCache', () => {
  describe('encrypt side', () => {
    it('one data key request serves many messages of one key name and context', async () => {
      const { source, cache } = setup();
      const keys: DataKey[] = [];
      for (let i = 0; i < 20; i++) keys.push(await cache.generate('orders', ACME, { plaintextLength: 100 }));
      expect(source.generateCalls).toBe(1);
      for (const key of keys) {
        expect(same(key.wrapped, keys[0]!.wrapped)).toBe(true);
        expect(same(key.plaintext, keys[0]!.plaintext)).toBe(true);
      }
      expect(cache.stats()).toEqual({ encryptEntries: 1, decryptEntries: 0, hits: 19, misses: 1 });
    });

    it('a data key encrypts until it is maxAgeMs old, and not at maxAgeMs', async () => {
      const { source, clock, cache } = setup({ maxAgeMs: 1_000 });
      const first = await cache.generate('orders', ACME, { plaintextLength: 1 });
      clock.time += 999;
      expect(same((await cache.generate('orders', ACME, { plaintextLength: 1 })).wrapped, first.wrapped)).toBe(true);
      expect(source.generateCalls).toBe(1);
      clock.time += 1;
      const second = await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
      expect(same(second.wrapped, first.wrapped)).toBe(false);
    });

    it('a data key encrypts at most maxMessages messages', async () => {
      const { source, cache } = setup({ maxMessages: 3 });
      const wrapped = [];
      for (let i = 0; i < 4; i++) wrapped.push((await cache.generate('orders', ACME, { plaintextLength: 1 })).wrapped);
      expect(source.generateCalls).toBe(2);
      expect(same(wrapped[2]!, wrapped[0]!)).toBe(true);
      expect(same(wrapped[3]!, wrapped[0]!)).toBe(false);
    });

    it('a data key encrypts at most maxBytes plaintext bytes: a message that fits exactly shares it, one more byte does not', async () => {
      const { source, cache } = setup({ maxBytes: 100 });
      const first = await cache.generate('orders', ACME, { plaintextLength: 60 });
      const exact = await cache.generate('orders', ACME, { plaintextLength: 40 });
      expect(same(exact.wrapped, first.wrapped)).toBe(true);
      expect(source.generateCalls).toBe(1);
      const over = await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(same(over.wrapped, first.wrapped)).toBe(false);
      expect(source.generateCalls).toBe(2);
    });

    it('a message larger than maxBytes gets a key of its own that is never cached, and leaves the cached key alone', async () => {
      const { source, cache } = setup({ maxBytes: 100 });
      const small = await cache.generate('orders', ACME, { plaintextLength: 10 });
      const large = await cache.generate('orders', ACME, { plaintextLength: 101 });
      const again = await cache.generate('orders', ACME, { plaintextLength: 101 });
      expect(source.generateCalls).toBe(3);
      expect(same(large.wrapped, small.wrapped)).toBe(false);
      expect(same(again.wrapped, large.wrapped)).toBe(false);
      expect(large.charge).toBeUndefined();
      expect(cache.stats().encryptEntries).toBe(1);
      expect(same((await cache.generate('orders', ACME, { plaintextLength: 90 })).wrapped, small.wrapped)).toBe(true);
      expect(source.generateCalls).toBe(3);
    });

    it('a key for a message of known length has no charge function; its length was charged when it was handed out', async () => {
      const { cache } = setup();
      expect((await cache.generate('orders', ACME, { plaintextLength: 5 })).charge).toBeUndefined();
    });
  });

  describe('streams (no plaintextLength)', () => {
    it('a stream gets a cached key with a charge function, shared while the key has bytes left', async () => {
      const { source, cache } = setup({ maxBytes: 100 });
      const stream = await cache.generate('orders', ACME);
      expect(typeof stream.charge).toBe('function');
      stream.charge!(99);
      const next = await cache.generate('orders', ACME);
      expect(same(next.wrapped, stream.wrapped)).toBe(true);
      expect(source.generateCalls).toBe(1);
    });

    it('bytes charged by a stream count against maxBytes: once they reach it, the next message gets a new key', async () => {
      const { source, cache } = setup({ maxBytes: 100 });
      const stream = await cache.generate('orders', ACME);
      stream.charge!(100);
      const afterStream = await cache.generate('orders', ACME);
      expect(source.generateCalls).toBe(2);
      expect(same(afterStream.wrapped, stream.wrapped)).toBe(false);
    });

    it('bytes charged by a stream leave less room for a message of known length', async () => {
      const { source, cache } = setup({ maxBytes: 100 });
      const stream = await cache.generate('orders', ACME);
      stream.charge!(50);
      expect(same((await cache.generate('orders', ACME, { plaintextLength: 50 })).wrapped, stream.wrapped)).toBe(true);
      expect(same((await cache.generate('orders', ACME, { plaintextLength: 1 })).wrapped, stream.wrapped)).toBe(false);
      expect(source.generateCalls).toBe(2);
    });

    it('the encrypting stream charges the bytes it encrypts to its cached key', async () => {
      const { source, cache } = setup({ maxBytes: 1_000 });
      const transform = createEncryptStream(nodeBackend, () => cache.generate('orders', ACME), {
        suite: DEFAULT_SUITE,
        segmentSize: 256,
        context: ACME,
      });
      const sealed = await pipeThrough(transform, new Uint8Array(2_000), 300);
      expect(sealed.error).toBeUndefined();
      // 2,000 bytes went out under a key that may protect 1,000: it must not encrypt anything more.
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
    });
  });

  describe('decrypt side', () => {
    it('one unwrap request serves every later decryption of the same wrapped key and context', async () => {
      const { source, cache } = setup();
      const key = await source.generate('orders', ACME);
      for (let i = 0; i < 5; i++) expect(same((await cache.unwrap(key.wrapped, ACME)).plaintext, key.plaintext)).toBe(true);
      expect(source.unwrapCalls).toBe(1);
      expect(cache.stats()).toMatchObject({ decryptEntries: 1, hits: 4, misses: 1 });
    });

    it('an unwrapped key is served until it is maxAgeMs old, and not at maxAgeMs', async () => {
      const { source, clock, cache } = setup({ maxAgeMs: 1_000 });
      const key = await source.generate('orders', ACME);
      await cache.unwrap(key.wrapped, ACME);
      clock.time += 999;
      await cache.unwrap(key.wrapped, ACME);
      expect(source.unwrapCalls).toBe(1);
      clock.time += 1;
      expect(same((await cache.unwrap(key.wrapped, ACME)).plaintext, key.plaintext)).toBe(true);
      expect(source.unwrapCalls).toBe(2);
    });

    it('a failed unwrap is not cached: the next decryption asks again', async () => {
      const { source, cache } = setup();
      const key = await source.generate('orders', ACME);
      source.refuse = refusal(503, 'KH_ERR_UNAVAILABLE');
      await expect(cache.unwrap(key.wrapped, ACME)).rejects.toBeInstanceOf(ServiceError);
      source.refuse = undefined;
      expect(same((await cache.unwrap(key.wrapped, ACME)).plaintext, key.plaintext)).toBe(true);
      expect(source.unwrapCalls).toBe(2);
    });
  });

  describe('single flight', () => {
    it('concurrent misses for one key name and context share one generate request', async () => {
      const { source, cache } = setup();
      const release = hold(source);
      const calls = Array.from({ length: 8 }, () => cache.generate('orders', ACME, { plaintextLength: 10 }));
      await settle();
      expect(source.generateCalls).toBe(1);
      release();
      const keys = await Promise.all(calls);
      expect(source.generateCalls).toBe(1);
      for (const key of keys) expect(same(key.wrapped, keys[0]!.wrapped)).toBe(true);
      expect(cache.stats().encryptEntries).toBe(1);
    });

    it('concurrent misses for one wrapped key and context share one unwrap request', async () => {
      const { source, cache } = setup();
      const key = await source.generate('orders', ACME);
      const release = hold(source);
      const calls = Array.from({ length: 8 }, () => cache.unwrap(key.wrapped, ACME));
      await settle();
      expect(source.unwrapCalls).toBe(1);
      release();
      for (const unwrapped of await Promise.all(calls)) expect(same(unwrapped.plaintext, key.plaintext)).toBe(true);
      expect(source.unwrapCalls).toBe(1);
    });

    it('a shared request still respects maxMessages: callers beyond the limit get a second key', async () => {
      const { source, cache } = setup({ maxMessages: 2 });
      const release = hold(source);
      const calls = Array.from({ length: 4 }, () => cache.generate('orders', ACME, { plaintextLength: 1 }));
      await settle();
      release();
      const wrapped = new Set((await Promise.all(calls)).map((key) => Buffer.from(key.wrapped).toString('hex')));
      expect(wrapped.size).toBe(2);
      expect(source.generateCalls).toBe(2);
    });

    it('a failed shared request fails every caller waiting on it, and the next call asks again', async () => {
      const { source, cache } = setup();
      source.refuse = refusal(503, 'KH_ERR_UNAVAILABLE');
      const release = hold(source);
      const calls = Array.from({ length: 3 }, () => cache.generate('orders', ACME, { plaintextLength: 1 }).catch((error: unknown) => error));
      release();
      for (const outcome of await Promise.all(calls)) expect(outcome).toBeInstanceOf(ServiceError);
      expect(source.generateCalls).toBe(1);
      source.refuse = undefined;
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
    });

    it("a waiting caller whose signal aborts rejects with the signal's reason; the shared request still serves the others", async () => {
      const { source, cache } = setup();
      const release = hold(source);
      const controller = new AbortController();
      const reason = new Error('caller gave up');
      const aborted = cache.generate('orders', ACME, { plaintextLength: 1, signal: controller.signal }).then(
        () => 'resolved',
        (error: unknown) => error,
      );
      const other = cache.generate('orders', ACME, { plaintextLength: 1 });
      controller.abort(reason);
      release();
      expect(await aborted).toBe(reason);
      await expect(other).resolves.toMatchObject({ keyName: 'orders' });
      expect(source.generateCalls).toBe(1);
    });
  });

  describe('partitions', () => {
    it('a data key made under one context never encrypts under another', async () => {
      const { source, cache } = setup();
      const acme = await cache.generate('orders', ACME, { plaintextLength: 1 });
      const globex = await cache.generate('orders', GLOBEX, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
      expect(same(globex.wrapped, acme.wrapped)).toBe(false);
      expect(same(globex.plaintext, acme.plaintext)).toBe(false);
    });

    it('the empty context is a partition of its own', async () => {
      const { source, cache } = setup();
      await cache.generate('orders', canonicalContext(undefined), { plaintextLength: 1 });
      await cache.generate('orders', canonicalContext({}), { plaintextLength: 1 });
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
    });

    it('a data key of one key name never encrypts for another', async () => {
      const { source, cache } = setup();
      const orders = await cache.generate('orders', ACME, { plaintextLength: 1 });
      const billing = await cache.generate('billing', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
      expect(billing.keyName).toBe('billing');
      expect(same(billing.wrapped, orders.wrapped)).toBe(false);
    });

    it('an unwrapped key cached under one context is never served for another: the service decides', async () => {
      const { source, cache } = setup();
      const key = await source.generate('orders', ACME);
      await cache.unwrap(key.wrapped, ACME);
      await expect(cache.unwrap(key.wrapped, GLOBEX)).rejects.toBeInstanceOf(DecryptionError);
      expect(source.unwrapCalls).toBe(2);
    });

    it('a different split of the same bytes between wrapped key and context is a different entry', async () => {
      // The context value is itself the canonical encoding of { b: 'c' }. So the wrapped key followed by this
      // context's encoding has the same bytes as a longer "wrapped key" (ending in the first seven bytes of that
      // encoding) followed by the encoding of { b: 'c' }. The two must not share a cache entry.
      const { source, cache } = setup();
      const context = canonicalContext({ n: '\u0000\u0001\u0000\u0001b\u0000\u0001c' });
      const inner = canonicalContext({ b: 'c' });
      const key = await source.generate('orders', context);
      await cache.unwrap(key.wrapped, context);
      const shifted = Buffer.concat([key.wrapped, context.encoded.subarray(0, context.encoded.length - inner.encoded.length)]);
      expect(Buffer.concat([shifted, inner.encoded]).equals(Buffer.concat([key.wrapped, context.encoded]))).toBe(true);
      await expect(cache.unwrap(shifted, inner)).rejects.toBeInstanceOf(DecryptionError);
      expect(source.unwrapCalls).toBe(2);
    });
  });

  describe('key material', () => {
    it('every caller gets its own copy of a cached key: zeroing one leaves the others and the cache intact', async () => {
      const { cache } = setup();
      const first = await cache.generate('orders', ACME, { plaintextLength: 1 });
      const second = await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(second.plaintext).not.toBe(first.plaintext);
      expect(second.plaintext.buffer).not.toBe(first.plaintext.buffer);
      const original = Buffer.from(first.plaintext);
      first.plaintext.fill(0);
      expect(same(second.plaintext, original)).toBe(true);
      expect(same((await cache.generate('orders', ACME, { plaintextLength: 1 })).plaintext, original)).toBe(true);
    });

    it('every decrypting caller gets its own copy of an unwrapped key', async () => {
      const { source, cache } = setup();
      const key = await source.generate('orders', ACME);
      const first = await cache.unwrap(key.wrapped, ACME);
      const second = await cache.unwrap(key.wrapped, ACME);
      expect(second.plaintext).not.toBe(first.plaintext);
      first.plaintext.fill(0);
      expect(same(second.plaintext, key.plaintext)).toBe(true);
      expect(same((await cache.unwrap(key.wrapped, ACME)).plaintext, key.plaintext)).toBe(true);
    });

    it("the source's own copy of a data key is zeroed once the cache has copied it", async () => {
      const { source, cache } = setup();
      const fromSource: DataKey[] = [];
      const generate = source.generate.bind(source);
      vi.spyOn(source, 'generate').mockImplementation(async (...args) => {
        const key = await generate(...args);
        fromSource.push(key);
        return key;
      });
      const handedOut = await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(fromSource).toHaveLength(1);
      expect(fromSource[0]!.plaintext).not.toBe(handedOut.plaintext);
      expect(isZero(fromSource[0]!.plaintext)).toBe(true);
      expect(isZero(handedOut.plaintext)).toBe(false);
    });
  });

  describe('purge', () => {
    it('purge(keyName) drops and zeroes that key name\'s entries, so its next message asks the service again', async () => {
      const { source, cache } = setup();
      const { result: key, buffers } = await allocationsDuring(() => cache.generate('orders', ACME, { plaintextLength: 1 }));
      const kept = cachedCopies(buffers, key.plaintext);
      cache.purge('orders');
      for (const copy of kept) expect(isZero(copy)).toBe(true);
      expect(isZero(key.plaintext)).toBe(false);
      expect(cache.stats().encryptEntries).toBe(0);
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
    });

    it('purge(keyName) leaves the entries of other key names', async () => {
      const { source, cache } = setup();
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      await cache.generate('billing', ACME, { plaintextLength: 1 });
      cache.purge('orders');
      expect(cache.stats().encryptEntries).toBe(1);
      await cache.generate('billing', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
    });

    it('purge(keyName) drops the entries of every context of that key', async () => {
      const { cache } = setup();
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      await cache.generate('orders', GLOBEX, { plaintextLength: 1 });
      cache.purge('orders');
      expect(cache.stats().encryptEntries).toBe(0);
    });

    it('purge(keyId) drops and zeroes the entries of that key on both sides', async () => {
      const { source, cache } = setup();
      const wrapped = (await source.generate('orders', ACME)).wrapped;
      const { result: unwrapped, buffers } = await allocationsDuring(() => cache.unwrap(wrapped, ACME));
      const kept = cachedCopies(buffers, unwrapped.plaintext);
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      cache.purge(source.keyId);
      for (const copy of kept) expect(isZero(copy)).toBe(true);
      expect(cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
      await cache.unwrap(wrapped, ACME);
      expect(source.unwrapCalls).toBe(2);
    });

    it('purge of a key nothing was cached for drops nothing', async () => {
      const { cache } = setup();
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      cache.purge('billing');
      cache.purge(randomUUID());
      expect(cache.stats().encryptEntries).toBe(1);
    });

    it('purge() drops and zeroes every entry on both sides', async () => {
      const { source, cache } = setup();
      const wrapped = (await source.generate('orders', ACME)).wrapped;
      const encrypting = await allocationsDuring(() => cache.generate('orders', ACME, { plaintextLength: 1 }));
      const decrypting = await allocationsDuring(() => cache.unwrap(wrapped, ACME));
      const kept = [...cachedCopies(encrypting.buffers, encrypting.result.plaintext), ...cachedCopies(decrypting.buffers, decrypting.result.plaintext)];
      await cache.generate('billing', GLOBEX, { plaintextLength: 1 });
      cache.purge();
      for (const copy of kept) expect(isZero(copy)).toBe(true);
      expect(cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
    });

    it('a purge while a request is in flight does not put that stale answer in the cache', async () => {
      const { source, cache } = setup();
      const release = hold(source);
      const pending = cache.generate('orders', ACME, { plaintextLength: 1 });
      await settle();
      cache.purge('orders');
      release();
      // The caller that asked before the purge still gets the key it waited for.
      const key = await pending;
      expect(key.keyName).toBe('orders');
      expect(cache.stats().encryptEntries).toBe(0);
      const next = await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(2);
      expect(same(next.wrapped, key.wrapped)).toBe(false);
    });

    it('a purge while an unwrap is in flight does not put that stale answer in the cache', async () => {
      const { source, cache } = setup();
      const key = await source.generate('orders', ACME);
      const release = hold(source);
      const pending = cache.unwrap(key.wrapped, ACME);
      await settle();
      cache.purge();
      release();
      expect(same((await pending).plaintext, key.plaintext)).toBe(true);
      expect(cache.stats().decryptEntries).toBe(0);
      await cache.unwrap(key.wrapped, ACME);
      expect(source.unwrapCalls).toBe(2);
    });

    it('an answer that raced a purge is zeroed once its waiting callers have their copies', async () => {
      const { source, cache } = setup();
      const release = hold(source);
      const { result: key, buffers } = await allocationsDuring(async () => {
        const pending = cache.generate('orders', ACME, { plaintextLength: 1 });
        await settle();
        cache.purge();
        release();
        return pending;
      });
      const kept = cachedCopies(buffers, key.plaintext);
      await settle();
      for (const copy of kept) expect(isZero(copy)).toBe(true);
      expect(isZero(key.plaintext)).toBe(false);
    });
  });

  describe('service refusals purge the key', () => {
    const PURGING = [
      ['403 forbidden', refusal(403, 'KH_ERR_FORBIDDEN'), 'KH_SDK_ACCESS_DENIED'],
      ['409 key disabled', refusal(409, 'KH_ERR_KEY_DISABLED'), 'KH_SDK_KEY_STATE'],
      ['404 key not found', refusal(404, 'KH_ERR_KEY_NOT_FOUND'), 'KH_SDK_KEY_NOT_FOUND'],
    ] as const;

    it.each(PURGING)('a %s answer to generate purges every entry of that key name, and reaches the caller', async (_name, refuse, code) => {
      const { source, cache } = setup();
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      await cache.generate('billing', ACME, { plaintextLength: 1 });
      source.refuse = refuse;
      await expect(cache.generate('orders', GLOBEX, { plaintextLength: 1 })).rejects.toMatchObject({ code });
      expect(cache.stats().encryptEntries).toBe(1);
      source.refuse = undefined;
      await cache.generate('billing', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(3);
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(4);
    });

    it.each(PURGING)('a %s answer to unwrap purges every entry of the key the wrapped key names, on both sides', async (_name, refuse, code) => {
      const { source, cache } = setup();
      const cached = (await source.generate('orders', ACME)).wrapped;
      const other = (await source.generate('orders', ACME)).wrapped;
      await cache.unwrap(cached, ACME);
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      source.refuse = refuse;
      await expect(cache.unwrap(other, ACME)).rejects.toMatchObject({ code });
      expect(cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
      source.refuse = undefined;
      await cache.unwrap(cached, ACME);
      expect(source.unwrapCalls).toBe(3);
    });

    it('a 409 answer to the uncached request of a message larger than maxBytes purges the key too', async () => {
      const { source, cache } = setup({ maxBytes: 100 });
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      source.refuse = refusal(409, 'KH_ERR_KEY_DISABLED');
      await expect(cache.generate('orders', ACME, { plaintextLength: 101 })).rejects.toMatchObject({ code: 'KH_SDK_KEY_STATE' });
      expect(cache.stats().encryptEntries).toBe(0);
    });

    it.each([
      ['503 unavailable', refusal(503, 'KH_ERR_UNAVAILABLE')],
      ['400 validation', refusal(400, 'KH_ERR_VALIDATION')],
    ])('a %s answer says nothing about the key and purges nothing', async (_name, refuse) => {
      const { source, cache } = setup();
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      source.refuse = refuse;
      await expect(cache.generate('orders', GLOBEX, { plaintextLength: 1 })).rejects.toBeInstanceOf(ServiceError);
      expect(cache.stats().encryptEntries).toBe(1);
    });

    it('a wrapped key the service cannot open (a decryption error) purges nothing', async () => {
      const { source, cache } = setup();
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      const tampered = Buffer.from((await source.generate('orders', ACME)).wrapped);
      tampered[40]! ^= 1;
      await expect(cache.unwrap(tampered, ACME)).rejects.toBeInstanceOf(DecryptionError);
      expect(cache.stats().encryptEntries).toBe(1);
    });
  });

  describe('maxEntries', () => {
    it('the encrypt side keeps at most maxEntries entries and evicts the least recently used first', async () => {
      const { source, cache } = setup({ maxEntries: 2 });
      await cache.generate('a', ACME, { plaintextLength: 1 });
      await cache.generate('b', ACME, { plaintextLength: 1 });
      await cache.generate('a', ACME, { plaintextLength: 1 });
      await cache.generate('c', ACME, { plaintextLength: 1 });
      expect(cache.stats().encryptEntries).toBe(2);
      expect(source.generateCalls).toBe(3);
      await cache.generate('a', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(3);
      await cache.generate('b', ACME, { plaintextLength: 1 });
      expect(source.generateCalls).toBe(4);
    });

    it('the decrypt side keeps at most maxEntries entries and evicts the least recently used first', async () => {
      const { source, cache } = setup({ maxEntries: 2 });
      const [a, b, c] = await Promise.all([1, 2, 3].map(async () => (await source.generate('orders', ACME)).wrapped));
      await cache.unwrap(a!, ACME);
      await cache.unwrap(b!, ACME);
      await cache.unwrap(a!, ACME);
      await cache.unwrap(c!, ACME);
      expect(cache.stats().decryptEntries).toBe(2);
      expect(source.unwrapCalls).toBe(3);
      await cache.unwrap(a!, ACME);
      expect(source.unwrapCalls).toBe(3);
      await cache.unwrap(b!, ACME);
      expect(source.unwrapCalls).toBe(4);
    });

    it('an evicted entry is zeroed', async () => {
      const { cache } = setup({ maxEntries: 1 });
      const { result: key, buffers } = await allocationsDuring(() => cache.generate('a', ACME, { plaintextLength: 1 }));
      const kept = cachedCopies(buffers, key.plaintext);
      await cache.generate('b', ACME, { plaintextLength: 1 });
      for (const copy of kept) expect(isZero(copy)).toBe(true);
    });

    it('the two sides are bounded separately', async () => {
      const { source, cache } = setup({ maxEntries: 1 });
      await cache.generate('orders', ACME, { plaintextLength: 1 });
      await cache.unwrap((await source.generate('orders', ACME)).wrapped, ACME);
      expect(cache.stats()).toMatchObject({ encryptEntries: 1, decryptEntries: 1 });
    });
  });

  describe('options', () => {
    const BAD_VALUES = [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '10' as unknown as number];
    for (const option of ['maxAgeMs', 'maxMessages', 'maxBytes', 'maxEntries'] as const) {
      it.each(BAD_VALUES)(`${option} = %s is refused with InvalidArgumentError`, (value) => {
        const source = new FakeDataKeySource();
        expect(() => new DataKeyCache(source, DEFAULT_SUITE, { [option]: value })).toThrow(InvalidArgumentError);
      });
    }

    it('every option may be left out, or set to 1', () => {
      const source = new FakeDataKeySource();
      expect(() => new DataKeyCache(source, DEFAULT_SUITE)).not.toThrow();
      expect(() => new DataKeyCache(source, DEFAULT_SUITE, { maxAgeMs: 1, maxMessages: 1, maxBytes: 1, maxEntries: 1 })).not.toThrow();
    });
  });
});
