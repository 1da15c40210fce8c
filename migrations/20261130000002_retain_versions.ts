import type { Knex } from 'knex';

/** How many versions stay decryptable after a rotation; NULL keeps them all. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('keys', (table) => {
    table.integer('retain_versions').nullable();
  });
}

/** In place: knex's `dropColumn` rebuilds the table on SQLite, and dropping the old `keys` cascades to its versions. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE keys DROP COLUMN retain_versions');
}
