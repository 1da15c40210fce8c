import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  importJWK,
  type CryptoKey,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWK,
  type RemoteJWKSet,
} from 'jose';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.js';
import { KeyholdError, StartupError, UnavailableError } from '../errors.js';
import type { KubernetesAlgorithm, KubernetesIssuerConfig } from './auth-config.js';
import { AuthenticationFailedError } from './authenticator.js';

/** Every fetch of a discovery document or a key set gives up after this long. */
export const FETCH_TIMEOUT_MS = 5000;
/** A key set or a discovery document is a few kilobytes; anything much larger is refused unread. */
export const MAX_FETCH_BYTES = 256 * 1024;
/** After a failed discovery, requests are answered 503 without asking the issuer again for this long. */
export const DISCOVERY_RETRY_MS = 5000;
/** A key whose `kid` does not match this can never be named by a token, which is held to the same rule. */
export const SAFE_KID = /^[A-Za-z0-9._~@:+=-]{1,128}$/;

/**
 * What a key is chosen by: the token's `alg` and `kid`, nothing else. `jku`, `x5u`, `x5c` and an embedded `jwk`
 * are never read, so a token cannot bring or point at its own key (RFC 8725 §3.10).
 */
export interface KeySelector {
  readonly alg: string;
  readonly kid: string | undefined;
}

/** An issuer's verification keys, from its configured source only. */
export interface IssuerKeys {
  /**
   * The key for a token. Rejects with {@link AuthenticationFailedError} `unknown-key` when the set has no single
   * usable key for it, and with {@link UnavailableError} when the set cannot be fetched: only the second is a 503.
   */
  keyFor(selector: KeySelector): Promise<CryptoKey>;
}

/** Which JWK can carry a key for each algorithm; the one table that maps algorithm ids to key types. */
const KEY_TYPES: Readonly<Record<KubernetesAlgorithm, { readonly kty: string; readonly crv?: string }>> = {
  RS256: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: 'P-256' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
};
/** RFC 7518 §3.3: RSA keys of 2048 bits or more. jose checks it at verification too; this fails start-up early. */
const MIN_RSA_BITS = 2048;

/** Errors of key selection: the set was read, but holds no one key for this token. */
function isSelectionError(error: unknown): boolean {
  return (
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys ||
    error instanceof errors.JWKInvalid ||
    error instanceof errors.JOSENotSupported
  );
}

function unknownKey(error: unknown): never {
  if (isSelectionError(error)) throw new AuthenticationFailedError('unknown-key');
  throw error;
}

/**
 * Key selection over a key set held in memory. Only `alg` and `kid` are handed to jose, so nothing else in the
 * token's header can influence which key verifies it.
 */
export function localKeyResolver(jwks: JSONWebKeySet): (selector: KeySelector) => Promise<CryptoKey> {
  const set = createLocalJWKSet(jwks);
  return (selector) => set({ alg: selector.alg, kid: selector.kid }).catch(unknownKey);
}

