import type { Knex } from 'knex';

/**
 * The fleet inventory's rollup (src/audit/key-usage.ts): per key version, principal, action, UTC hour and audit chain,
 * how many successful uses and when the first and last were. The audit repository adds to it in the same transaction
 * as each group commit. Rows are per chain (replica) so replicas never contend for one row.
 *
 * Records written before this migration are counted once here, by the same rule as `keyUsageOf` (a successful use:
 * a single request allowed, 2xx, outcome ok, of a key-use action, naming key id and version; or a batch entry with
 * outcome ok naming them, `count` times).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('key_usage', (table) => {
    table.string('key_id', 64).notNullable();
    // The hour's start, epoch milliseconds.
    table.bigInteger('hour').notNullable();
    table.bigInteger('key_version').notNullable();
    table.text('principal_id').notNullable();
    table.string('action', 32).notNullable();
    table.string('replica_id', 128).notNullable();
    table.bigInteger('count').notNullable();
    table.bigInteger('first_seen').notNullable();
    table.bigInteger('last_seen').notNullable();
    // A query reads one key's hours in a range: the key's prefix of the primary key.
    table.primary(['key_id', 'hour', 'key_version', 'principal_id', 'action', 'replica_id']);
  });
  await backfillKeyUsage(knex);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('key_usage');
}

const KEY_USE_ACTIONS = ['datakey', 'encrypt', 'decrypt', 'rewrap', 'rewrap-revoked'];
const HOUR_MS = 3_600_000;

/**
 * Counts the uses the stored audit records show into `key_usage`, adding to any row already there. One statement:
 * the store is read once, grouped in the database.
 */
export async function backfillKeyUsage(knex: Knex): Promise<void> {
  const postgres = knex.client.config.client === 'pg';
  const actions = KEY_USE_ACTIONS.map(() => '?').join(', ');
  const entry = postgres
    ? {
        from: "audit_records r cross join lateral jsonb_array_elements(r.batch::jsonb -> 'entries') e",
        field: (name: string) => `(e.value ->> '${name}')`,
      }
    : { from: "audit_records r, json_each(r.batch, '$.entries') e", field: (name: string) => `json_extract(e.value, '$.${name}')` };
  const version = postgres ? `${entry.field('keyVersion')}::bigint` : entry.field('keyVersion');
  const count = postgres ? `${entry.field('count')}::bigint` : entry.field('count');
  const singles =
    `select r.key_id as key_id, r.key_version as key_version, r.principal_id as principal_id, r.action as action, ` +
    `r.replica_id as replica_id, r.time as time, 1 as n from audit_records r ` +
    `where r.batch is null and r.outcome = 'ok' and r.decision = 'allow' and r.status between 200 and 299 ` +
    `and r.principal_id is not null and r.key_id is not null and r.key_version is not null and r.action in (${actions})`;
  const batches =
    `select ${entry.field('keyId')} as key_id, ${version} as key_version, r.principal_id as principal_id, ` +
    `${entry.field('action')} as action, r.replica_id as replica_id, r.time as time, ${count} as n ` +
    `from ${entry.from} where r.batch is not null and r.status between 200 and 299 and r.principal_id is not null ` +
    `and ${entry.field('outcome')} = 'ok' and ${entry.field('keyId')} is not null and ${entry.field('keyVersion')} is not null ` +
    `and ${entry.field('action')} in (${actions})`;
  const conflict = postgres
    ? 'count = key_usage.count + excluded.count, first_seen = least(key_usage.first_seen, excluded.first_seen), ' +
      'last_seen = greatest(key_usage.last_seen, excluded.last_seen)'
    : 'count = key_usage.count + excluded.count, first_seen = min(key_usage.first_seen, excluded.first_seen), ' +
      'last_seen = max(key_usage.last_seen, excluded.last_seen)';
  await knex.raw(
    'insert into key_usage (key_id, hour, key_version, principal_id, action, replica_id, count, first_seen, last_seen) ' +
      `select key_id, time - (time % ${HOUR_MS}), key_version, principal_id, action, replica_id, sum(n), min(time), max(time) ` +
      // SQLite needs the WHERE to tell the upsert's ON from a join's (sqlite.org/lang_upsert.html, "parsing ambiguity").
      `from (${singles} union all ${batches}) u where true ` +
      `group by key_id, time - (time % ${HOUR_MS}), key_version, principal_id, action, replica_id ` +
      `on conflict (key_id, hour, key_version, principal_id, action, replica_id) do update set ${conflict}`,
    [...KEY_USE_ACTIONS, ...KEY_USE_ACTIONS],
  );
}
