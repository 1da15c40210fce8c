import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { loadConfig } from '../../../src/config.js';
import { migrateToLatest, type Database } from '../../../src/storage/database.js';
import { TestStore, type DatabaseKind } from '../../helpers/app.js';

async function openStore(kind: DatabaseKind): Promise<{ store: TestStore; db: Database }> {
  const store = new TestStore(kind);
  await store.createSchema();
  const config = loadConfig(store.environment());
  const db = store.database(config);
  await migrateToLatest(db);
  return { store, db };
}

async function closeStore(_kind: DatabaseKind, opened: { store: TestStore; db: Database }): Promise<void> {
  await opened.store.destroy();
}

/**
 * One migrated store for a contract suite, opened before its tests and dropped after them. Tests share it, so
 * each writes under names of its own.
 */
export function sharedStore(kind: DatabaseKind): { readonly db: Database } {
  const holder = {} as { db: Database };
  let opened: { store: TestStore; db: Database };
  beforeAll(async () => {
    opened = await openStore(kind);
    holder.db = opened.db;
  });
  afterAll(() => closeStore(kind, opened));
  return holder;
}

/**
 * A migrated store of each test's own, for contracts about the whole store (the first root key recorded, the
 * material outside a root key) that tests sharing one store would see each other's writes in.
 */
export function storePerTest(kind: DatabaseKind): { readonly db: Database } {
  const holder = {} as { db: Database };
  let opened: { store: TestStore; db: Database };
  beforeEach(async () => {
    opened = await openStore(kind);
    holder.db = opened.db;
  });
  afterEach(() => closeStore(kind, opened));
  return holder;
}
