import { Duplex } from 'node:stream';
import type { TransformStream } from 'node:stream/web';
import type { AuthProvider } from './auth/auth-provider.js';
import { DataKeyCache, type CacheOptions, type CacheStats } from './cache/data-key-cache.js';
import { chosenBackend, defaultBackend } from './crypto/backend.js';
import { inspectMessage, type MessageInfo } from './envelope/inspect.js';
import {
  decryptMessage,
  decryptMessageIfCached,
  encryptMessage,
  rewrapMessage,
  sealMessageSync,
  startMessage,
  type MessageParameters,
} from './envelope/one-shot.js';
import {
  createDecryptNodeStream,
  createDecryptStream,
  createEncryptNodeStream,
  createEncryptStream,
  createRewrapStream,
} from './envelope/streams.js';
import { clientOptionsFromEnv } from './env.js';
import { httpEventStreamConnector } from './events/connect.js';
import { checkEventsOptions, EventSubscription, type EventsOptions, type SubscriptionStatus } from './events/subscription.js';
import { ClientClosedError, ConfigurationError, InvalidArgumentError } from './errors.js';
import { canonicalContext, type CanonicalContext, type EncryptionContext } from './format/encryption-context.js';
import { DEFAULT_SEGMENT_SIZE, isValidSegmentSize, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, type MessageHeader } from './format/header.js';
import { DEFAULT_SUITE } from './format/suites.js';
import type { DataKey, DataKeySource, UnwrappedDataKey } from './keys/data-key-source.js';
import { ServiceDataKeySource } from './keys/service-source.js';
import { createHttpTransport, type Transport } from './transport/http-transport.js';

/** The options of {@link createClient}. */
export interface ClientOptions {
  /** The service's base URL, such as `https://keyhold.keyhold.svc:7780`. */
  readonly url: string | URL;
  /** How the workload proves who it is: `kubernetesServiceAccount()`, `spiffeMtls(…)` or `apiToken(…)`. */
  readonly auth: AuthProvider;
  /** The deadline of each call to the service, over all its retries, in milliseconds. Default 10,000. */
  readonly timeoutMs?: number;
  /** Retries after the first attempt, for network errors, 5xx and 429 only. Default 3. */
  readonly retries?: number;
  /** Data-key cache limits, or `false` to ask the service for every message. */
  readonly cache?: CacheOptions | false;
  /**
   * Revocation events. By default the client subscribes to the service's `GET /v1/events` stream once `ready()` or
   * the first operation runs, over the same URL, credentials and CA, and drops cached data keys as soon as their
   * key is disabled, rotated, destroyed or otherwise changed, or a policy changes; without it a cached data key
   * stays usable until `cache.maxAgeMs`. It reconnects with backoff and never keeps the process alive. `false`
   * turns it off (`KEYHOLD_EVENTS=off`); there is nothing to subscribe for with `cache: false` or a custom
   * `transport`.
   */
  readonly events?: EventsOptions | false;
  /** PEM of the CA that issued the service's certificate, when it is not a public one. */
  readonly ca?: string | Buffer;
  /** Plaintext bytes per segment of new messages. Default 1,048,576. */
  readonly segmentSize?: number;
  /** Replaces the HTTP transport; for tests and for embedding. */
  readonly transport?: Transport;
  /** The clock of the cache, in epoch milliseconds; for tests. */
  readonly now?: () => number;
}

