import type { Caller } from '../context/caller.js';
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import { KeyholdError } from '../errors.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { Principal } from '../context/principal.js';
import type { StoredToken, TokenRecord, TokenRepository } from './token-repository.js';

const TOKEN_PREFIX = 'kh_';
const TOKEN_SECRET_BYTES = 32;
const MAX_CACHED_TOKENS = 10_000;

export interface IssuedToken extends TokenRecord {
  /** The secret, shown once. */
  readonly token: string;
}

export interface TokenServiceOptions {
  readonly repository: TokenRepository;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
  /** How long a verified lookup is trusted before the store is asked again (revocation on other replicas). */
  readonly cacheTtlMs: number;
}

interface CachedToken {
  readonly token: StoredToken;
  /** Built once per lookup, frozen, and shared by every request that presents the token. */
  readonly principal: Principal;
  readonly trustedUntil: number;
}

function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export function principalOf(token: TokenRecord): Principal {
  return Object.freeze({
    id: `token:${token.name}`,
    type: 'token',
    admin: token.admin,
    attributes: Object.freeze({ tokenId: token.id, tokenName: token.name }),
  });
}

function isLive(token: TokenRecord, now: Date): boolean {
  return token.revokedAt === null && (token.expiresAt === null || token.expiresAt.getTime() > now.getTime());
}

/** Issues, lists and revokes API tokens, and turns a bearer secret into a principal. */
export class TokenService {
  readonly #repository: TokenRepository;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;
  readonly #cacheTtlMs: number;
  /**
   * Verified tokens by the presented secret, so a hit costs no hashing. The secrets were in this process's memory
   * with the requests anyway; a V8 Map compares string contents only after their seeded hashes collide, so a lookup
   * reveals nothing measurable about a secret it does not hold. Misses are verified against the stored SHA-256 in
   * constant time.
   */
  readonly #cache = new Map<string, CachedToken>();
  /** Token lookups answered from memory and those that went to the store; read by the metrics. */
  readonly cacheStats = { hits: 0, misses: 0 };
  /** Bumped by every revocation or drop, so a lookup that read the store before it is not cached after it. */
  #revocations = 0;

  constructor(options: TokenServiceOptions) {
    this.#repository = options.repository;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
    this.#cacheTtlMs = options.cacheTtlMs;
  }

  /**
   * Looks a bearer secret up. Returns the principal, or undefined for an unknown, expired or revoked token. A
   * recently verified token is answered from memory without a promise, so the hot path stays synchronous; only a
   * cache miss returns a promise.
   */
  authenticate(secret: string): Principal | undefined | Promise<Principal | undefined> {
    const now = this.#clock.now();
    const cached = this.#cachedToken(secret, now.getTime());
    if (cached !== undefined) {
      this.cacheStats.hits += 1;
      return isLive(cached.token, now) ? cached.principal : undefined;
    }
    this.cacheStats.misses += 1;
    const digest = hashSecret(secret);
    const revocations = this.#revocations;
    return this.#repository.findByHash(digest.toString('hex')).then((token) => {
      // The lookup is by hash; the constant-time comparison guards against a store that matched loosely.
      if (token === undefined || !timingSafeEqual(Buffer.from(token.secretHash, 'hex'), digest)) return undefined;
      const principal = principalOf(token);
      if (revocations === this.#revocations) this.#remember(secret, token, principal, now.getTime());
      return isLive(token, now) ? principal : undefined;
    });
  }

  async create(
    caller: Caller,
    input: { name: string; admin?: boolean | undefined; ttlSeconds?: number | undefined },
  ): Promise<IssuedToken> {
    caller.trail.runs('tokens:create');
    this.#authorizer.authorize(caller, 'tokens:write', {});
    // Only an admin can mint an admin: a workload allowed tokens:write must not be able to escalate.
    if (input.admin === true && !caller.principal.admin) {
      throw new KeyholdError('KH_ERR_FORBIDDEN', 'Only an admin may create an admin token');
    }
    return this.issue(input.name, input.admin === true, input.ttlSeconds);
  }

  /** Creates a token without an authorisation check; for bootstrap only. */
  async issue(name: string, admin: boolean, ttlSeconds?: number, secret?: string): Promise<IssuedToken> {
    const now = this.#clock.now();
    const tokenSecret = secret ?? TOKEN_PREFIX + randomBytes(TOKEN_SECRET_BYTES).toString('base64url');
    const stored: StoredToken = {
      id: randomUUID(),
      name,
      admin,
      secretHash: hashSecret(tokenSecret).toString('hex'),
      createdAt: now,
      expiresAt: ttlSeconds === undefined ? null : new Date(now.getTime() + ttlSeconds * 1000),
      revokedAt: null,
    };
    // A secret (or id) already stored fails here with KH_ERR_TOKEN_EXISTS.
    await this.#repository.insert(stored);
    const { secretHash: _hash, ...record } = stored;
    return { ...record, token: tokenSecret };
  }

  async list(
    caller: Caller,
    query: { after?: { name: string; id: string } | undefined; limit: number },
  ): Promise<{ tokens: TokenRecord[]; hasMore: boolean }> {
    this.#authorizer.authorize(caller, 'tokens:read', {});
    const rows = await this.#repository.list({ after: query.after, limit: query.limit + 1 });
    return {
      tokens: rows.slice(0, query.limit).map(({ secretHash: _hash, ...record }) => record),
      hasMore: rows.length > query.limit,
    };
  }

  async revoke(caller: Caller, id: string): Promise<void> {
    caller.trail.runs('tokens:revoke');
    this.#authorizer.authorize(caller, 'tokens:write', {});
    const token = await this.#repository.findById(id);
    if (token === undefined || token.revokedAt !== null) throw new KeyholdError('KH_ERR_TOKEN_NOT_FOUND');
    if (token.admin && !caller.principal.admin) {
      throw new KeyholdError('KH_ERR_FORBIDDEN', 'Only an admin may revoke an admin token');
    }
    await this.#repository.revoke(id, this.#clock.now());
    this.forget(id);
  }

  /** Drops the cached lookups of one token (revoked here or on another replica); lookups in flight are not kept. */
  forget(tokenId: string): void {
    this.#revocations += 1;
    for (const [secret, entry] of this.#cache) if (entry.token.id === tokenId) this.#cache.delete(secret);
  }

  /** Drops every cached lookup: the replica cannot vouch for them. */
  forgetAll(): void {
    this.#revocations += 1;
    this.#cache.clear();
  }

  async hasLiveAdmin(): Promise<boolean> {
    return this.#repository.hasLiveAdmin(this.#clock.now());
  }

  #cachedToken(secret: string, now: number): CachedToken | undefined {
    const entry = this.#cache.get(secret);
    if (entry === undefined) return undefined;
    if (entry.trustedUntil <= now) {
      this.#cache.delete(secret);
      return undefined;
    }
    return entry;
  }

  #remember(secret: string, token: StoredToken, principal: Principal, now: number): void {
    const entry: CachedToken = { token, principal, trustedUntil: now + this.#cacheTtlMs };
    if (this.#cache.size >= MAX_CACHED_TOKENS) {
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
    this.#cache.set(secret, entry);
  }
}
