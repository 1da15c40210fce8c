import { createHash } from 'node:crypto';
import { DeadlineExceededError, InvalidArgumentError, KeyholdSdkError } from '../errors.js';
import type { CanonicalContext } from '../format/encryption-context.js';
import type { Suite } from '../format/suites.js';
import type { DataKey, DataKeySource, DerivedKeySlot, GenerateOptions, SourceCallOptions, UnwrappedDataKey } from '../keys/data-key-source.js';
import { wrappedKeyId } from '../keys/wrapped-key.js';

/** Limits of the data-key cache. Every limit is a bound on how much one data key protects, and for how long. */
export interface CacheOptions {
  /** How long a data key is used to encrypt, and an unwrapped key kept, in milliseconds. Default 5 minutes. */
  readonly maxAgeMs?: number;
  /** How many messages one cached data key encrypts. Default 2^32. */
  readonly maxMessages?: number;
  /** How many plaintext bytes one cached data key encrypts. Default 2^53 − 1. */
  readonly maxBytes?: number;
  /** How many entries each side (encrypt, decrypt) keeps; the least recently used goes first. Default 1,000. */
  readonly maxEntries?: number;
}

/** Counters, for metrics and tests. */
export interface CacheStats {
  readonly encryptEntries: number;
  readonly decryptEntries: number;
  readonly hits: number;
  readonly misses: number;
}

interface Entry {
  readonly keyName: string;
  readonly keyId: string;
  /** The cache's own copy, handed out only as copies and zeroed when the entry goes. */
  readonly plaintext: Buffer;
  readonly createdAt: number;
  /** What the envelope derived from this key for all its messages; disposed of with the entry. */
  readonly derived: DerivedKeySlot;
  /**
   * `cached` while in a map; `detached` when a purge raced its request, so it serves only that request's callers;
   * `zeroed` once gone. Callers that waited on a shared request check this before copying the key out.
   */
  state: 'cached' | 'detached' | 'zeroed';
}

interface EncryptEntry extends Entry {
  readonly keyVersion: number;
  readonly wrapped: Uint8Array;
  messages: number;
  bytes: number;
}

/** Service errors after which cached keys of that key must not be used again. */
const PURGING_CODES = new Set(['KH_SDK_ACCESS_DENIED', 'KH_SDK_KEY_STATE', 'KH_SDK_KEY_NOT_FOUND', 'KH_SDK_UNAUTHENTICATED']);

function ownCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.alloc(bytes.length);
  copy.set(bytes);
  return copy;
}

/**
 * Up to this many bytes of wrapped key and context, a decrypt entry's id is those bytes themselves (as a latin1
 * string, after the wrapped key's length); beyond it, their SHA-256. A hash cost more than the rest of a cached
 * decryption, and a `kh1` wrapped key with a typical context is about 150 bytes.
 */
const MAX_VERBATIM_ID_BYTES = 512;

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/**
 * The id of a decrypt entry: the wrapped key and the context, with the wrapped key's length first, so no other split
 * of the same bytes into key and context has this id. The two forms start with different letters, so they never meet.
 */
function decryptId(wrapped: Uint8Array, context: CanonicalContext): string {
  if (wrapped.length + context.encoded.length <= MAX_VERBATIM_ID_BYTES) return `b${wrapped.length}:${latin1(wrapped)}${latin1(context.encoded)}`;
  const wrappedLength = Buffer.alloc(2);
  wrappedLength.writeUInt16BE(wrapped.length);
  return `h${createHash('sha256').update(wrappedLength).update(wrapped).update(context.encoded).digest('base64')}`;
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`cache.${name} must be a positive integer`);
  return value;
}

/**
 * A bounded cache of data keys in front of a source: the main cost the SDK saves.
 *
 * - Encrypt side: one data key per (suite, key name, context) is reused until it is `maxAgeMs` old or has encrypted
 *   `maxMessages` messages or `maxBytes` bytes.
 * - Decrypt side: unwrapped keys by SHA-256 of the wrapped key and the context, for `maxAgeMs`.
 *
 * The context is part of every cache key, so an entry made under one context never serves another. Concurrent
 * misses for one entry share one request. Entries are zeroed when they go. A service answer that the caller may no
 * longer use a key (403, key state, unknown key) purges that key's entries, and `purge` lets revocation events do
 * the same.
 */
