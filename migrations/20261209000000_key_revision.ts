import type { Knex } from 'knex';

/**
 * A key's revision: raised by every write to the key or its versions (src/storage/knex-key-repository.ts), in the same
 * transaction. The key cache compares it to revalidate an entry after its TTL without reading every version row.
 * Moving material to a new root key leaves it as it is: the plaintext of a version does not change.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('keys', (table) => {
    table.bigInteger('revision').notNullable().defaultTo(0);
  });
}

/**
 * A plain DROP COLUMN (SQLite 3.35+), not knex's `dropColumn`: on SQLite that copies `keys` into a new table and drops
 * the old one, whose implicit delete would cascade to every key version.
 */
export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE keys DROP COLUMN revision');
}
