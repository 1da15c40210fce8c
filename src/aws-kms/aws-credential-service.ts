import { randomBytes } from 'node:crypto';
import type { Caller } from '../context/caller.js';
import type { Principal } from '../context/principal.js';
import { KeyholdError } from '../errors.js';
import type { Clock } from '../lib/clock.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { RootKey } from '../root-keys/root-key.js';
import { awsCredentialWrapAad } from '../root-keys/root-keyring.js';
import type {
  AwsCredentialCursor,
  AwsCredentialRecord,
  AwsCredentialRepository,
  StoredAwsCredential,
} from './aws-credential-repository.js';
import { boundToCaller, parsePrincipalId } from './bound-principal.js';
import type { SigningCredential, SigningCredentialSource } from './signing-credential.js';

/** Keyhold's access key ids: `KHAK` and 16 base32 characters (80 random bits), 20 in all as AWS's are. */
const ACCESS_KEY_PREFIX = 'KHAK';
export const ACCESS_KEY_ID = /^KHAK[A-Z2-7]{16}$/;
const ACCESS_KEY_RANDOM_BYTES = 10;
/** AWS's shape: 40 base64 characters. */
const SECRET_BYTES = 30;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const MAX_CACHED_CREDENTIALS = 10_000;
/**
 * Lookups that found no live key, kept apart and fewer: anyone can send well-formed made-up ids before any signature
 * is checked, and those must never push live keys out of the cache.
 */
const MAX_CACHED_MISSES = 1_000;

/** An access key as issued: the record and its secret, which is shown this once and never again. */
export interface IssuedAwsCredential extends AwsCredentialRecord {
  readonly secretAccessKey: string;
}

export interface AwsCredentialServiceOptions {
  readonly repository: AwsCredentialRepository;
  /** Wraps each secret at rest; unwraps it under the root key recorded beside it. */
  readonly rootKey: RootKey;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
  /** How long a lookup is trusted before the store is asked again (revocation on other replicas). */
  readonly cacheTtlMs: number;
}

interface CacheEntry {
  /** Undefined for an access key that is unknown or revoked: neither comes back. */
  readonly credential: SigningCredential | undefined;
  readonly expiresAt: number | null;
  readonly trustedUntil: number;
}

/** RFC 4648 §6 base32, without padding: 10 bytes make 16 characters. */
function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

function isLive(credential: { readonly expiresAt: number | null }, now: number): boolean {
  return credential.expiresAt === null || credential.expiresAt > now;
}

function recordOf(stored: StoredAwsCredential): AwsCredentialRecord {
  const { rootKeyId: _rootKeyId, wrappedSecret: _wrapped, ...record } = stored;
  return record;
}

/**
 * Issues, lists and revokes AWS access keys, each bound to a principal, and finds the live key a SigV4 request was
 * signed with. A key is never an admin: policies always apply to what it signs.
 */
export class AwsCredentialService implements SigningCredentialSource {
  readonly #repository: AwsCredentialRepository;
  readonly #rootKey: RootKey;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;
  readonly #cacheTtlMs: number;
  /** Lookups by access key id, each trusted for the cache TTL: those that found a live key, and those that did not. */
  readonly #cache = new Map<string, CacheEntry>();
  readonly #misses = new Map<string, CacheEntry>();
  /** Lookups under way, so concurrent requests signed with one key read the store once. */
  readonly #inflight = new Map<string, Promise<CacheEntry>>();
  /** Lookups answered from memory and those that went to the store. */
  readonly cacheStats = { hits: 0, misses: 0 };
  /** Bumped by every revocation or drop, so a lookup that read the store before it is not cached after it. */
  #revocations = 0;

  constructor(options: AwsCredentialServiceOptions) {
    this.#repository = options.repository;
    this.#rootKey = options.rootKey;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
    this.#cacheTtlMs = options.cacheTtlMs;
  }

  /**
   * Issues an access key bound to the caller's own principal, or, for an admin only, to the principal `principal`
   * names (binding a key to someone else is impersonation). The secret is in the answer and nowhere else.
   */
  async create(
    caller: Caller,
    input: { name: string; principal?: string | undefined; ttlSeconds?: number | undefined },
  ): Promise<IssuedAwsCredential> {
    caller.trail.runs('aws-credentials:create');
    this.#authorizer.authorize(caller, 'aws-credentials:write', {});
    const other = input.principal !== undefined && input.principal !== caller.principal.id;
    if (other && !caller.principal.admin) {
      throw new KeyholdError('KH_ERR_FORBIDDEN', 'Only an admin may bind an AWS access key to another principal');
    }
    const principal = input.principal !== undefined && other ? parsePrincipalId(input.principal) : boundToCaller(caller.principal);
    const now = this.#clock.now();
    const accessKeyId = ACCESS_KEY_PREFIX + base32(randomBytes(ACCESS_KEY_RANDOM_BYTES));
    const secret = randomBytes(SECRET_BYTES);
    try {
      const credential: StoredAwsCredential = {
        accessKeyId,
        name: input.name,
        principal,
        createdBy: caller.principal.id,
        createdAt: now,
        expiresAt: input.ttlSeconds === undefined ? null : new Date(now.getTime() + input.ttlSeconds * 1000),
        revokedAt: null,
        rootKeyId: this.#rootKey.id,
        wrappedSecret: await this.#rootKey.wrap(secret, awsCredentialWrapAad(accessKeyId)),
      };
      // A live name (or, against all odds, an access key id) stored already fails here with KH_ERR_AWS_CREDENTIAL_EXISTS.
      await this.#repository.insert(credential);
      return { ...recordOf(credential), secretAccessKey: secret.toString('base64') };
    } finally {
      secret.fill(0);
    }
  }

