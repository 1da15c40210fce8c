import * as nodeCrypto from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from 'jose';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.js';
import { KeyholdError } from '../errors.js';
import type { KubernetesAlgorithm, KubernetesIssuerConfig } from './auth-config.js';
import {
  AuthenticationFailedError,
  type AuthenticationFailure,
  type Authenticator,
  type Credentials,
} from './authenticator.js';
import { createIssuerKeys, SAFE_KID, type IssuerKeys } from './jwks.js';
import { DNS_LABEL, isSubdomainName, MAX_SUBDOMAIN_LENGTH } from './kubernetes-names.js';
import { LruCache } from './lru-cache.js';
import type { Principal } from '../context/principal.js';

/** RFC 7519 §4.1.4/§4.1.5 allow "some small leeway"; a minute absorbs clock skew between nodes and no more. */
export const CLOCK_TOLERANCE_SECONDS = 60;
const CLOCK_TOLERANCE_MS = CLOCK_TOLERANCE_SECONDS * 1000;
/** How many verified tokens are remembered unless the options say otherwise. */
export const DEFAULT_MAX_CACHED_TOKENS = 10_000;
/** Projected service-account tokens are about 1 KB; the HTTP layer refuses longer credentials before this. */
const MAX_TOKEN_LENGTH = 8192;

/**
 * A JWS compact serialisation (RFC 7515 §7.1): three base64url segments, the first a JSON object, which always
 * encodes as `eyJ`. The signature may be empty so that `alg: none` tokens are claimed, and refused, here rather
 * than passed on to the API-token authenticator.
 */
const JWS_COMPACT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
/** Namespaces are DNS-1123 labels and service-account names DNS-1123 subdomains (at most 253 characters). */
const SERVICE_ACCOUNT_SUBJECT = new RegExp(`^system:serviceaccount:(${DNS_LABEL}):(${DNS_LABEL}(?:\\.${DNS_LABEL})*)$`);
const POD_UID = /^[A-Za-z0-9-]{1,64}$/;

/**
 * The cache key of a token. One-shot `crypto.hash` (Node 20.12+) costs half of `createHash` for a 1 KB token, and
 * this runs on every request; older Node 20 releases fall back.
 */
const sha256: (text: string) => string =
  typeof nodeCrypto.hash === 'function'
    ? (text) => nodeCrypto.hash('sha256', text, 'base64')
    : (text) => nodeCrypto.createHash('sha256').update(text, 'utf8').digest('base64');

export interface KubernetesAuthenticatorOptions {
  readonly issuers: readonly KubernetesIssuerConfig[];
  readonly clock: Clock;
  readonly logger: Logger;
  /** How many verified tokens are remembered, least recently used first out. Default 10,000. */
  readonly maxCachedTokens?: number;
}

/** A configured issuer with its keys ready to ask. */
export interface TrustedIssuer {
  readonly config: KubernetesIssuerConfig;
  readonly keys: IssuerKeys;
}

interface CachedToken {
  readonly principal: Principal;
  /** `exp` in milliseconds: the entry is never used at or after it. */
  readonly expiresAt: number;
  /** `nbf` in milliseconds, or -Infinity. */
  readonly notBefore: number;
}

type Claims = Record<string, unknown>;

