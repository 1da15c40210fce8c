import { recordChange } from './knex-change-repository.js';
import type { Database } from './database.js';
import { KeyholdError } from '../errors.js';
import { isUniqueViolation } from '../lib/database-errors.js';
import type { StoredToken, TokenRepository } from '../tokens/token-repository.js';

interface TokenRow {
  id: string;
  name: string;
  secret_hash: string;
  admin: boolean | number;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

function toToken(row: TokenRow): StoredToken {
  return {
    id: row.id,
    name: row.name,
    secretHash: row.secret_hash,
    admin: row.admin === true || row.admin === 1,
    createdAt: new Date(Number(row.created_at)),
    expiresAt: row.expires_at === null ? null : new Date(Number(row.expires_at)),
    revokedAt: row.revoked_at === null ? null : new Date(Number(row.revoked_at)),
  };
}

/** API tokens in the `tokens` table. */
export class KnexTokenRepository implements TokenRepository {
  constructor(private readonly db: Database) {}

  async insert(token: StoredToken): Promise<void> {
    try {
      await this.#insert(token);
    } catch (error) {
      if (isUniqueViolation(error)) throw new KeyholdError('KH_ERR_TOKEN_EXISTS');
      throw error;
    }
  }

  async #insert(token: StoredToken): Promise<void> {
    await this.db('tokens').insert({
      id: token.id,
      name: token.name,
      secret_hash: token.secretHash,
      admin: token.admin,
      created_at: token.createdAt.getTime(),
      expires_at: token.expiresAt?.getTime() ?? null,
      revoked_at: null,
    });
  }

  async findByHash(secretHash: string): Promise<StoredToken | undefined> {
    const row = (await this.db<TokenRow>('tokens').where({ secret_hash: secretHash }).first()) as TokenRow | undefined;
    return row === undefined ? undefined : toToken(row);
  }

  async findById(id: string): Promise<StoredToken | undefined> {
    const row = (await this.db<TokenRow>('tokens').where({ id }).first()) as TokenRow | undefined;
    return row === undefined ? undefined : toToken(row);
  }

  /** Live tokens (not revoked), ordered by name then id, after the cursor. */
  async list(query: { after?: { name: string; id: string } | undefined; limit: number }): Promise<StoredToken[]> {
    const builder = this.db<TokenRow>('tokens')
      .whereNull('revoked_at')
      .orderBy([{ column: 'name' }, { column: 'id' }])
      .limit(query.limit);
    const after = query.after;
    if (after !== undefined) {
      builder.andWhere((where) =>
        where.where('name', '>', after.name).orWhere((same) => same.where('name', '=', after.name).andWhere('id', '>', after.id)),
      );
    }
    return ((await builder) as TokenRow[]).map(toToken);
  }

  /** Revokes a live token and, in the same transaction, tells every replica to forget it. */
  async revoke(id: string, at: Date): Promise<boolean> {
    return this.db.transaction(async (trx) => {
      const updated = await trx('tokens').where({ id }).whereNull('revoked_at').update({ revoked_at: at.getTime() });
      if (updated === 0) return false;
      await recordChange(trx, { kind: 'token', action: 'revoke', subject: id, at });
      return true;
    });
  }

  async hasLiveAdmin(now: Date): Promise<boolean> {
    const row = await this.db('tokens')
      .where({ admin: true })
      .whereNull('revoked_at')
      .andWhere((where) => where.whereNull('expires_at').orWhere('expires_at', '>', now.getTime()))
      .first('id');
    return row !== undefined;
  }
}
