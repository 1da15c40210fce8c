import { X509Certificate } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { createSecureContext, type SecureContext } from 'node:tls';
import { urlToHttpOptions } from 'node:url';
import type { AuthProvider, Credentials, TlsIdentity } from '../auth/auth-provider.js';
import {
  ClientClosedError,
  ConfigurationError,
  CredentialsError,
  DeadlineExceededError,
  InvalidArgumentError,
  KeyholdSdkError,
  sdkCodeForService,
  ServiceError,
} from '../errors.js';
import { isRetryableNetworkError, isRetryableStatus, parseRetryAfter, runWithRetries, type AttemptResult } from './retry.js';

/** The product token every request carries, so the service's logs tell SDK traffic and its version apart. */
export const SDK_USER_AGENT = 'keyhold-sdk/0.1.0';

/**
 * Asks the service to answer only from state that includes the named change sequence: a replica that has not
 * applied it yet catches up first, or answers 503 (which is retried).
 */
export const MIN_CHANGE_HEADER = 'keyhold-min-change';

/**
 * The largest answer the transport reads (1 MiB). Every answer of the service is far smaller (a batch of data keys
 * included); anything larger is a misrouted request or a hostile peer, and is refused instead of buffered.
 */
export const MAX_RESPONSE_BYTES = 1024 * 1024;

/** Per-call options. */
export interface RequestOptions {
  /**
   * Cancels the call. The call then rejects with `signal.reason`, as `fetch` does: the caller chose to stop and gets
   * back its own reason, not an SDK error.
   */
  readonly signal?: AbortSignal;
  /** The call's deadline over all attempts, in milliseconds; defaults to the transport's `timeoutMs`. */
  readonly timeoutMs?: number;
}

/** How requests reach the service. */
export interface Transport {
  /**
   * JSON request → parsed JSON answer, with retries and a deadline. Throws only the SDK's errors (sdk/src/errors.ts),
   * except when `options.signal` aborts the call: then it rejects with the signal's reason.
   */
  request<T>(method: 'GET' | 'POST', path: string, body?: unknown, options?: RequestOptions): Promise<T>;
  /** Ends every call in flight with {@link ClientClosedError}, refuses new ones and closes the connections. */
  close(): Promise<void>;
}

/** How failed attempts are repeated (full-jitter exponential backoff; `planRetry` in retry.ts has the rules). */
export interface RetryOptions {
  /** Attempts after the first; 0 disables retries. */
  readonly retries: number;
  /** The backoff ceiling of the first retry, doubled for each later one. */
  readonly baseDelayMs: number;
  /** The largest backoff ceiling. */
  readonly maxDelayMs: number;
}

/** The options of {@link createHttpTransport}. */
export interface HttpTransportOptions {
  /** The service's base URL, `http:` or `https:`; a path is kept as a prefix of every request path. */
  readonly url: string | URL;
  /** Supplies the headers and TLS identity of each attempt. */
  readonly auth: AuthProvider;
  /** The default deadline of a call over all its attempts, in milliseconds. */
  readonly timeoutMs: number;
  readonly retry: RetryOptions;
  /** PEM of a private CA that issued the service's certificate; trusted alongside a TLS identity's own bundle. */
  readonly ca?: string | Buffer;
  /** A draw from [0, 1) for the backoff jitter; for tests. */
  readonly random?: () => number;
  /** Waits `ms`, rejecting when `signal` aborts; for tests. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** The time in epoch milliseconds; it must be wall-clock time, since `Retry-After` may be a date. For tests. */
  readonly now?: () => number;
  /** The application's own product token, sent before {@link SDK_USER_AGENT}. */
  readonly userAgent?: string;
  /**
   * The change sequence (decimal) every attempt must see applied, sent as {@link MIN_CHANGE_HEADER} when defined;
   * read per attempt, so a retry carries the latest. The client passes the last one its event subscription saw.
   */
  readonly minChange?: () => string | undefined;
}

/** An answer, read in full. */
interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** Connections that share one TLS identity. */
interface Pool {
  readonly key: PoolKey;
  readonly agent: http.Agent;
  inFlight: number;
}

type PoolKey = number | 'no-identity';

/** Why a call's deadline timer aborted an attempt; never leaves this module. */
class DeadlineReached extends Error {}