function isObject(value: unknown): value is Claims {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The `kubernetes.io` claim as the API server writes it; only string values are taken. */
function kubernetesClaim(payload: JWTPayload, path: readonly string[]): unknown {
  let value: unknown = payload['kubernetes.io'];
  for (const name of path) value = isObject(value) ? value[name] : undefined;
  return value;
}

/**
 * The principal a verified token names, or undefined when its subject is not a service account. The namespace and
 * name inside `kubernetes.io`, when present, must agree with `sub`.
 */
export function serviceAccountPrincipal(payload: JWTPayload, issuer: string): Principal | undefined {
  const match = typeof payload.sub === 'string' ? SERVICE_ACCOUNT_SUBJECT.exec(payload.sub) : null;
  const namespace = match?.[1];
  const serviceAccount = match?.[2];
  if (namespace === undefined || serviceAccount === undefined || serviceAccount.length > MAX_SUBDOMAIN_LENGTH) {
    return undefined;
  }
  const claimedNamespace = kubernetesClaim(payload, ['namespace']);
  const claimedName = kubernetesClaim(payload, ['serviceaccount', 'name']);
  if ((claimedNamespace !== undefined && claimedNamespace !== namespace) || (claimedName !== undefined && claimedName !== serviceAccount)) {
    return undefined;
  }
  const podName = kubernetesClaim(payload, ['pod', 'name']);
  const podUid = kubernetesClaim(payload, ['pod', 'uid']);
  const attributes: Record<string, string> = { namespace, serviceAccount };
  if (typeof podName === 'string' && isSubdomainName(podName)) attributes.podName = podName;
  if (typeof podUid === 'string' && POD_UID.test(podUid)) attributes.podUid = podUid;
  attributes.issuer = issuer;
  return Object.freeze({
    id: `k8s:${namespace}:${serviceAccount}`,
    type: 'kubernetes',
    admin: false,
    attributes: Object.freeze(attributes),
  });
}

/** Why jose refused a token, in our terms. Anything that is not a JOSE error is a bug and is not hidden as a 401. */
function failureOf(error: unknown): AuthenticationFailure | undefined {
  if (error instanceof errors.JWTExpired) return 'expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'nbf':
        return error.reason === 'check_failed' ? 'not-yet-valid' : 'malformed';
      case 'iss':
        return 'bad-issuer';
      case 'aud':
        return 'bad-audience';
      case 'sub':
        return 'bad-subject';
      default:
        return 'malformed';
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return 'bad-algorithm';
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'bad-signature';
  // Algorithms are checked before jose runs, so JOSENotSupported here is an unknown critical header (RFC 7515
  // §4.1.11): malformed, like every other JOSE error.
  if (error instanceof errors.JOSEError) return 'malformed';
  return undefined;
}

/**
 * Kubernetes projected service-account tokens (`Authorization: Bearer <JWT>`), verified against the keys of the
 * issuer their `iss` names. A verified token is remembered, by its SHA-256, until its `exp`, so that the hot path
 * answers from memory without a promise. Build it with {@link createKubernetesAuthenticator}.
 */
export class KubernetesAuthenticator implements Authenticator {
  readonly #issuers: ReadonlyMap<string, TrustedIssuer>;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #cache: LruCache<string, CachedToken>;
  /** Verifications under way, so that concurrent requests with one new token verify it once. */
  readonly #inflight = new Map<string, Promise<Principal>>();

  constructor(options: KubernetesAuthenticatorOptions, issuers: readonly TrustedIssuer[]) {
    this.#issuers = new Map(issuers.map((issuer) => [issuer.config.issuer, issuer]));
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#cache = new LruCache(options.maxCachedTokens ?? DEFAULT_MAX_CACHED_TOKENS);
  }

  /** JWS-shaped bearers only: API tokens (`kh_…`) fall through to the token authenticator. */
  applies(credentials: Credentials): boolean {
    const { bearer } = credentials;
    return bearer !== undefined && JWS_COMPACT.test(bearer);
  }

  authenticate(credentials: Credentials): Principal | Promise<Principal> {
    const token = credentials.bearer;
    if (token === undefined) throw new AuthenticationFailedError('missing');
    const digest = sha256(token);
    const cached = this.#cache.get(digest);
    if (cached !== undefined) {
      const now = this.#clock.now().getTime();
      if (now < cached.expiresAt && now >= cached.notBefore - CLOCK_TOLERANCE_MS) return cached.principal;
      // Out of its window: verified afresh, which applies the leeway and gives the precise reason.
      this.#cache.delete(digest);
    }
    let pending = this.#inflight.get(digest);
    if (pending === undefined) {
      pending = this.#verify(token, digest).finally(() => this.#inflight.delete(digest));
      this.#inflight.set(digest, pending);
    }
    return pending;
  }

  async #verify(token: string, digest: string): Promise<Principal> {
    if (token.length > MAX_TOKEN_LENGTH || !JWS_COMPACT.test(token)) throw this.#rejected('malformed', undefined);
    let header: ReturnType<typeof decodeProtectedHeader>;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw this.#rejected('malformed', undefined);
    }
    // The unverified `iss` only picks whose keys to try; verification then requires it again, byte for byte.
    const issuer = typeof unverified.iss === 'string' ? this.#issuers.get(unverified.iss) : undefined;
    if (issuer === undefined) throw this.#rejected('bad-issuer', undefined);
    const { alg, kid } = header;
    // Checked before any key is looked up, so a token with an algorithm the issuer does not use (none, HS256 with the
    // public key as secret, …) costs no fetch (RFC 8725 §3.1).
    if (typeof alg !== 'string' || !(issuer.config.algorithms as readonly string[]).includes(alg)) {
      throw this.#rejected('bad-algorithm', issuer);
    }
    if (kid !== undefined && (typeof kid !== 'string' || !SAFE_KID.test(kid))) throw this.#rejected('unknown-key', issuer);

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, () => issuer.keys.keyFor({ alg, kid }), {
        algorithms: issuer.config.algorithms as KubernetesAlgorithm[],
        issuer: issuer.config.issuer,
        audience: issuer.config.audiences as string[],
        requiredClaims: ['exp', 'sub'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate: this.#clock.now(),
      }));
    } catch (error) {
      // From the key lookup: unknown-key (401) or the issuer's keys being out of reach (503).
      if (error instanceof AuthenticationFailedError) throw this.#rejected(error.reason, issuer);
      if (error instanceof KeyholdError) throw error;
      const reason = failureOf(error);
      if (reason === undefined) {
        // Not a JOSE verdict: most likely a key from a remote key set that jose cannot use (an RSA key under 2048
        // bits throws a TypeError). The token is refused, not answered with a 500, and the cause is logged.
        this.#logger.warn({ err: error, issuer: issuer.config.issuer }, 'a service-account token could not be verified');
        throw this.#rejected('unknown-key', issuer);
      }
      throw this.#rejected(reason, issuer);
    }

    const principal = serviceAccountPrincipal(payload, issuer.config.issuer);
    if (principal === undefined) throw this.#rejected('bad-subject', issuer);
    const expiresAt = (payload.exp as number) * 1000;
    if (expiresAt > this.#clock.now().getTime()) {
      this.#cache.set(digest, {
        principal,
        expiresAt,
        notBefore: typeof payload.nbf === 'number' ? payload.nbf * 1000 : Number.NEGATIVE_INFINITY,
      });
    }
    return principal;
  }

  /** The error for a refused token; its reason is logged at debug level, the token never is. */
  #rejected(reason: AuthenticationFailure, issuer: TrustedIssuer | undefined): AuthenticationFailedError {
    this.#logger.debug({ reason, issuer: issuer?.config.issuer }, 'service-account token refused');
    return new AuthenticationFailedError(reason);
  }
}

/**
 * Builds the authenticator: reads and checks every key set file now, so a missing or invalid one fails start-up
 * with a StartupError; remote key sets are fetched when the first token of their issuer arrives.
 */
export async function createKubernetesAuthenticator(options: KubernetesAuthenticatorOptions): Promise<KubernetesAuthenticator> {
  const issuers: TrustedIssuer[] = [];
  for (const config of options.issuers) {
    issuers.push({ config, keys: await createIssuerKeys(config, { clock: options.clock, logger: options.logger }) });
  }
  options.logger.info(
    { issuers: options.issuers.map((issuer) => ({ issuer: issuer.issuer, keys: issuer.jwks.kind })) },
    'accepting Kubernetes service-account tokens',
  );
  return new KubernetesAuthenticator(options, issuers);
}
