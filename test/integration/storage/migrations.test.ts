import { expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { storePerTest } from './store.js';

const KEY_ID = '5d1f3a52-8c0e-4b7e-9a41-0f2c6b9d7e13';

describeEachDatabase('migrations', (kind) => {
  const store = storePerTest(kind);

  it('roll back one at a time to an empty store and forward again, losing no key version on the way', async () => {
    const { db } = store;
    await db('root_keys').insert({ id: 'root-a', check_value: 'check-a', created_at: 0 });
    await db('keys').insert({
      id: KEY_ID,
      name: 'kept',
      description: '',
      labels: '{}',
      bound_context: '[]',
      state: 'enabled',
      primary_version: 1,
      min_decryption_version: 1,
      created_at: 0,
      updated_at: 0,
    });
    await db('key_versions').insert({ key_id: KEY_ID, version: 1, state: 'enabled', material: Buffer.alloc(60, 1), root_key_id: 'root-a', created_at: 0, updated_at: 0 });

    const steps: string[] = [];
    while ((await db.migrate.currentVersion()) !== 'none') {
      steps.push(await db.migrate.currentVersion());
      await db.migrate.down();
      // Dropping a column must not rebuild `keys`: on SQLite, dropping the old table cascades to its versions.
      if (await db.schema.hasTable('key_versions')) expect(Number((await db('key_versions').count('* as n'))[0]!.n), `after ${steps.at(-1)}`).toBe(1);
    }
    expect(steps.length).toBeGreaterThan(5);
    expect(await db.schema.hasTable('keys')).toBe(false);

    await db.migrate.latest();
    expect(await db.schema.hasColumn('keys', 'revision')).toBe(true);
  });
});