export class DataKeyCache implements DataKeySource {
  readonly #maxAgeMs: number;
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  readonly #maxEntries: number;
  readonly #encrypt = new Map<string, EncryptEntry>();
  readonly #decrypt = new Map<string, Entry>();
  readonly #pendingEncrypt = new Map<string, Promise<EncryptEntry>>();
  readonly #pendingDecrypt = new Map<string, Promise<Entry>>();
  /** Bumped by every purge, so a request that started before a purge does not put its answer back in. */
  #generation = 0;
  #hits = 0;
  #misses = 0;
  #sweep: ReturnType<typeof setTimeout> | undefined;
  /** The entry each map last moved to its young end (see #touch), or put there. */
  readonly #youngest = new Map<Map<string, Entry>, Entry>();
  #lastId: { readonly wrapped: Uint8Array; readonly context: CanonicalContext; readonly id: string } | undefined;

  constructor(
    private readonly source: DataKeySource,
    private readonly suite: Suite,
    options: CacheOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.#maxAgeMs = positiveInteger(options.maxAgeMs, 5 * 60_000, 'maxAgeMs');
    this.#maxMessages = positiveInteger(options.maxMessages, 2 ** 32, 'maxMessages');
    this.#maxBytes = positiveInteger(options.maxBytes, Number.MAX_SAFE_INTEGER, 'maxBytes');
    this.#maxEntries = positiveInteger(options.maxEntries, 1000, 'maxEntries');
  }

  /**
   * A data key for a message of `length` bytes (unknown for a stream) if a cached one may serve it, without waiting:
   * the hit half of {@link generate}, which a caller on a synchronous path tries first.
   */
  generateCached(keyName: string, context: CanonicalContext, length?: number): DataKey | undefined {
    if (length !== undefined && length > this.#maxBytes) return undefined;
    const partition = this.#partition(keyName, context);
    const entry = this.#encrypt.get(partition);
    if (entry === undefined) return undefined;
    if (!this.#usable(entry, length)) {
      this.#remove(this.#encrypt, partition);
      return undefined;
    }
    this.#hits += 1;
    this.#touch(this.#encrypt, partition, entry);
    return this.#handOut(entry, length);
  }

  async generate(keyName: string, context: CanonicalContext, options: GenerateOptions = {}): Promise<DataKey> {
    const length = options.plaintextLength;
    // A message larger than a key may ever protect gets a key of its own that no other message shares.
    if (length !== undefined && length > this.#maxBytes) {
      try {
        return await this.source.generate(keyName, context, options);
      } catch (error) {
        this.#purgeAfter(error, keyName);
        throw error;
      }
    }
    const partition = this.#partition(keyName, context);
    for (;;) {
      const cached = this.generateCached(keyName, context, length);
      if (cached !== undefined) return cached;
      this.#misses += 1;
      let pending = this.#pendingEncrypt.get(partition);
      if (pending === undefined) {
        pending = this.#fetchEncrypt(partition, keyName, context, options);
        this.#pendingEncrypt.set(partition, pending);
      }
      const fetched = await waitAsCaller(pending, options);
      // Shared with concurrent callers: take it only while it is live and within its limits; otherwise go round.
      // Age is not checked here: a key fetched for this very call is fresh, whatever the clock did meanwhile.
      if (fetched.state !== 'zeroed' && this.#withinUsage(fetched, length)) return this.#handOut(fetched, length);
    }
  }

  /** The plaintext of a wrapped data key if it is cached, without waiting: the hit half of {@link unwrap}. */
  unwrapCached(wrapped: Uint8Array, context: CanonicalContext): UnwrappedDataKey | undefined {
    return this.#unwrapCached(this.#decryptId(wrapped, context));
  }

  async unwrap(wrapped: Uint8Array, context: CanonicalContext, options: SourceCallOptions = {}): Promise<UnwrappedDataKey> {
    const id = this.#decryptId(wrapped, context);
    const cached = this.#unwrapCached(id);
    if (cached !== undefined) return cached;
    this.#misses += 1;
    let pending = this.#pendingDecrypt.get(id);
    if (pending === undefined) {
      pending = this.#fetchDecrypt(id, wrapped, context, options);
      this.#pendingDecrypt.set(id, pending);
    }
    const fetched = await waitAsCaller(pending, options);
    // Evicted between the answer and this continuation (a tiny cache under load): ask again.
    if (fetched.state === 'zeroed') return this.unwrap(wrapped, context, options);
    return unwrapped(fetched);
  }

  #unwrapCached(id: string): UnwrappedDataKey | undefined {
    const entry = this.#decrypt.get(id);
    if (entry === undefined) return undefined;
    if (this.now() - entry.createdAt >= this.#maxAgeMs) {
      this.#remove(this.#decrypt, id);
      return undefined;
    }
    this.#hits += 1;
    this.#touch(this.#decrypt, id, entry);
    return unwrapped(entry);
  }

  /**
   * {@link decryptId}, recalled when asked for the same two arrays as last time: a parsed header's wrapped key and
   * context are the same objects for every message under one data key (format/header.ts), and the SDK never changes
   * them. Were the bytes ever changed under the same arrays, the id would name another key, whose commitment fails.
   */
  #decryptId(wrapped: Uint8Array, context: CanonicalContext): string {
    const last = this.#lastId;
    if (last !== undefined && last.wrapped === wrapped && last.context === context) return last.id;
    const id = decryptId(wrapped, context);
    this.#lastId = { wrapped, context, id };
    return id;
  }

