import { KeyholdError } from '../../../src/errors.js';
import type { StoredToken, TokenRepository } from '../../../src/tokens/token-repository.js';
import { compareBytes as compare } from './gate.js';

/** A revoke the repository recorded, as the change feed would hold it. */
export interface RecordedTokenChange {
  readonly action: 'revoke';
  readonly subject: string;
  readonly at: Date;
}

/**
 * {@link TokenRepository} in memory, keeping its contract: ids, secret hashes and live names unique, live tokens
 * listed by name then id after the cursor, a revoke only of a live token and recorded as a change. It counts what it
 * reads, as a database would be asked, and hands out copies, as rows read back are.
 */
export class InMemoryTokenRepository implements TokenRepository {
  readonly #tokens: StoredToken[] = [];
  readonly changes: RecordedTokenChange[] = [];
  readonly reads = { findByHash: 0, findById: 0, list: 0 };

  async insert(token: StoredToken): Promise<void> {
    const clash = this.#tokens.some(
      (t) => t.id === token.id || t.secretHash === token.secretHash || (t.revokedAt === null && token.revokedAt === null && t.name === token.name),
    );
    if (clash) throw new KeyholdError('KH_ERR_TOKEN_EXISTS');
    this.#tokens.push({ ...token });
  }

  async findByHash(secretHash: string): Promise<StoredToken | undefined> {
    this.reads.findByHash += 1;
    return copy(this.#tokens.find((t) => t.secretHash === secretHash));
  }

  async findById(id: string): Promise<StoredToken | undefined> {
    this.reads.findById += 1;
    return copy(this.#tokens.find((t) => t.id === id));
  }

  async list(query: { after?: { name: string; id: string } | undefined; limit: number }): Promise<StoredToken[]> {
    this.reads.list += 1;
    const after = query.after;
    return this.#tokens
      .filter((t) => t.revokedAt === null)
      .sort((a, b) => compare(a.name, b.name) || compare(a.id, b.id))
      .filter((t) => after === undefined || compare(t.name, after.name) > 0 || (t.name === after.name && compare(t.id, after.id) > 0))
      .slice(0, query.limit)
      .map((t) => ({ ...t }));
  }

  async revoke(id: string, at: Date): Promise<boolean> {
    const index = this.#tokens.findIndex((t) => t.id === id && t.revokedAt === null);
    if (index < 0) return false;
    this.#tokens[index] = { ...this.#tokens[index]!, revokedAt: at };
    this.changes.push({ action: 'revoke', subject: id, at });
    return true;
  }

  async hasLiveAdmin(now: Date): Promise<boolean> {
    return this.#tokens.some((t) => t.admin && t.revokedAt === null && (t.expiresAt === null || t.expiresAt.getTime() > now.getTime()));
  }
}

function copy(token: StoredToken | undefined): StoredToken | undefined {
  return token === undefined ? undefined : { ...token };
}

