import type { Knex } from 'knex';

/** How many versions stay decryptable after a rotation; NULL keeps them all. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('keys', (table) => {
    table.integer('retain_versions').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('keys', (table) => table.dropColumn('retain_versions'));
}