/** Whether jose would select this JWK for a token signed with `alg` (RFC 7517 §4.2, §4.3, §4.4). */
function usableFor(jwk: JWK, alg: KubernetesAlgorithm): boolean {
  const type = KEY_TYPES[alg];
  return (
    jwk.kty === type.kty &&
    (type.crv === undefined || jwk.crv === type.crv) &&
    (jwk.alg === undefined || jwk.alg === alg) &&
    (jwk.use === undefined || jwk.use === 'sig') &&
    (jwk.key_ops === undefined || (Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify')))
  );
}

/**
 * Checks a key set before it is trusted: public keys only, every key usable for a configured algorithm imports,
 * RSA keys are long enough, and at least one key can verify a token. Problems are returned, not thrown.
 */
async function checkKeySet(
  value: unknown,
  algorithms: readonly KubernetesAlgorithm[],
): Promise<{ jwks: JSONWebKeySet | undefined; problems: string[]; warnings: string[] }> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (typeof value !== 'object' || value === null || !Array.isArray(keys)) {
    return { jwks: undefined, problems: ['is not a JSON Web Key Set (an object with a "keys" array)'], warnings };
  }
  let usable = 0;
  const kids = new Set<unknown>();
  for (const [index, entry] of keys.entries()) {
    const name = `key ${index}${typeof entry?.kid === 'string' ? ` (kid ${JSON.stringify(entry.kid.slice(0, 128))})` : ''}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push(`${name} is not a JSON object`);
      continue;
    }
    const jwk = entry as JWK;
    // A private or symmetric key here means the wrong file was mounted; refuse rather than hold a secret.
    if (jwk.kty === 'oct' || 'd' in jwk || 'k' in jwk || 'p' in jwk) {
      problems.push(`${name} is a private or symmetric key; a key set for verification holds public keys only`);
      continue;
    }
    if (jwk.kid !== undefined && (typeof jwk.kid !== 'string' || !SAFE_KID.test(jwk.kid))) {
      warnings.push(`${name} has a kid no token can name (letters, digits and ._~@:+=- only, at most 128)`);
    }
    // jose refuses to choose between two keys that match one token, so such a token is refused.
    if (jwk.kid !== undefined && kids.has(jwk.kid)) {
      warnings.push(`${name} repeats a kid; a token naming it is refused if both keys suit its algorithm`);
    }
    kids.add(jwk.kid);
    for (const alg of algorithms.filter((candidate) => usableFor(jwk, candidate))) {
      try {
        const key = (await importJWK(jwk, alg)) as CryptoKey;
        const bits = (key.algorithm as { modulusLength?: number }).modulusLength;
        if (bits !== undefined && bits < MIN_RSA_BITS) {
          problems.push(`${name} is a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`);
          continue;
        }
        usable += 1;
      } catch (error) {
        problems.push(`${name} is not a valid ${alg} key: ${(error as Error).message}`);
      }
    }
  }
  if (problems.length === 0 && usable === 0) {
    problems.push(`has no key usable for ${algorithms.join(', ')}`);
  }
  if (problems.length > 0) return { jwks: undefined, problems, warnings };
  try {
    createLocalJWKSet(value as JSONWebKeySet);
  } catch (error) {
    return { jwks: undefined, problems: [(error as Error).message], warnings };
  }
  return { jwks: value as JSONWebKeySet, problems, warnings };
}

/** Reads and checks a key set file once, at start-up; any problem is a {@link StartupError}. */
export async function loadKeySetFile(
  path: string,
  algorithms: readonly KubernetesAlgorithm[],
  logger: Logger,
): Promise<IssuerKeys> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new StartupError(
      code === undefined ? `The key set ${path} is not valid JSON` : `Cannot read the key set ${path}: ${code}`,
    );
  }
  const { jwks, problems, warnings } = await checkKeySet(value, algorithms);
  for (const warning of warnings) logger.warn(`the key set ${path}: ${warning}`);
  if (jwks === undefined) throw new StartupError(`The key set ${path} is not valid:\n  - ${problems.join('\n  - ')}`);
  return { keyFor: localKeyResolver(jwks) };
}

function readStartupFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new StartupError(`Cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

interface FetchSettings {
  /** Replaces the default trust store for `https:` fetches (the cluster CA inside Kubernetes). */
  readonly ca: Buffer | undefined;
  readonly bearerTokenFile: string | undefined;
  /** The bearer token is sent to this origin only, so a key set hosted elsewhere never receives it. */
  readonly bearerOrigin: string;
}

/**
 * A fetch for jose's `customFetch`: Node's global fetch cannot take a custom CA without undici's dispatcher, which
 * is not a dependency. It follows no redirects, reads at most {@link MAX_FETCH_BYTES}, rereads the bearer token
 * file on every fetch (the kubelet rotates projected tokens), and is bounded by the caller's abort signal.
 */
export function boundedFetch(settings: FetchSettings): FetchImplementation {
  return (url, init) =>
    new Promise<Response>((resolve, reject) => {
      let settled = false;
      const fail = (error: Error): void => {
        if (settled) return;
        settled = true;
        reject(error);
      };
      const target = new URL(url);
      const where = `${target.origin}${target.pathname}`;
      if (target.protocol !== 'https:' && target.protocol !== 'http:') {
        fail(new Error(`${where}: only http and https URLs are fetched`));
        return;
      }
      const headers: Record<string, string> = {};
      init.headers.forEach((value, name) => {
        headers[name] = value;
      });
      if (settings.bearerTokenFile !== undefined && target.origin === settings.bearerOrigin) {
        try {
          headers.authorization = `Bearer ${readFileSync(settings.bearerTokenFile, 'utf8').trim()}`;
        } catch (error) {
          fail(new Error(`cannot read the bearer token file: ${(error as NodeJS.ErrnoException).code ?? 'error'}`));
          return;
        }
      }
      const options: https.RequestOptions = { method: 'GET', headers, signal: init.signal };
      if (target.protocol === 'https:' && settings.ca !== undefined) options.ca = settings.ca;
      const request = (target.protocol === 'https:' ? https : http).request(target, options);
      request.on('error', fail);
      request.on('response', (response) => {
        response.on('error', fail);
        if (response.statusCode !== 200) {
          fail(new Error(`${where} answered HTTP ${response.statusCode ?? '?'}`));
          request.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_FETCH_BYTES) {
            fail(new Error(`${where} answered more than ${MAX_FETCH_BYTES} bytes`));
            request.destroy();
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => {
          if (settled) return;
          settled = true;
          const contentType = response.headers['content-type'] ?? 'application/json';
          resolve(new Response(Buffer.concat(chunks).toString('utf8'), { status: 200, headers: { 'content-type': contentType } }));
        });
        response.on('close', () => {
          if (!response.complete) fail(new Error(`${where}: the response was cut short`));
        });
      });
      request.end();
    });
}

/** OpenID Connect Discovery 1.0 §4: the issuer without a trailing slash, then the well-known path. */
export function discoveryUrl(issuer: string): URL {
  return new URL(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
}

async function discoverKeySetUrl(issuer: string, fetchImpl: FetchImplementation): Promise<URL> {
  const response = await fetchImpl(discoveryUrl(issuer).href, {
    method: 'GET',
    redirect: 'manual',
    headers: new Headers({ accept: 'application/json' }),
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  const document = (await response.json()) as { issuer?: unknown; jwks_uri?: unknown } | null;
  // OpenID Connect Discovery 1.0 §4.3: the document's issuer must be identical to the one it was fetched for.
  if (document?.issuer !== issuer) throw new Error('the discovery document names a different issuer');
  if (typeof document.jwks_uri !== 'string') throw new Error('the discovery document has no jwks_uri');
  let url: URL;
  try {
    url = new URL(document.jwks_uri);
  } catch {
    throw new Error('the discovery document has an invalid jwks_uri');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('the jwks_uri is not an http(s) URL');
  // An issuer reached over TLS must not hand its keys out over plain HTTP.
  if (new URL(issuer).protocol === 'https:' && url.protocol !== 'https:') throw new Error('the jwks_uri is not https');
  return url;
}

/**
 * Keys fetched over the network, from `jwksUri` or from the `jwks_uri` of the issuer's discovery document, which is
 * read on first use. jose's remote set caches the keys (10 minutes), refetches on an unknown `kid` at most every
 * 30 seconds, and shares one fetch among concurrent callers.
 */
class RemoteIssuerKeys implements IssuerKeys {
  readonly #issuer: string;
  readonly #fetch: FetchImplementation;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #set: RemoteJWKSet | undefined;
  #discovery: Promise<RemoteJWKSet> | undefined;
  #discoveryFailedAt = Number.NEGATIVE_INFINITY;

  constructor(issuer: string, jwksUrl: URL | undefined, fetchImpl: FetchImplementation, clock: Clock, logger: Logger) {
    this.#issuer = issuer;
    this.#fetch = fetchImpl;
    this.#clock = clock;
    this.#logger = logger;
    if (jwksUrl !== undefined) this.#set = this.#remoteSet(jwksUrl);
  }

  async keyFor(selector: KeySelector): Promise<CryptoKey> {
    const set = this.#set ?? (await this.#discover());
    try {
      return await set({ alg: selector.alg, kid: selector.kid });
    } catch (error) {
      if (isSelectionError(error)) return unknownKey(error);
      throw this.#unavailable('cannot fetch the issuer key set', error);
    }
  }

  #remoteSet(url: URL): RemoteJWKSet {
    return createRemoteJWKSet(url, { timeoutDuration: FETCH_TIMEOUT_MS, [customFetch]: this.#fetch });
  }

  #discover(): Promise<RemoteJWKSet> {
    if (this.#discovery !== undefined) return this.#discovery;
    if (this.#clock.now().getTime() - this.#discoveryFailedAt < DISCOVERY_RETRY_MS) {
      return Promise.reject(new UnavailableError('The issuer keys are unavailable; retry later'));
    }
    const discovery = discoverKeySetUrl(this.#issuer, this.#fetch).then(
      (url) => {
        this.#set = this.#remoteSet(url);
        return this.#set;
      },
      (error: unknown) => {
        this.#discovery = undefined;
        this.#discoveryFailedAt = this.#clock.now().getTime();
        throw this.#unavailable('OpenID discovery failed', error);
      },
    );
    this.#discovery = discovery;
    return discovery;
  }

  #unavailable(what: string, error: unknown): KeyholdError {
    if (error instanceof KeyholdError) return error;
    this.#logger.warn({ issuer: this.#issuer, err: error }, what);
    return new UnavailableError('The issuer keys are unavailable; retry later', { cause: error });
  }
}

/**
 * The keys of one configured issuer. A key set file is read and checked now; `jwksUri` and discovery are fetched
 * when the first token of that issuer arrives. Unreadable files and unusable URLs fail start-up.
 */
export async function createIssuerKeys(
  issuer: KubernetesIssuerConfig,
  deps: { readonly clock: Clock; readonly logger: Logger },
): Promise<IssuerKeys> {
  const { jwks } = issuer;
  if (jwks.kind === 'file') return loadKeySetFile(jwks.path, issuer.algorithms, deps.logger);
  let target: URL;
  try {
    target = jwks.kind === 'uri' ? new URL(jwks.uri) : discoveryUrl(issuer.issuer);
  } catch {
    throw new StartupError(
      jwks.kind === 'uri'
        ? `The jwksUri of issuer ${JSON.stringify(issuer.issuer)} is not a URL`
        : `Issuer ${JSON.stringify(issuer.issuer)} uses discovery, so it must be an http(s) URL`,
    );
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') {
    throw new StartupError(`The keys of issuer ${JSON.stringify(issuer.issuer)} must be fetched over http(s)`);
  }
  if (target.protocol === 'http:') {
    deps.logger.warn({ issuer: issuer.issuer }, 'the issuer keys are fetched over plain HTTP; anyone on the path can forge tokens');
  }
  const ca = issuer.caFile === undefined ? undefined : readStartupFile(issuer.caFile, 'CA file');
  if (issuer.bearerTokenFile !== undefined) readStartupFile(issuer.bearerTokenFile, 'bearer token file');
  const fetchImpl = boundedFetch({ ca, bearerTokenFile: issuer.bearerTokenFile, bearerOrigin: target.origin });
  return new RemoteIssuerKeys(issuer.issuer, jwks.kind === 'uri' ? target : undefined, fetchImpl, deps.clock, deps.logger);
}