  #partition(keyName: string, context: CanonicalContext): string {
    return `${this.suite.id}\u0000${keyName}\u0000${context.key}`;
  }

  /** Drops, and zeroes, every entry of `keyName` (a name or a key id), or every entry when none is given. */
  purge(keyName?: string): void {
    this.#generation += 1;
    for (const map of [this.#encrypt, this.#decrypt] as Array<Map<string, Entry>>) {
      for (const [id, entry] of map) {
        if (keyName === undefined || entry.keyName === keyName || entry.keyId === keyName) this.#remove(map, id);
      }
    }
  }

  stats(): CacheStats {
    return { encryptEntries: this.#encrypt.size, decryptEntries: this.#decrypt.size, hits: this.#hits, misses: this.#misses };
  }

  async #fetchEncrypt(partition: string, keyName: string, context: CanonicalContext, options: GenerateOptions): Promise<EncryptEntry> {
    const generation = this.#generation;
    try {
      // The request is shared, so it does not take one caller's abort signal with it.
      const key = await this.source.generate(keyName, context, { timeoutMs: options.timeoutMs });
      const entry: EncryptEntry = {
        keyName: key.keyName,
        keyId: key.keyId,
        keyVersion: key.keyVersion,
        wrapped: key.wrapped,
        plaintext: ownCopy(key.plaintext),
        createdAt: this.now(),
        derived: { value: undefined },
        state: 'cached',
        messages: 0,
        bytes: 0,
      };
      key.plaintext.fill(0);
      this.#settle(this.#encrypt, partition, entry, generation);
      return entry;
    } catch (error) {
      this.#purgeAfter(error, keyName);
      throw error;
    } finally {
      this.#pendingEncrypt.delete(partition);
    }
  }

  async #fetchDecrypt(id: string, wrapped: Uint8Array, context: CanonicalContext, options: SourceCallOptions): Promise<Entry> {
    const generation = this.#generation;
    try {
      const key = await this.source.unwrap(wrapped, context, { timeoutMs: options.timeoutMs });
      const entry: Entry = {
        keyName: key.keyName,
        keyId: key.keyId,
        plaintext: ownCopy(key.plaintext),
        createdAt: this.now(),
        derived: { value: undefined },
        state: 'cached',
      };
      key.plaintext.fill(0);
      this.#settle(this.#decrypt, id, entry, generation);
      return entry;
    } catch (error) {
      this.#purgeAfter(error, wrappedKeyId(wrapped));
      throw error;
    } finally {
      this.#pendingDecrypt.delete(id);
    }
  }

  #purgeAfter(error: unknown, key: string | undefined): void {
    if (key !== undefined && error instanceof KeyholdSdkError && PURGING_CODES.has(error.code)) this.purge(key);
  }

  #usable(entry: EncryptEntry, length: number | undefined): boolean {
    return this.now() - entry.createdAt < this.#maxAgeMs && this.#withinUsage(entry, length);
  }

  #withinUsage(entry: EncryptEntry, length: number | undefined): boolean {
    return entry.messages < this.#maxMessages
      && (length === undefined ? entry.bytes < this.#maxBytes : entry.bytes + length <= this.#maxBytes);
  }

  #handOut(entry: EncryptEntry, length: number | undefined): DataKey {
    entry.messages += 1;
    entry.bytes += length ?? 0;
    const key: DataKey = {
      keyName: entry.keyName,
      keyId: entry.keyId,
      keyVersion: entry.keyVersion,
      wrapped: entry.wrapped,
      plaintext: ownCopy(entry.plaintext),
      derived: entry.derived,
      ...(length === undefined ? { charge: (bytes: number) => { entry.bytes += bytes; } } : {}),
    };
    return key;
  }

  /**
   * Caches a fetched entry, unless a purge came while it was being fetched: then it serves only the callers already
   * waiting, who copy it out in the microtasks that follow the answer, and is zeroed after them.
   */
  #settle<T extends Entry>(map: Map<string, T>, id: string, entry: T, generation: number): void {
    if (generation === this.#generation) {
      this.#insert(map, id, entry);
      return;
    }
    entry.state = 'detached';
    setImmediate(() => zeroEntry(entry));
  }

  #insert<T extends Entry>(map: Map<string, T>, id: string, entry: T): void {
    const previous = map.get(id);
    if (previous !== undefined && previous !== entry) this.#remove(map, id);
    map.set(id, entry);
    this.#youngest.set(map, entry);
    while (map.size > this.#maxEntries) this.#remove(map, map.keys().next().value as string);
    this.#scheduleSweep();
  }

  /**
   * Expired entries are refused on lookup, but a key looked up once would otherwise stay in memory until evicted.
   * A timer, which never keeps the process alive, zeroes each entry once it is `maxAgeMs` old.
   */
  #scheduleSweep(): void {
    if (this.#sweep !== undefined || (this.#encrypt.size === 0 && this.#decrypt.size === 0)) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const map of [this.#encrypt, this.#decrypt] as Array<Map<string, Entry>>) {
      for (const entry of map.values()) oldest = Math.min(oldest, entry.createdAt);
    }
    const delay = Math.max(0, oldest + this.#maxAgeMs - this.now()) + 1;
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined;
      this.sweep();
      this.#scheduleSweep();
    }, Math.min(delay, 2 ** 31 - 1));
    this.#sweep.unref();
  }

  /** Zeroes and drops every entry older than `maxAgeMs`. */
  sweep(): void {
    const now = this.now();
    for (const map of [this.#encrypt, this.#decrypt] as Array<Map<string, Entry>>) {
      for (const [id, entry] of map) if (now - entry.createdAt >= this.#maxAgeMs) this.#remove(map, id);
    }
  }

  /** Drops every entry and stops the sweep timer. */
  close(): void {
    this.purge();
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
  }

  /**
   * Moves an entry to the young end of the map's insertion order, which is the LRU order; nothing to do when it was
   * the last one touched, as the one key of a busy service usually is.
   */
  #touch<T extends Entry>(map: Map<string, T>, id: string, entry: T): void {
    if (this.#youngest.get(map) === entry) return;
    map.delete(id);
    map.set(id, entry);
    this.#youngest.set(map, entry);
  }

  #remove<T extends Entry>(map: Map<string, T>, id: string): void {
    const entry = map.get(id);
    if (entry === undefined) return;
    map.delete(id);
    zeroEntry(entry);
  }
}

