import { isPostgres, type Database } from './database.js';

/** An arbitrary, fixed advisory-lock id for root-key bootstrap ("khroot" in ASCII). */
const ROOT_KEY_LOCK_ID = 0x6b68726f6f74;

export interface RootKeyEntry {
  readonly id: string;
  readonly checkValue: string;
}

/** The root keys the store has been wrapped with, by public id and check value. */
export class RootKeyRepository {
  constructor(private readonly db: Database) {}

  async list(): Promise<RootKeyEntry[]> {
    const rows = await this.db('root_keys').select('id', 'check_value').orderBy('created_at');
    return rows.map((row: { id: string; check_value: string }) => ({ id: row.id, checkValue: row.check_value }));
  }

  /**
   * Records `entry` as the store's root key if the store has none yet, and returns the root keys recorded after.
   * Replicas that start together on an empty store serialise here (an advisory lock on PostgreSQL; SQLite has one
   * writer), so they cannot each record a different key.
   */
  async recordIfFirst(entry: RootKeyEntry, at: Date): Promise<RootKeyEntry[]> {
    return this.db.transaction(async (trx) => {
      if (isPostgres(this.db)) await trx.raw('SELECT pg_advisory_xact_lock(?)', [ROOT_KEY_LOCK_ID]);
      const existing = await trx('root_keys').first('id');
      if (existing === undefined) {
        await trx('root_keys').insert({ id: entry.id, check_value: entry.checkValue, created_at: at.getTime() });
      }
      const rows = await trx('root_keys').select('id', 'check_value').orderBy('created_at');
      return rows.map((row: { id: string; check_value: string }) => ({ id: row.id, checkValue: row.check_value }));
    });
  }

  async keyCount(): Promise<number> {
    const row = (await this.db('keys').count({ count: '*' }).first()) as { count: number | string } | undefined;
    return Number(row?.count ?? 0);
  }
}
