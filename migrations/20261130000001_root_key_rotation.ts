import type { Knex } from 'knex';

/**
 * Root key rotation. `system_secrets` holds the service's own secrets (the audit key) wrapped under a root key, as
 * key versions are, so that they outlive a root key rotation instead of being derived from the root key. The index
 * serves the start-up count of material per root key and the rewrap's batches.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('system_secrets', (table) => {
    table.string('name', 64).primary();
    table.string('root_key_id', 32).notNullable().references('id').inTable('root_keys');
    // Wrapped under the root key with an AAD that binds `name` (src/crypto/root-keyring.ts).
    table.binary('material').notNullable();
    table.bigInteger('created_at').notNullable();
    table.bigInteger('updated_at').notNullable();
  });
  // Partial: destroyed versions keep their root_key_id but hold nothing to unwrap or rewrap.
  await knex.raw('CREATE INDEX key_versions_root_key_idx ON key_versions (root_key_id) WHERE material IS NOT NULL');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX key_versions_root_key_idx');
  await knex.schema.dropTable('system_secrets');
}
