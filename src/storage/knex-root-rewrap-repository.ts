import type { Knex } from 'knex';
import { isPostgres, type Database } from './database.js';
import type { Rewrap, RootRewrapRepository, WrappedRow } from '../root-keys/root-rewrap-repository.js';

async function count(query: Knex.QueryBuilder): Promise<number> {
  const row = (await query.count({ count: '*' }).first()) as { count: number | string } | undefined;
  return Number(row?.count ?? 0);
}

/**
 * The storage side of a root key rotation: finds material wrapped under other root keys and moves it, a batch per
 * transaction. A row's material and root_key_id change in one UPDATE, so every row is wholly under its old key or
 * wholly under the new one, whenever the process stops.
 */
export class KnexRootRewrapRepository implements RootRewrapRepository {
  constructor(private readonly db: Database) {}

  /** Material (destroyed versions hold none) wrapped under any root key but `rootKeyId`. */
  async countOutside(rootKeyId: string): Promise<number> {
    const [versions, secrets, awsCredentials] = await Promise.all([
      count(this.db('key_versions').whereNot({ root_key_id: rootKeyId }).whereNotNull('material')),
      count(this.db('system_secrets').whereNot({ root_key_id: rootKeyId })),
      count(this.db('aws_credentials').whereNot({ root_key_id: rootKeyId })),
    ]);
    return versions + secrets + awsCredentials;
  }

  /**
   * Moves up to `limit` rows from other root keys to `rootKeyId` in one transaction, and returns how many it moved;
   * 0 means none was left that another transaction did not hold. On PostgreSQL the rows are taken `FOR UPDATE SKIP
   * LOCKED`, so concurrent runs share the work instead of waiting on each other, and a server's write to a row
   * (destroying it) either happens before (the row is gone from the batch) or waits for the batch. SQLite has one
   * writer, which serialises the same way.
   */
  async rewrapBatch(rootKeyId: string, limit: number, rewrap: Rewrap, at: Date): Promise<number> {
    const others = (await this.db('root_keys').select('id').whereNot({ id: rootKeyId })).map((row: { id: string }) => row.id);
    if (others.length === 0) return 0;
    return this.db.transaction(async (trx) => {
      const secrets = await this.#take(trx, 'system_secrets', ['name', 'root_key_id', 'material'], others, limit);
      for (const row of secrets as Array<{ name: string; root_key_id: string; material: Buffer }>) {
        const material = await rewrap({ table: 'system_secrets', name: row.name, rootKeyId: row.root_key_id, material: Buffer.from(row.material) });
        await trx('system_secrets')
          .where({ name: row.name, root_key_id: row.root_key_id })
          .update({ material, root_key_id: rootKeyId, updated_at: at.getTime() });
      }
      let room = limit - secrets.length;
      if (room === 0) return secrets.length;
      const credentials = await this.#take(trx, 'aws_credentials', ['access_key_id', 'root_key_id', 'wrapped_secret'], others, room);
      for (const row of credentials as Array<{ access_key_id: string; root_key_id: string; wrapped_secret: Buffer }>) {
        const material = await rewrap({
          table: 'aws_credentials',
          accessKeyId: row.access_key_id,
          rootKeyId: row.root_key_id,
          material: Buffer.from(row.wrapped_secret),
        });
        await trx('aws_credentials')
          .where({ access_key_id: row.access_key_id, root_key_id: row.root_key_id })
          .update({ wrapped_secret: material, root_key_id: rootKeyId });
      }
      room -= credentials.length;
      if (room === 0) return secrets.length + credentials.length;
      const versions = await this.#take(trx, 'key_versions', ['key_id', 'version', 'root_key_id', 'material'], others, room);
      for (const row of versions as Array<{ key_id: string; version: number; root_key_id: string; material: Buffer }>) {
        const material = await rewrap({
          table: 'key_versions',
          keyId: row.key_id,
          version: Number(row.version),
          rootKeyId: row.root_key_id,
          material: Buffer.from(row.material),
        });
        // Versions keep their updated_at: what they are and may do has not changed, only the key they rest under.
        await trx('key_versions')
          .where({ key_id: row.key_id, version: row.version, root_key_id: row.root_key_id })
          .whereNotNull('material')
          .update({ material, root_key_id: rootKeyId });
      }
      return secrets.length + credentials.length + versions.length;
    });
  }

  #take(trx: Knex.Transaction, table: WrappedRow['table'], columns: string[], rootKeyIds: string[], limit: number): Promise<unknown[]> {
    // By the indexes on root_key_id (key versions': partial, WHERE material IS NOT NULL): rows already moved are never
    // scanned again.
    const query = trx(table).select(columns).whereIn('root_key_id', rootKeyIds).limit(limit);
    if (table === 'key_versions') query.whereNotNull('material');
    return isPostgres(this.db) ? query.forUpdate().skipLocked() : query;
  }
}