// setTimeout() fires at once for delays above 2^31 - 1 ms, which would turn a huge timeout into none.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const SERVICE_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
/** What node:http sends unescaped in a request target. */
const REQUEST_PATH = /^[\x21-\x7e]+$/;
const JSON_MEDIA_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;
const PROBLEM_MEDIA_TYPE = /^application\/problem\+json$/i;
/** The service's own codes; a `detail` is kept only beside one of them. */
const KEYHOLD_SERVICE_CODE = /^KH_ERR_[A-Z0-9_]{1,56}$/;
/** Printable text of a bounded length: the service's details are one short sentence. */
const PROBLEM_DETAIL = /^[^\p{Cc}]{1,1024}$/u;

/** `{ cause }` only when there is one. */
function causeOf(error: unknown): ErrorOptions | undefined {
  return error === undefined ? undefined : { cause: error };
}

function isPositiveTimeout(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= MAX_TIMEOUT_MS;
}

function isNonNegative(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function parseBaseUrl(url: string | URL): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    // The URL is not echoed: a mistyped one may hold a password.
    throw new ConfigurationError('The service URL is not a valid URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new ConfigurationError('The service URL must use https: or http:');
  }
  // node:http would turn user:password@ into a Basic authorization header next to ours.
  if (parsed.username !== '' || parsed.password !== '') {
    throw new ConfigurationError('The service URL must not hold a user name or password');
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new ConfigurationError('The service URL must not have a query or a fragment');
  }
  return parsed;
}

function validateOptions(options: HttpTransportOptions): URL {
  if (typeof options !== 'object' || options === null) throw new ConfigurationError('The transport options are missing');
  const url = parseBaseUrl(options.url);
  if (typeof options.auth?.credentials !== 'function' || typeof options.auth.invalidate !== 'function') {
    throw new ConfigurationError('auth must be an AuthProvider');
  }
  if (!isPositiveTimeout(options.timeoutMs)) {
    throw new ConfigurationError(`timeoutMs must be a number of milliseconds between 1 and ${MAX_TIMEOUT_MS}`);
  }
  const retry = options.retry;
  if (typeof retry !== 'object' || retry === null) throw new ConfigurationError('retry options are missing');
  if (!Number.isSafeInteger(retry.retries) || retry.retries < 0) throw new ConfigurationError('retry.retries must be an integer of 0 or more');
  if (!isNonNegative(retry.baseDelayMs)) throw new ConfigurationError('retry.baseDelayMs must be a number of 0 or more');
  if (!isNonNegative(retry.maxDelayMs)) throw new ConfigurationError('retry.maxDelayMs must be a number of 0 or more');
  if (options.minChange !== undefined && typeof options.minChange !== 'function') throw new ConfigurationError('minChange must be a function');
  if (options.userAgent !== undefined && (typeof options.userAgent !== 'string' || !PRINTABLE_ASCII.test(options.userAgent))) {
    throw new ConfigurationError('userAgent must be printable ASCII');
  }
  if (options.ca !== undefined) {
    // A CA for a plain-HTTP URL means the scheme is wrong, and credentials would cross the network in clear.
    if (url.protocol !== 'https:') throw new ConfigurationError('ca is set but the service URL is not https:');
    try {
      // OpenSSL skips text that is not PEM without complaint, so the first certificate is parsed on its own.
      new X509Certificate(options.ca);
      createSecureContext({ ca: options.ca });
    } catch {
      throw new ConfigurationError('ca is not a PEM certificate');
    }
  }
  return url;
}

