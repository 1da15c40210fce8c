import type { Knex } from 'knex';

/**
 * The change feed replicas invalidate their caches from. `change_sequence` is one row: every write takes its lock
 * as the transaction's last statement, so sequence order is commit order and a reader that has seen N has seen
 * everything before N. `changes` keeps one row per value, pruned after a retention window.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('change_sequence', (table) => {
    table.integer('id').primary();
    table.bigInteger('value').notNullable();
  });
  await knex('change_sequence').insert({ id: 1, value: 0 });

  await knex.schema.createTable('changes', (table) => {
    table.bigInteger('seq').primary();
    table.string('kind', 16).notNullable();
    table.string('action', 32).notNullable();
    table.string('subject', 128).notNullable();
    table.string('key_name', 128).nullable();
    table.bigInteger('at').notNullable();
    table.index(['at'], 'changes_at_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('changes');
  await knex.schema.dropTable('change_sequence');
}
