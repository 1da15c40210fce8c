import type { Knex } from 'knex';
import { isPostgres, type Database } from './database.js';
import type { RootKeyEntry, RootKeyRepository, WrappedUnder } from '../root-keys/root-key-repository.js';

/** An arbitrary, fixed advisory-lock id for recording root keys ("khroot" in ASCII). */
const ROOT_KEY_LOCK_ID = 0x6b68726f6f74;

async function listIn(db: Knex | Knex.Transaction): Promise<RootKeyEntry[]> {
  // Recording keeps created_at strictly increasing, so this is the order the keys were recorded in.
  const rows = await db('root_keys').select('id', 'check_value').orderBy('created_at');
  return rows.map((row: { id: string; check_value: string }) => ({ id: row.id, checkValue: row.check_value }));
}

async function count(query: Knex.QueryBuilder): Promise<number> {
  const row = (await query.count({ count: '*' }).first()) as { count: number | string } | undefined;
  return Number(row?.count ?? 0);
}

/** Root keys in the `root_keys` table, recorded under an advisory lock on PostgreSQL. */
export class KnexRootKeyRepository implements RootKeyRepository {
  constructor(private readonly db: Database) {}

  async list(): Promise<RootKeyEntry[]> {
    return listIn(this.db);
  }

  /**
   * Records `entry` as the store's root key if the store has none yet, and returns the root keys recorded after.
   * Replicas that start together on an empty store serialise here (an advisory lock on PostgreSQL; SQLite has one
   * writer), so they cannot each record a different key.
   */
  async recordIfFirst(entry: RootKeyEntry, at: Date): Promise<RootKeyEntry[]> {
    return this.#locked(async (trx) => {
      const existing = await trx('root_keys').first('id');
      if (existing === undefined) {
        await trx('root_keys').insert({ id: entry.id, check_value: entry.checkValue, created_at: at.getTime() });
      }
      return listIn(trx);
    });
  }

  /**
   * Records `entry` as the next root key of a rotation, unless it is recorded already, and returns the root keys
   * recorded after. The caller has proved it holds `vouchedBy`, a key already recorded; the same lock as
   * {@link recordIfFirst} keeps this from racing a first start. A key recorded later always sorts later, even
   * within one millisecond, so the first recorded key (from which the audit key was once derived) stays first.
   */
  async recordNext(entry: RootKeyEntry, vouchedBy: string, at: Date): Promise<RootKeyEntry[]> {
    return this.#locked(async (trx) => {
      if ((await trx('root_keys').first('id').where({ id: vouchedBy })) === undefined) {
        throw new Error(`Root key ${vouchedBy} is not recorded`);
      }
      if ((await trx('root_keys').first('id').where({ id: entry.id })) === undefined) {
        const latest = (await trx('root_keys').max({ latest: 'created_at' }).first()) as { latest: number | string | null };
        const createdAt = Math.max(at.getTime(), Number(latest.latest ?? 0) + 1);
        await trx('root_keys').insert({ id: entry.id, check_value: entry.checkValue, created_at: createdAt });
      }
      return listIn(trx);
    });
  }

  /** How much material (destroyed versions hold none) is wrapped under `rootKeyId`. */
  async wrappedUnder(rootKeyId: string): Promise<WrappedUnder> {
    const [keyVersions, systemSecrets, awsCredentials] = await Promise.all([
      count(this.db('key_versions').where({ root_key_id: rootKeyId }).whereNotNull('material')),
      count(this.db('system_secrets').where({ root_key_id: rootKeyId })),
      count(this.db('aws_credentials').where({ root_key_id: rootKeyId })),
    ]);
    return { keyVersions, systemSecrets, awsCredentials };
  }

  async keyCount(): Promise<number> {
    return count(this.db('keys'));
  }

  async #locked<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return this.db.transaction(async (trx) => {
      if (isPostgres(this.db)) await trx.raw('SELECT pg_advisory_xact_lock(?)', [ROOT_KEY_LOCK_ID]);
      return work(trx);
    });
  }
}
