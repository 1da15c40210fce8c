import type { Database } from './database.js';

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

  async record(entry: RootKeyEntry, at: Date): Promise<void> {
    await this.db('root_keys')
      .insert({ id: entry.id, check_value: entry.checkValue, created_at: at.getTime() })
      .onConflict('id')
      .ignore();
  }

  async keyCount(): Promise<number> {
    const row = (await this.db('keys').count({ count: '*' }).first()) as { count: number | string } | undefined;
    return Number(row?.count ?? 0);
  }
}
