import { afterAll, beforeAll } from 'vitest';
import { loadConfig } from '../../../src/config.js';
import { createDatabase, migrateToLatest, type Database } from '../../../src/storage/database.js';
import { TestStore, type DatabaseKind } from '../../helpers/app.js';

/**
 * One migrated store for a contract suite, opened before its tests and dropped after them. Tests share it, so
 * each writes under names of its own.
 */
export function sharedStore(kind: DatabaseKind): { readonly db: Database } {
  const holder = {} as { db: Database };
  let store: TestStore;
  beforeAll(async () => {
    store = new TestStore(kind);
    await store.createSchema();
    const config = loadConfig(store.environment());
    holder.db = store.database(config) ?? createDatabase(config.database, { acquireTimeoutMs: config.databaseTimeoutMs });
    await migrateToLatest(holder.db);
  });
  afterAll(async () => {
    if (kind === 'sqlite') await holder.db.destroy();
    await store.destroy();
  });
  return holder;
}