/** Per-call options of {@link KeyholdClient.encrypt} and {@link KeyholdClient.encryptStream}. */
export interface EncryptOptions {
  /**
   * Pairs bound to the message as authenticated data, and to its data key by the service. They are stored in the
   * clear in the header; never put secrets in them.
   */
  readonly context?: EncryptionContext;
  /** The deadline of the service call this needs, if any. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Per-call options of {@link KeyholdClient.decrypt} and {@link KeyholdClient.decryptStream}. */
export interface DecryptOptions {
  /** Pairs the message's context must contain, with these values; otherwise decryption fails. */
  readonly expectedContext?: EncryptionContext;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Per-call options of {@link KeyholdClient.rewrapRevoked} and {@link KeyholdClient.rewrapRevokedStream}. */
export interface RewrapOptions {
  /** The deadline of each of the two service calls this needs. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Who the service says the workload is (`GET /v1/whoami`). */
export interface Principal {
  readonly id: string;
  readonly type: string;
  readonly attributes?: Readonly<Record<string, string>>;
  /** True for the service's administrators. */
  readonly admin?: boolean;
}

/** The data-key cache of a client. */
export interface ClientCache {
  /** Drops and zeroes the cached data keys of `keyName` (a key name or id), or all of them. */
  purge(keyName?: string): void;
  stats(): CacheStats;
}

/** The revocation-event subscription of a client. */
export interface ClientEvents {
  /** Where the subscription is and the last event id it saw; for diagnostics, not for control flow. */
  status(): SubscriptionStatus;
}

/** A Keyhold client. Create one per process with {@link createClient} and share it. */
export interface KeyholdClient {
  /**
   * Resolves once the service is ready and accepts this workload's credential; for start-up and readiness probes.
   * Rejects with the SDK's error otherwise.
   */
  ready(options?: { readonly timeoutMs?: number; readonly signal?: AbortSignal }): Promise<Principal>;
  /** Encrypts `data` (bytes, or a string as UTF-8) under a data key of `keyName`: one self-contained message. */
  encrypt(keyName: string, data: Uint8Array | string, options?: EncryptOptions): Promise<Buffer>;
  /**
   * Decrypts a message from {@link encrypt} or {@link encryptStream}. Every failure about the message itself is the
   * same `DecryptionError`; a `ServiceError` says the workload may not use the key (403, key state) or could not ask.
   */
  decrypt(message: Uint8Array, options?: DecryptOptions): Promise<Buffer>;
  /** A Web Streams transform that encrypts what is written to it, in constant memory. */
  encryptStream(keyName: string, options?: EncryptOptions): TransformStream<Uint8Array, Uint8Array>;
  /**
   * A Web Streams transform that decrypts. It releases each segment only once that segment authenticates; a
   * truncated or altered stream errors at the point where it fails.
   */
  decryptStream(options?: DecryptOptions): TransformStream<Uint8Array, Uint8Array>;
  /** {@link encryptStream} as a Node.js Duplex, for `pipeline(source, client.encryptNodeStream(…), sink)`. */
  encryptNodeStream(keyName: string, options?: EncryptOptions): Duplex;
  /** {@link decryptStream} as a Node.js Duplex. */
  decryptNodeStream(options?: DecryptOptions): Duplex;
  /**
   * What a message's header says (key id, key version, context, suite, segment size), without decrypting it or
   * calling the service; the same as `inspectMessage`. Nothing in it is authenticated: use it to find the messages to
   * migrate, never to trust them.
   */
  inspect(message: Uint8Array): MessageInfo;
  /**
   * Moves a message of `keyName` to that key's primary version, whatever version wrapped its data key (disabled and
   * below-minimum ones included): the service wraps the same data key again (`POST /v1/keys/{name}/rewrap-revoked`,
   * which needs the `rewrap-revoked` action, never granted by `*`), and the payload is encrypted again under a fresh
   * message id, because the wrapped key is authenticated as part of every segment. The new message decrypts to the
   * same plaintext with the same context. Also needs `decrypt` on the key, to re-encrypt the payload.
   */
  rewrapRevoked(keyName: string, message: Uint8Array, options?: RewrapOptions): Promise<Buffer>;
  /** {@link rewrapRevoked} as a Web Streams transform from the old message to the new one, in constant memory. */
  rewrapRevokedStream(keyName: string, options?: RewrapOptions): TransformStream<Uint8Array, Uint8Array>;
  /** {@link rewrapRevokedStream} as a Node.js Duplex. */
  rewrapRevokedNodeStream(keyName: string, options?: RewrapOptions): Duplex;
  readonly cache: ClientCache;
  readonly events: ClientEvents;
  /** Zeroes the cache, stops the event subscription, closes connections and refuses further calls. */
  close(): Promise<void>;
}

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_RETRIES = 3;

function checkKeyName(keyName: unknown): string {
  if (typeof keyName !== 'string' || !KEY_NAME.test(keyName)) throw new InvalidArgumentError('keyName must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$');
  return keyName;
}

function toBytes(data: unknown): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new InvalidArgumentError('data must be a Uint8Array, a Buffer or a string');
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const EVENTS_OFF: SubscriptionStatus = Object.freeze({ state: 'off', lastEventId: '', connections: 0 });

class Client implements KeyholdClient {
  readonly cache: ClientCache;
  readonly events: ClientEvents;
  readonly #subscription: EventSubscription | undefined;
  readonly #transport: Transport;
  readonly #source: DataKeySource;
  /** The source when it is the cache, for the paths that try it without waiting. */
  readonly #cache: DataKeyCache | undefined;
  readonly #service: ServiceDataKeySource;
  readonly #segmentSize: number;
  #closeCache: () => void = () => {};
  #closed = false;

