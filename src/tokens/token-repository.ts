export interface TokenRecord {
  readonly id: string;
  readonly name: string;
  readonly admin: boolean;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

/** A token as stored: the SHA-256 of its secret, never the secret. */
export interface StoredToken extends TokenRecord {
  readonly secretHash: string;
}

/** Persistence of API tokens. */
export interface TokenRepository {
  /** Stores a new, live token. Throws `KH_ERR_TOKEN_EXISTS` when its id or secret hash is stored already. */
  insert(token: StoredToken): Promise<void>;
  findByHash(secretHash: string): Promise<StoredToken | undefined>;
  findById(id: string): Promise<StoredToken | undefined>;
  /** Live tokens (not revoked), ordered by name then id, after the cursor. */
  list(query: { after?: { name: string; id: string } | undefined; limit: number }): Promise<StoredToken[]>;
  /**
   * Revokes a live token and, in the same commit, records a `revoke` change so every replica forgets it. False when
   * no live token has this id.
   */
  revoke(id: string, at: Date): Promise<boolean>;
  /** Whether an admin token is neither revoked nor expired at `now`. */
  hasLiveAdmin(now: Date): Promise<boolean>;
}
