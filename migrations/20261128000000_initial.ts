import type { Knex } from 'knex';

/**
 * Timestamps are epoch milliseconds (BIGINT). Key names compare byte-wise on both databases (COLLATE "C" on
 * PostgreSQL, SQLite's default BINARY), so keyset pagination orders them the same way everywhere.
 */
export async function up(knex: Knex): Promise<void> {
  const postgres = knex.client.config.client === 'pg';

  await knex.schema.createTable('root_keys', (table) => {
    table.string('id', 32).primary();
    table.string('check_value', 64).notNullable();
    table.bigInteger('created_at').notNullable();
  });

  await knex.schema.createTable('keys', (table) => {
    table.string('id', 36).primary();
    if (postgres) {
      table.specificType('name', 'varchar(128) COLLATE "C"').notNullable().unique();
    } else {
      table.string('name', 128).notNullable().unique();
    }
    table.text('description').notNullable().defaultTo('');
    table.text('labels').notNullable().defaultTo('{}');
    table.string('state', 20).notNullable();
    table.integer('primary_version').notNullable();
    table.integer('min_decryption_version').notNullable();
    table.integer('rotation_period_seconds').nullable();
    table.bigInteger('next_rotation_at').nullable();
    table.bigInteger('deletion_date').nullable();
    table.bigInteger('created_at').notNullable();
    table.bigInteger('updated_at').notNullable();
    table.bigInteger('destroyed_at').nullable();
    table.index(['state', 'deletion_date'], 'keys_deletion_idx');
    table.index(['next_rotation_at'], 'keys_rotation_idx');
  });

  await knex.schema.createTable('key_versions', (table) => {
    table.string('key_id', 36).notNullable().references('id').inTable('keys').onDelete('CASCADE');
    table.integer('version').notNullable();
    table.string('state', 20).notNullable();
    // Wrapped under the root key; NULL once the version is destroyed.
    table.binary('material').nullable();
    table.string('root_key_id', 32).notNullable().references('id').inTable('root_keys');
    table.bigInteger('created_at').notNullable();
    table.bigInteger('updated_at').notNullable();
    table.bigInteger('destroyed_at').nullable();
    table.primary(['key_id', 'version']);
  });

  await knex.schema.createTable('tokens', (table) => {
    table.string('id', 36).primary();
    table.string('name', 128).notNullable();
    table.string('secret_hash', 64).notNullable().unique();
    table.boolean('admin').notNullable().defaultTo(false);
    table.bigInteger('created_at').notNullable();
    table.bigInteger('expires_at').nullable();
    table.bigInteger('revoked_at').nullable();
  });
  // A name identifies at most one live token (principal `token:NAME`); a revoked name can be issued again.
  await knex.raw('CREATE UNIQUE INDEX tokens_active_name_idx ON tokens (name) WHERE revoked_at IS NULL');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('tokens');
  await knex.schema.dropTableIfExists('key_versions');
  await knex.schema.dropTableIfExists('keys');
  await knex.schema.dropTableIfExists('root_keys');
}
