import type { Knex } from 'knex';

/**
 * The audit log: one row per record, chained per replica (see src/audit/chain.ts), and the MAC'd checkpoints the
 * verifier checks the chains against. Indexes serve the query API's filters, each ending in the time order.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('audit_records', (table) => {
    table.string('replica_id', 128).notNullable();
    table.bigInteger('sequence').notNullable();
    table.bigInteger('time').notNullable();
    table.string('request_id', 64).notNullable();
    table.text('principal_id').nullable();
    table.string('principal_type', 16).nullable();
    table.string('token_id', 64).nullable();
    table.string('source_address', 64).nullable();
    table.string('method', 16).notNullable();
    table.text('route').nullable();
    table.string('action', 32).nullable();
    table.text('key_name').nullable();
    table.string('key_id', 64).nullable();
    // A ciphertext header may claim any u32 version; the record keeps what was claimed.
    table.bigInteger('key_version').nullable();
    // A JSON array of the context's keys, never its values.
    table.text('context_keys').notNullable();
    table.string('decision', 8).nullable();
    table.string('decision_reason', 64).nullable();
    table.text('policy').nullable();
    table.integer('statement').nullable();
    table.string('outcome', 64).notNullable();
    table.integer('status').notNullable();
    table.double('latency_ms').notNullable();
    table.string('hash', 64).notNullable();
    table.primary(['replica_id', 'sequence']);
    table.index(['time', 'replica_id', 'sequence'], 'audit_time_idx');
    table.index(['principal_id', 'time'], 'audit_principal_idx');
    table.index(['key_name', 'time'], 'audit_key_idx');
    table.index(['action', 'time'], 'audit_action_idx');
    table.index(['outcome', 'time'], 'audit_outcome_idx');
  });

  await knex.schema.createTable('audit_checkpoints', (table) => {
    table.string('replica_id', 128).notNullable();
    // `head`: the chain's last committed record, moved with every group commit; `purge`: the last record a
    // retention purge deleted, where verification starts.
    table.string('kind', 8).notNullable();
    table.bigInteger('sequence').notNullable();
    table.string('hash', 64).notNullable();
    table.string('mac', 64).notNullable();
    table.bigInteger('updated_at').notNullable();
    table.primary(['replica_id', 'kind']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('audit_checkpoints');
  await knex.schema.dropTable('audit_records');
}