/** Resolves or rejects with `promise`, or rejects with the signal's reason as soon as it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** A controller that aborts, with the same reason, when any of `parents` does. `dispose` unhooks it. */
function childController(...parents: ReadonlyArray<AbortSignal | undefined>): { controller: AbortController; dispose: () => void } {
  const controller = new AbortController();
  const unhooks: Array<() => void> = [];
  for (const parent of parents) {
    if (parent === undefined) continue;
    if (parent.aborted) {
      controller.abort(parent.reason);
      break;
    }
    const onAbort = (): void => controller.abort(parent.reason);
    parent.addEventListener('abort', onAbort, { once: true });
    unhooks.push(() => parent.removeEventListener('abort', onAbort));
  }
  return { controller, dispose: () => unhooks.forEach((unhook) => unhook()) };
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function mediaTypeOf(answer: Answer): string | undefined {
  return firstHeader(answer.headers['content-type'])?.split(';')[0]?.trim();
}

function isJsonAnswer(answer: Answer): boolean {
  const mediaType = mediaTypeOf(answer);
  return mediaType !== undefined && JSON_MEDIA_TYPE.test(mediaType);
}

/** The service sets `x-request-id` on every answer, problem or not. */
function requestIdHeader(answer: Answer): string | undefined {
  const value = firstHeader(answer.headers['x-request-id']);
  return value !== undefined && REQUEST_ID.test(value) ? value : undefined;
}

/**
 * The parts of a problem document (RFC 9457) that are safe to repeat: the service's code and request id, when they
 * look like one, and its `detail`, which the service writes without request data (never plaintext, key material
 * or a credential). A proxy in the way may echo the request, body and all, so `detail` is kept only from an
 * `application/problem+json` answer with a Keyhold code (`KH_ERR_…`), and only when it is one line of printable text.
 */
function problemOf(answer: Answer): { serviceCode?: string; requestId?: string; detail?: string } {
  let requestId = requestIdHeader(answer);
  let serviceCode: string | undefined;
  let detail: string | undefined;
  if (answer.body.length > 0 && isJsonAnswer(answer)) {
    try {
      const body = JSON.parse(answer.body.toString('utf8')) as unknown;
      if (typeof body === 'object' && body !== null) {
        const { code, requestId: bodyId, detail: bodyDetail } = body as { code?: unknown; requestId?: unknown; detail?: unknown };
        if (typeof code === 'string' && SERVICE_CODE.test(code)) serviceCode = code;
        if (typeof bodyId === 'string' && REQUEST_ID.test(bodyId)) requestId = bodyId;
        const fromService = PROBLEM_MEDIA_TYPE.test(mediaTypeOf(answer) ?? '') && KEYHOLD_SERVICE_CODE.test(serviceCode ?? '');
        if (fromService && typeof bodyDetail === 'string' && PROBLEM_DETAIL.test(bodyDetail)) detail = bodyDetail;
      }
    } catch {
      // Not a problem document after all: the status alone must do.
    }
  }
  return { serviceCode, requestId, detail };
}

function answerTooLarge(status: number): ServiceError {
  return new ServiceError('KH_SDK_SERVICE_ERROR', { status }, `The service's answer is larger than ${MAX_RESPONSE_BYTES} bytes (HTTP ${status})`);
}

/** A connection that closed before its answer was complete; retried like a reset. */
function truncatedAnswer(): Error {
  return Object.assign(new Error('The connection closed before the answer was complete'), { code: 'ECONNRESET' });
}

/** Sends one request and reads its answer in full, up to {@link MAX_RESPONSE_BYTES}. */
function send(
  target: http.RequestOptions,
  agent: http.Agent,
  headers: Record<string, string>,
  payload: Buffer | undefined,
  signal: AbortSignal,
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    signal.throwIfAborted();
    let request: http.ClientRequest;
    try {
      request = (target.protocol === 'https:' ? https : http).request({ ...target, agent, headers });
    } catch {
      // node:http checks header names and values here. Its message names the header only, but a credential is
      // involved, so nothing of it is kept.
      reject(new CredentialsError('The credentials hold a header that is not valid'));
      return;
    }
    const onAbort = (): void => {
      request.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const fail = (error: unknown): void => {
      signal.removeEventListener('abort', onAbort);
      reject(error);
    };
    request.on('error', fail);
    request.on('response', (response) => {
      const status = response.statusCode ?? 0;
      const refuse = (): void => {
        // Destroying the socket is the only way to stop a peer that keeps sending; it is not reused.
        response.destroy();
        request.destroy();
        fail(answerTooLarge(status));
      };
      if (Number(firstHeader(response.headers['content-length']) ?? 0) > MAX_RESPONSE_BYTES) {
        refuse();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) refuse();
        else chunks.push(chunk);
      });
      response.on('error', fail);
      response.on('end', () => {
        signal.removeEventListener('abort', onAbort);
        resolve({ status, headers: response.headers, body: Buffer.concat(chunks, size) });
      });
      response.on('close', () => {
        if (!response.complete) fail(truncatedAnswer());
      });
    });
    request.end(payload);
  });
}

/**
 * A transport over node:http and node:https with keep-alive connections.
 *
 * Connections are pooled per TLS identity: when the auth provider's identity changes generation (SPIRE rotated the
 * SVID), new connections are opened with the new certificate, because a TLS connection keeps the certificate it
 * was opened with, and the old pool is destroyed once its last request is done.
 *
 * A call's deadline (`timeoutMs`) covers every attempt, backoff and credential read. A 401 invalidates the
 * credentials and is retried once at once, since a rotated token or SVID is the usual cause. 429, 5xx and network
 * failures are retried with full-jitter backoff that honours `Retry-After`; any other answer is final.
 *
 * Errors carry the status, the service's code, request id and problem detail, never a body, a header or a
 * credential: bodies hold plaintext and key material.
 */