  /** A page of live access keys, by name; never a secret. */
  async list(
    caller: Caller,
    query: { after?: AwsCredentialCursor | undefined; limit: number },
  ): Promise<{ credentials: AwsCredentialRecord[]; hasMore: boolean }> {
    this.#authorizer.authorize(caller, 'aws-credentials:read', {});
    const rows = await this.#repository.list({ after: query.after, limit: query.limit + 1 });
    return { credentials: rows.slice(0, query.limit), hasMore: rows.length > query.limit };
  }

  /** Revokes a live access key: at once on this replica, and on the others through the change feed. */
  async revoke(caller: Caller, accessKeyId: string): Promise<void> {
    caller.trail.runs('aws-credentials:revoke');
    this.#authorizer.authorize(caller, 'aws-credentials:write', {});
    const revoked = ACCESS_KEY_ID.test(accessKeyId) && (await this.#repository.revoke(accessKeyId, this.#clock.now()));
    if (!revoked) throw new KeyholdError('KH_ERR_AWS_CREDENTIAL_NOT_FOUND');
    this.forget(accessKeyId);
  }

  /**
   * The live credential of an access key id, or undefined when it is unknown, revoked, expired or not of Keyhold's
   * shape (which costs no query). A lookup made within the cache TTL is answered from memory without a promise, so
   * the hot path stays synchronous; expiry is checked on every call.
   */
  signingCredential(accessKeyId: string): SigningCredential | undefined | Promise<SigningCredential | undefined> {
    if (!ACCESS_KEY_ID.test(accessKeyId)) return undefined;
    const now = this.#clock.now().getTime();
    const cached = this.#cache.get(accessKeyId) ?? this.#misses.get(accessKeyId);
    if (cached !== undefined && cached.trustedUntil > now) {
      this.cacheStats.hits += 1;
      return isLive(cached, now) ? cached.credential : undefined;
    }
    if (cached !== undefined) {
      this.#cache.delete(accessKeyId);
      this.#misses.delete(accessKeyId);
    }
    this.cacheStats.misses += 1;
    let load = this.#inflight.get(accessKeyId);
    if (load === undefined) {
      const started = this.#load(accessKeyId, now);
      load = started.finally(() => {
        if (this.#inflight.get(accessKeyId) === load) this.#inflight.delete(accessKeyId);
      });
      this.#inflight.set(accessKeyId, load);
    }
    return load.then((entry) => (isLive(entry, this.#clock.now().getTime()) ? entry.credential : undefined));
  }

  /** Drops what this replica knows of one access key (revoked here or on another replica); lookups in flight are not kept. */
  forget(accessKeyId: string): void {
    this.#revocations += 1;
    this.#cache.delete(accessKeyId);
    this.#misses.delete(accessKeyId);
    this.#inflight.delete(accessKeyId);
  }

  /** Drops every cached lookup: the replica cannot vouch for them. */
  forgetAll(): void {
    this.#revocations += 1;
    this.#cache.clear();
    this.#misses.clear();
    this.#inflight.clear();
  }

  async #load(accessKeyId: string, now: number): Promise<CacheEntry> {
    const revocations = this.#revocations;
    const stored = await this.#repository.find(accessKeyId);
    const entry: CacheEntry =
      stored === undefined || stored.revokedAt !== null
        ? { credential: undefined, expiresAt: null, trustedUntil: now + this.#cacheTtlMs }
        : {
            credential: await this.#signingCredentialOf(stored),
            expiresAt: stored.expiresAt?.getTime() ?? null,
            trustedUntil: now + this.#cacheTtlMs,
          };
    if (revocations === this.#revocations) this.#remember(accessKeyId, entry);
    return entry;
  }

  async #signingCredentialOf(stored: StoredAwsCredential): Promise<SigningCredential> {
    let secret: Buffer;
    try {
      secret = await this.#rootKey.unwrapRecorded(stored.rootKeyId, stored.wrappedSecret, awsCredentialWrapAad(stored.accessKeyId));
    } catch (error) {
      if (error instanceof KeyholdError && error.code === 'KH_ERR_INTERNAL') throw error;
      // A row whose secret does not open under its AAD was altered or moved: the store's fault, never the caller's.
      throw new KeyholdError('KH_ERR_INTERNAL', `The secret of AWS access key ${stored.accessKeyId} does not unwrap`, { cause: error });
    }
    try {
      const principal: Principal = Object.freeze({
        id: stored.principal.id,
        type: stored.principal.type,
        // A key never acts as an admin, even bound to an admin's principal: policies always apply.
        admin: false,
        attributes: Object.freeze({ ...stored.principal.attributes, accessKeyId: stored.accessKeyId }),
      });
      return Object.freeze({ accessKeyId: stored.accessKeyId, secretAccessKey: secret.toString('base64'), principal });
    } finally {
      secret.fill(0);
    }
  }

  #remember(accessKeyId: string, entry: CacheEntry): void {
    const [cache, limit] = entry.credential === undefined ? [this.#misses, MAX_CACHED_MISSES] : [this.#cache, MAX_CACHED_CREDENTIALS];
    if (cache.size >= limit && !cache.has(accessKeyId)) {
      const oldest = cache.keys().next();
      if (!oldest.done) cache.delete(oldest.value);
    }
    cache.set(accessKeyId, entry);
  }
}
