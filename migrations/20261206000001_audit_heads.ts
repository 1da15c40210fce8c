import type { Knex } from 'knex';

/**
 * Each audit chain's latest MAC'd head statement (see src/audit/head-statement.ts): its writer's heartbeat, from
 * which the verifier tells a live chain from one that ended without a seal, and a second point the chain must reach.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('audit_heads', (table) => {
    table.string('replica_id', 128).notNullable().primary();
    table.bigInteger('sequence').notNullable();
    table.string('hash', 64).notNullable();
    // Epoch milliseconds, as the MAC'd statement says; `updated_at` is when it was stored.
    table.bigInteger('time').notNullable();
    table.boolean('sealed').notNullable();
    table.string('mac', 64).notNullable();
    table.bigInteger('updated_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('audit_heads');
}
