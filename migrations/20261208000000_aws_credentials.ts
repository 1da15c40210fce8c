import type { Knex } from 'knex';

/**
 * AWS access keys (src/aws-kms/aws-credential-service.ts): an access key id bound to the principal whose requests it
 * signs, with its secret wrapped under the root key like a key version's material, so that a dump of the store alone
 * cannot sign. A name identifies at most one live key; a revoked name can be issued again, as with API tokens.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('aws_credentials', (table) => {
    // `KHAK` and 16 base32 characters.
    table.string('access_key_id', 20).primary();
    table.string('name', 128).notNullable();
    // A SPIFFE ID may be 2048 bytes long.
    table.text('principal_id').notNullable();
    table.string('principal_type', 16).notNullable();
    // The bound principal's attributes, a JSON object of strings.
    table.text('principal_attributes').notNullable();
    table.string('root_key_id', 32).notNullable().references('id').inTable('root_keys');
    // Wrapped under the root key with an AAD that binds the access key id (src/root-keys/root-keyring.ts).
    table.binary('wrapped_secret').notNullable();
    table.text('created_by').notNullable();
    table.bigInteger('created_at').notNullable();
    table.bigInteger('expires_at').nullable();
    table.bigInteger('revoked_at').nullable();
  });
  // Unique among live keys, and the order live keys are listed in.
  await knex.raw('CREATE UNIQUE INDEX aws_credentials_active_name_idx ON aws_credentials (name) WHERE revoked_at IS NULL');
  // The start-up count of material per root key and the rewrap's batches.
  await knex.raw('CREATE INDEX aws_credentials_root_key_idx ON aws_credentials (root_key_id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('aws_credentials');
}
