import type { Knex } from 'knex';

/**
 * Audit format v2: a batch request's summary (`batch`, JSON; null on every other record), and the keys a record
 * names besides its `key_name`, one row per distinct key of its summary, so the query's key filter finds a batch
 * record through an index. Written in the same transaction as the record; only batch records have such rows.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('audit_records', (table) => {
    table.text('batch').nullable();
  });
  await knex.schema.createTable('audit_record_keys', (table) => {
    table.string('replica_id', 128).notNullable();
    table.bigInteger('sequence').notNullable();
    table.text('key_name').notNullable();
    // The record's time, copied so the key filter reads its index in the query's order.
    table.bigInteger('time').notNullable();
    table.primary(['replica_id', 'sequence', 'key_name']);
    table.index(['key_name', 'time', 'replica_id', 'sequence'], 'audit_record_keys_key_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('audit_record_keys');
  // In place: knex's `dropColumn` would copy every record into a new table on SQLite.
  await knex.raw('ALTER TABLE audit_records DROP COLUMN batch');
}