function unwrapped(entry: Entry): UnwrappedDataKey {
  return { keyName: entry.keyName, keyId: entry.keyId, plaintext: ownCopy(entry.plaintext), derived: entry.derived };
}

/**
 * What a gone entry's slot holds: not empty, so a caller still holding the entry's key derives material of its own,
 * uses it and disposes of it, instead of parking it in a slot that no one will dispose of again.
 */
const SLOT_CLOSED = Object.freeze({ dispose(): void {} });

function zeroEntry(entry: Entry): void {
  entry.state = 'zeroed';
  entry.plaintext.fill(0);
  entry.derived.value?.dispose();
  entry.derived.value = SLOT_CLOSED;
}

/**
 * Waits for a request that other callers may share, within this caller's own signal and deadline. The request
 * itself goes on for the others; only this caller stops waiting.
 */
function waitAsCaller<T>(pending: Promise<T>, options: SourceCallOptions): Promise<T> {
  const { signal, timeoutMs } = options;
  if (signal === undefined && timeoutMs === undefined) return pending;
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => finish(() => reject(signal!.reason));
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined) timer = setTimeout(() => finish(() => reject(new DeadlineExceededError(timeoutMs))), timeoutMs);
    pending.then((value) => finish(() => resolve(value)), (error: unknown) => finish(() => reject(error)));
  });
}