  constructor(options: ClientOptions) {
    if (options === null || typeof options !== 'object') throw new ConfigurationError('createClient needs options, or KEYHOLD_URL in the environment');
    if (options.auth === undefined && options.transport === undefined) throw new ConfigurationError('auth is required');
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const retries = options.retries ?? DEFAULT_RETRIES;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new ConfigurationError('timeoutMs must be a positive integer');
    if (!Number.isSafeInteger(retries) || retries < 0 || retries > 10) throw new ConfigurationError('retries must be an integer from 0 to 10');
    this.#segmentSize = options.segmentSize ?? DEFAULT_SEGMENT_SIZE;
    if (!isValidSegmentSize(this.#segmentSize)) {
      throw new ConfigurationError(`segmentSize must be an integer from ${MIN_SEGMENT_SIZE} to ${MAX_SEGMENT_SIZE}`);
    }
    this.#transport = options.transport ?? createHttpTransport({
      url: options.url,
      auth: options.auth,
      timeoutMs,
      retry: { retries, baseDelayMs: 100, maxDelayMs: 5_000 },
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      // A replica that has not applied the change an event announced must not refill the cache it purged.
      minChange: () => this.#subscription?.minChange(),
    });
    const service = new ServiceDataKeySource(this.#transport);
    this.#service = service;
    let cache: DataKeyCache | undefined;
    if (options.cache === false) {
      this.#source = service;
      this.cache = { purge: () => {}, stats: () => ({ encryptEntries: 0, decryptEntries: 0, hits: 0, misses: 0 }) };
    } else {
      const created = new DataKeyCache(service, DEFAULT_SUITE, options.cache ?? {}, options.now);
      cache = created;
      this.#source = created;
      this.cache = { purge: (keyName) => created.purge(keyName), stats: () => created.stats() };
      this.#closeCache = () => created.close();
    }
    this.#cache = cache;
    this.#subscription = this.#subscribe(options, cache);
    const subscription = this.#subscription;
    this.events = { status: () => subscription?.status() ?? EVENTS_OFF };
  }

  async ready(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Principal> {
    this.#begin();
    await this.#transport.request('GET', '/readyz', undefined, options);
    return this.#transport.request<Principal>('GET', '/v1/whoami', undefined, options);
  }

  async encrypt(keyName: string, data: Uint8Array | string, options: EncryptOptions = {}): Promise<Buffer> {
    this.#begin();
    checkKeyName(keyName);
    const plaintext = toBytes(data);
    const parameters = this.#parameters(canonicalContext(options.context));
    const backend = chosenBackend() ?? await defaultBackend();
    // A cached key is taken without waiting; with node:crypto the whole message is then one synchronous call.
    const dataKey = this.#cache?.generateCached(keyName, parameters.context, plaintext.length) ?? await this.#source.generate(keyName, parameters.context, {
      plaintextLength: plaintext.length,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
    });
    let message;
    try {
      if (backend.sync !== undefined && parameters.suite.derivation === 'xaes') return asBuffer(sealMessageSync(backend, dataKey, parameters, plaintext));
      message = await startMessage(backend, dataKey, parameters);
    } finally {
      dataKey.plaintext.fill(0);
    }
    return asBuffer(await encryptMessage(message, plaintext));
  }

