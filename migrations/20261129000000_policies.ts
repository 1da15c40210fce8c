import type { Knex } from 'knex';

/** Access policies, and the principal attributes a key binds into every encryption context. */
export async function up(knex: Knex): Promise<void> {
  const postgres = knex.client.config.client === 'pg';

  await knex.schema.createTable('policies', (table) => {
    // Byte-wise order, as for key names, so pagination is the same on both databases.
    if (postgres) table.specificType('name', 'varchar(128) COLLATE "C"').primary();
    else table.string('name', 128).primary();
    // The document as written (JSON); it is validated and compiled whenever it is loaded.
    table.text('document').notNullable();
    table.integer('revision').notNullable();
    table.bigInteger('created_at').notNullable();
    table.bigInteger('updated_at').notNullable();
    // A deleted policy stays as a tombstone, so a name created again never reuses a revision (an ETag) it had.
    table.bigInteger('deleted_at').nullable();
  });

  await knex.schema.alterTable('keys', (table) => {
    // A JSON array of principal attribute names; fixed when the key is created.
    table.text('bound_context').notNullable().defaultTo('[]');
  });
}

/** In place: knex's `dropColumn` rebuilds the table on SQLite, and dropping the old `keys` cascades to its versions. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE keys DROP COLUMN bound_context');
  await knex.schema.dropTable('policies');
}