export function createHttpTransport(options: HttpTransportOptions): Transport {
  const baseUrl = validateOptions(options);
  const auth = options.auth;
  const policy = Object.freeze({ ...options.retry });
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number, signal?: AbortSignal) => sleepFor(ms, undefined, { signal }));
  const userAgent = options.userAgent === undefined || options.userAgent === '' ? SDK_USER_AGENT : `${options.userAgent} ${SDK_USER_AGENT}`;
  const basePath = baseUrl.pathname.replace(/\/+$/, '');
  const { protocol, hostname, port } = urlToHttpOptions(baseUrl);
  const origin: http.RequestOptions = { protocol, hostname, port };
  const isHttps = baseUrl.protocol === 'https:';

  let closed = false;
  const closing = new AbortController();
  // Every call in flight listens to this signal; without this, Node warns of a leak past ten concurrent calls.
  setMaxListeners(0, closing.signal);
  const pools = new Map<PoolKey, Pool>();
  let currentKey: PoolKey | undefined;

  function createAgent(identity: TlsIdentity | undefined): http.Agent {
    if (!isHttps) {
      if (identity !== undefined) throw new ConfigurationError('Mutual TLS credentials need an https: service URL');
      return new http.Agent({ keepAlive: true });
    }
    const ca = [options.ca, identity?.ca].filter((pem): pem is string | Buffer => pem !== undefined && pem.length > 0);
    let secureContext: SecureContext;
    try {
      // One context per identity, parsed once here instead of at every new connection.
      secureContext = createSecureContext({
        ...(ca.length > 0 ? { ca } : {}),
        ...(identity !== undefined ? { cert: identity.cert, key: identity.key } : {}),
      });
    } catch {
      // OpenSSL's message is dropped, since the key is part of what failed to parse.
      throw new CredentialsError('The TLS identity could not be used (certificate, key or bundle)');
    }
    return new https.Agent({ keepAlive: true, secureContext });
  }

  function destroyIfRetired(pool: Pool): void {
    if (pool.inFlight === 0 && pool.key !== currentKey) {
      pools.delete(pool.key);
      pool.agent.destroy();
    }
  }

  /**
   * The pool for an identity; a new identity becomes the current one and retires the previous pool. A request that
   * still holds credentials of an older, retired generation gets that generation's pool back, or a new one, and
   * the pools settle again on the next call.
   */
  function acquire(identity: TlsIdentity | undefined): Pool {
    if (closed) throw new ClientClosedError();
    const key: PoolKey = identity === undefined ? 'no-identity' : identity.generation;
    let pool = pools.get(key);
    if (pool === undefined) {
      pool = { key, agent: createAgent(identity), inFlight: 0 };
      pools.set(key, pool);
      const previous = currentKey === undefined ? undefined : pools.get(currentKey);
      currentKey = key;
      if (previous !== undefined) destroyIfRetired(previous);
    }
    pool.inFlight += 1;
    return pool;
  }

  function release(pool: Pool): void {
    pool.inFlight -= 1;
    destroyIfRetired(pool);
  }

  async function credentials(signal: AbortSignal): Promise<Credentials> {
    try {
      // Through a promise, so that a provider that throws instead of rejecting is caught the same way.
      return await abortable(Promise.resolve().then(() => auth.credentials()), signal);
    } catch (error) {
      if (signal.aborted || error instanceof KeyholdSdkError) throw error;
      throw new CredentialsError('The auth provider failed to supply credentials', { cause: error });
    }
  }

  function headersFor(given: Credentials, payload: Buffer | undefined, method: 'GET' | 'POST'): Record<string, string> {
    const headers: Record<string, string> = { ...given.headers, accept: 'application/json', 'user-agent': userAgent };
    const minChange = options.minChange?.();
    if (minChange !== undefined) headers[MIN_CHANGE_HEADER] = minChange;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    } else if (method === 'POST') {
      // An explicit empty body, so that no proxy waits for one; the service reads it as `{}`.
      headers['content-length'] = '0';
    }
    return headers;
  }

  async function exchange(target: http.RequestOptions, payload: Buffer | undefined, signal: AbortSignal): Promise<Answer> {
    const given = await credentials(signal);
    const pool = acquire(given.tls);
    try {
      return await send(target, pool.agent, headersFor(given, payload, target.method as 'GET' | 'POST'), payload, signal);
    } finally {
      release(pool);
    }
  }

  function interpret<T>(answer: Answer): AttemptResult<T> {
    const { status } = answer;
    if (status >= 200 && status <= 299) {
      // 204 and friends: nothing to parse.
      if (answer.body.length === 0) return { ok: true, value: undefined as T };
      const notJson = (): ServiceError =>
        new ServiceError('KH_SDK_SERVICE_ERROR', { status, requestId: requestIdHeader(answer) }, `The service's answer is not JSON (HTTP ${status})`);
      if (!isJsonAnswer(answer)) throw notJson();
      try {
        return { ok: true, value: JSON.parse(answer.body.toString('utf8')) as T };
      } catch {
        throw notJson();
      }
    }
    const { serviceCode, requestId, detail } = problemOf(answer);
    const error = new ServiceError(sdkCodeForService(status, serviceCode), { status, serviceCode, requestId, detail });
    if (!isRetryableStatus(status)) throw error;
    return { ok: false, error, retryable: true, retryAfterMs: parseRetryAfter(answer.headers['retry-after'], now()) };
  }

  function serialise(body: unknown): Buffer | undefined {
    if (body === undefined) return undefined;
    let text: string | undefined;
    try {
      text = JSON.stringify(body);
    } catch {
      // The engine's message may quote part of the body.
      throw new InvalidArgumentError('The request body cannot be serialised as JSON');
    }
    if (text === undefined) throw new InvalidArgumentError('The request body cannot be serialised as JSON');
    return Buffer.from(text, 'utf8');
  }

  async function request<T>(method: 'GET' | 'POST', path: string, body?: unknown, requestOptions: RequestOptions = {}): Promise<T> {
    if (closed) throw new ClientClosedError();
    const callerSignal = requestOptions.signal;
    callerSignal?.throwIfAborted();
    if (method !== 'GET' && method !== 'POST') throw new InvalidArgumentError('The method must be GET or POST');
    if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//')) {
      throw new InvalidArgumentError('The request path must start with a single /');
    }
    if (!REQUEST_PATH.test(path)) throw new InvalidArgumentError('The request path holds characters that must be percent-encoded');
    if (method === 'GET' && body !== undefined) throw new InvalidArgumentError('A GET request has no body');
    const timeoutMs = requestOptions.timeoutMs ?? options.timeoutMs;
    if (!isPositiveTimeout(timeoutMs)) {
      throw new InvalidArgumentError(`timeoutMs must be a number of milliseconds between 1 and ${MAX_TIMEOUT_MS}`);
    }
    const payload = serialise(body);
    // The path is sent as given: parsing it as a URL would resolve dot segments that a caller percent-encoded.
    const target: http.RequestOptions = { ...origin, method, path: basePath + path };
    const deadlineMs = now() + timeoutMs;
    const call = childController(callerSignal, closing.signal);
    let reauthenticated = false;
    let lastFailure: unknown;

    const attempt = async (): Promise<AttemptResult<T>> => {
      const remainingMs = Math.max(1, deadlineMs - now());
      const current = childController(call.controller.signal);
      const timer = setTimeout(() => current.controller.abort(new DeadlineReached()), remainingMs);
      try {
        let answer = await exchange(target, payload, current.controller.signal);
        if (answer.status === 401 && !reauthenticated) {
          // A token the kubelet just rotated, or an SVID SPIRE just renewed: read the source again and retry once,
          // at once, since waiting will not make the old credential valid.
          reauthenticated = true;
          auth.invalidate();
          answer = await exchange(target, payload, current.controller.signal);
        }
        const result = interpret<T>(answer);
        if (!result.ok) lastFailure = result.error;
        return result;
      } catch (error) {
        const signal = current.controller.signal;
        if (signal.aborted) {
          if (signal.reason instanceof DeadlineReached) throw new DeadlineExceededError(timeoutMs, causeOf(lastFailure));
          throw signal.reason;
        }
        if (error instanceof KeyholdSdkError) throw error;
        lastFailure = error;
        return { ok: false, error, retryable: isRetryableNetworkError(error) };
      } finally {
        clearTimeout(timer);
        current.dispose();
      }
    };

    try {
      return await runWithRetries<T>(attempt, {
        policy,
        deadlineMs,
        timeoutMs,
        random,
        now,
        sleep: (ms, signal) => abortable(sleep(ms, signal), signal ?? call.controller.signal),
        signal: call.controller.signal,
      });
    } catch (error) {
      // Whatever an abort left behind (a destroyed socket, a rejected sleep), the caller learns why it stopped.
      if (closed) throw new ClientClosedError();
      if (callerSignal?.aborted) throw callerSignal.reason;
      throw error;
    } finally {
      call.dispose();
    }
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    closing.abort(new ClientClosedError());
    for (const pool of pools.values()) pool.agent.destroy();
    pools.clear();
    currentKey = undefined;
  }

  return Object.freeze({ request, close });
}