  async decrypt(message: Uint8Array, options: DecryptOptions = {}): Promise<Buffer> {
    this.#begin();
    if (!(message instanceof Uint8Array)) throw new InvalidArgumentError('message must be a Uint8Array or a Buffer');
    const expected = options.expectedContext === undefined ? undefined : canonicalContext(options.expectedContext);
    const backend = chosenBackend() ?? await defaultBackend();
    const cache = this.#cache;
    if (cache !== undefined) {
      const plaintext = decryptMessageIfCached(backend, message, (header) => cache.unwrapCached(header.wrappedKey, header.context), expected);
      if (plaintext !== undefined) return asBuffer(plaintext);
    }
    const { plaintext } = await decryptMessage(backend, message, (header) => this.#unwrap(header, options), expected);
    return asBuffer(plaintext);
  }

  encryptStream(keyName: string, options: EncryptOptions = {}): TransformStream<Uint8Array, Uint8Array> {
    return createEncryptStream(...this.#encryptStreamArguments(keyName, options));
  }

  decryptStream(options: DecryptOptions = {}): TransformStream<Uint8Array, Uint8Array> {
    return createDecryptStream(...this.#decryptStreamArguments(options));
  }

  encryptNodeStream(keyName: string, options: EncryptOptions = {}): Duplex {
    return createEncryptNodeStream(...this.#encryptStreamArguments(keyName, options));
  }

  decryptNodeStream(options: DecryptOptions = {}): Duplex {
    return createDecryptNodeStream(...this.#decryptStreamArguments(options));
  }

  inspect(message: Uint8Array): MessageInfo {
    return inspectMessage(message);
  }

  async rewrapRevoked(keyName: string, message: Uint8Array, options: RewrapOptions = {}): Promise<Buffer> {
    this.#begin();
    checkKeyName(keyName);
    if (!(message instanceof Uint8Array)) throw new InvalidArgumentError('message must be a Uint8Array or a Buffer');
    const backend = chosenBackend() ?? await defaultBackend();
    return asBuffer(await rewrapMessage(backend, message, (header) => this.#rewrapDataKey(keyName, header, options)));
  }

  rewrapRevokedStream(keyName: string, options: RewrapOptions = {}): TransformStream<Uint8Array, Uint8Array> {
    this.#begin();
    checkKeyName(keyName);
    return createRewrapStream(defaultBackend(), (header) => this.#rewrapDataKey(keyName, header, options));
  }

  rewrapRevokedNodeStream(keyName: string, options?: RewrapOptions): Duplex {
    return Duplex.fromWeb(this.rewrapRevokedStream(keyName, options) as Parameters<typeof Duplex.fromWeb>[0]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#subscription?.close();
    this.#closeCache();
    await this.#transport.close();
  }

  async #unwrap(header: MessageHeader, options: DecryptOptions): Promise<UnwrappedDataKey> {
    return this.#source.unwrap(header.wrappedKey, header.context, { timeoutMs: options.timeoutMs, signal: options.signal });
  }

  /** The header's data key wrapped again under the primary version of `keyName`, with its plaintext. */
  async #rewrapDataKey(keyName: string, header: MessageHeader, options: RewrapOptions): Promise<DataKey> {
    const call = { timeoutMs: options.timeoutMs, signal: options.signal };
    const rewrapped = await this.#service.rewrapRevoked(keyName, header.wrappedKey, header.context, call);
    // Straight from the service, not through the cache: each re-wrapped key serves one message, once.
    const { plaintext } = await this.#service.unwrap(rewrapped.wrapped, header.context, call);
    return { ...rewrapped, plaintext };
  }

  #encryptStreamArguments(keyName: string, options: EncryptOptions): Parameters<typeof createEncryptStream> {
    this.#begin();
    checkKeyName(keyName);
    const parameters = this.#parameters(canonicalContext(options.context));
    const dataKey = () => this.#source.generate(keyName, parameters.context, { timeoutMs: options.timeoutMs, signal: options.signal });
    return [defaultBackend(), dataKey, parameters];
  }

  #decryptStreamArguments(options: DecryptOptions): Parameters<typeof createDecryptStream> {
    this.#begin();
    const expected = options.expectedContext === undefined ? undefined : canonicalContext(options.expectedContext);
    return [defaultBackend(), (header) => this.#unwrap(header, options), expected];
  }

  #parameters(context: CanonicalContext): MessageParameters {
    return { suite: DEFAULT_SUITE, segmentSize: this.#segmentSize, context };
  }

  /** Every call starts here: it refuses once closed, and opens the event subscription on first use. */
  #begin(): void {
    if (this.#closed) throw new ClientClosedError();
    this.#subscription?.start();
  }

  #subscribe(options: ClientOptions, cache: DataKeyCache | undefined): EventSubscription | undefined {
    if (options.events === false || cache === undefined || options.transport !== undefined) return undefined;
    let tuning;
    try {
      tuning = checkEventsOptions(options.events ?? {});
    } catch (error) {
      throw new ConfigurationError((error as Error).message);
    }
    return new EventSubscription({
      ...tuning,
      connect: httpEventStreamConnector({ url: options.url, auth: options.auth, ...(options.ca === undefined ? {} : { ca: options.ca }) }),
      target: { purge: (keyName) => cache.purge(keyName), purgeAll: () => cache.purge() },
    });
  }
}

/**
 * A client for the Keyhold service. Without options, it is configured from the environment (`KEYHOLD_URL`,
 * `KEYHOLD_TOKEN_PATH`, …; see `clientOptionsFromEnv`).
 */
export function createClient(options: ClientOptions = clientOptionsFromEnv()): KeyholdClient {
  return new Client(options);
}
