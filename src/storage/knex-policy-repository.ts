import { recordChange } from './knex-change-repository.js';
import type { Database } from './database.js';
import { isUniqueViolation } from '../lib/database-errors.js';
import type { PolicyDocument } from '../policy/policy.js';
import type { PolicyRepository, PutOutcome, StoredPolicy } from '../policy/policy-repository.js';

interface PolicyRow {
  name: string;
  document: string;
  revision: number;
  created_at: number | string;
  updated_at: number | string;
  deleted_at: number | string | null;
}

function toPolicy(row: PolicyRow): StoredPolicy {
  return {
    name: row.name,
    document: JSON.parse(row.document) as PolicyDocument,
    revision: Number(row.revision),
    createdAt: new Date(Number(row.created_at)),
    updatedAt: new Date(Number(row.updated_at)),
  };
}

/** Policies in the `policies` table, with a tombstone for each deleted name. */
export class KnexPolicyRepository implements PolicyRepository {
  constructor(private readonly db: Database) {}

  async all(): Promise<StoredPolicy[]> {
    return ((await this.db<PolicyRow>('policies').whereNull('deleted_at').orderBy('name')) as PolicyRow[]).map(toPolicy);
  }

  async find(name: string): Promise<StoredPolicy | undefined> {
    const row = (await this.db<PolicyRow>('policies').where({ name }).whereNull('deleted_at').first()) as PolicyRow | undefined;
    return row === undefined ? undefined : toPolicy(row);
  }

  async list(query: { prefix?: string | undefined; after?: string | undefined; limit: number }): Promise<StoredPolicy[]> {
    const builder = this.db<PolicyRow>('policies').whereNull('deleted_at').orderBy('name').limit(query.limit);
    if (query.prefix !== undefined && query.prefix !== '') {
      // Names are [A-Za-z0-9._-]: a range on the byte-wise order needs no LIKE escaping.
      builder.where('name', '>=', query.prefix).andWhere('name', '<', `${query.prefix}\u007f`);
    }
    if (query.after !== undefined) builder.andWhere('name', '>', query.after);
    return ((await builder) as PolicyRow[]).map(toPolicy);
  }

  /**
   * Creates or replaces a policy under a row lock. With `expectedRevision`, only that revision is replaced (0: only
   * create), so two writers editing the same policy cannot silently overwrite each other.
   */
  async put(name: string, document: PolicyDocument, now: Date, expectedRevision: number | undefined): Promise<PutOutcome> {
    try {
      return await this.#put(name, document, now, expectedRevision);
    } catch (error) {
      // Two first writes of one name both found no row to lock; the loser runs again and sees the winner's row.
      if (!isUniqueViolation(error)) throw error;
      return this.#put(name, document, now, expectedRevision);
    }
  }

  async #put(name: string, document: PolicyDocument, now: Date, expectedRevision: number | undefined): Promise<PutOutcome> {
    return this.db.transaction(async (trx) => {
      const stored = (await trx<PolicyRow>('policies').where({ name }).forUpdate().first()) as PolicyRow | undefined;
      const live = stored !== undefined && stored.deleted_at === null ? stored : undefined;
      if (expectedRevision !== undefined && expectedRevision !== (live === undefined ? 0 : Number(live.revision))) {
        return { kind: 'revision-mismatch' };
      }
      const row: PolicyRow = {
        name,
        document: JSON.stringify(document),
        // Counted on from a tombstone too: a revision, and so an ETag, is never given to two versions of a name.
        revision: (stored === undefined ? 0 : Number(stored.revision)) + 1,
        created_at: live === undefined ? now.getTime() : Number(live.created_at),
        updated_at: now.getTime(),
        deleted_at: null,
      };
      if (stored === undefined) await trx('policies').insert(row);
      else await trx('policies').where({ name }).update(row);
      await recordChange(trx, { kind: 'policy', action: 'put', subject: name, at: now });
      return { kind: live === undefined ? 'created' : 'replaced', policy: toPolicy(row) };
    });
  }

  /** Deletes a policy, leaving a tombstone that keeps its revision count. */
  async delete(
    name: string,
    expectedRevision: number | undefined,
    now: Date,
  ): Promise<'deleted' | 'not-found' | 'revision-mismatch'> {
    return this.db.transaction(async (trx) => {
      const current = (await trx<PolicyRow>('policies').where({ name }).forUpdate().first()) as PolicyRow | undefined;
      if (current === undefined || current.deleted_at !== null) return 'not-found';
      if (expectedRevision !== undefined && expectedRevision !== Number(current.revision)) return 'revision-mismatch';
      await trx('policies').where({ name }).update({ deleted_at: now.getTime(), updated_at: now.getTime() });
      await recordChange(trx, { kind: 'policy', action: 'delete', subject: name, at: now });
      return 'deleted';
    });
  }
}
