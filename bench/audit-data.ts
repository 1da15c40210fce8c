/**
 * Synthetic audit records for the benchmarks that query the audit log (audit-query, scale): 30 days, 3 replicas
 * interleaved in time with dense sequences, about 200 principals and 500 keys (a few busy, most quiet), 12 actions
 * and 5 outcomes weighted like a production log, and 1% batch records whose summaries name three keys each in
 * `audit_record_keys`. The rows' hashes are arbitrary: they are not valid audit chains, which a query does not need.
 */
import type pg from 'pg';

export const DAY_MS = 86_400_000;
export const DAYS = 30;
export const REPLICAS = 3;
export const PRINCIPALS = 200;
export const KEYS = 500;
/** Rows per INSERT … SELECT, so progress shows and no single statement holds a million rows in flight. */
const CHUNK = 100_000;

/**
 * Weighted like a production log: data keys and decryption dominate, administration is rare. Twelve actions; the
 * first eight are about one key. Each weight is the upper bound of the action's slice of [0, 1).
 */
export const ACTIONS: ReadonlyArray<readonly [action: string, upTo: number, aboutAKey: boolean]> = [
  ['datakey', 0.45, true],
  ['decrypt', 0.75, true],
  ['encrypt', 0.85, true],
  ['rewrap', 0.88, true],
  ['keys:read', 0.92, true],
  ['keys:create', 0.94, true],
  ['keys:rotate', 0.955, true],
  ['keys:delete', 0.965, true],
  ['policies:read', 0.977, false],
  ['policies:write', 0.985, false],
  ['tokens:write', 0.993, false],
  ['audit:read', 1, false],
];

/** Outcome, HTTP status and share of the log. An unauthenticated request has no principal and no decision. */
export const OUTCOMES: ReadonlyArray<readonly [outcome: string, status: number, upTo: number]> = [
  ['ok', 200, 0.95],
  ['KH_ERR_FORBIDDEN', 403, 0.98],
  ['KH_ERR_KEY_NOT_FOUND', 404, 0.992],
  ['KH_ERR_VALIDATION', 400, 0.998],
  ['KH_ERR_UNAUTHENTICATED', 401, 1],
];

const sqlText = (value: string): string => `'${value.replace(/'/g, "''")}'`;

function caseOf(draw: string, arms: ReadonlyArray<readonly [upTo: number, value: string]>): string {
  return `CASE ${arms.map(([upTo, value]) => `WHEN ${draw} < ${upTo} THEN ${value}`).join(' ')} END`;
}

/**
 * The principal with rank `n` (0 is the busiest). Ranks are drawn as floor(200·u²), so rank 0 makes about 7% of the
 * requests and rank 199 about 0.25%: a few workloads are busy, most are not.
 */
export function principalName(rank: number): string {
  if (rank < 150) return `k8s:team-${rank}:worker`;
  if (rank < 190) return `spiffe://example.org/ns/team-${rank}/sa/worker`;
  return `token:ci-${rank}`;
}

function principalSql(rank: string): string {
  return `CASE WHEN ${rank} < 150 THEN 'k8s:team-' || ${rank} || ':worker'
               WHEN ${rank} < 190 THEN 'spiffe://example.org/ns/team-' || ${rank} || '/sa/worker'
               ELSE 'token:ci-' || ${rank} END`;
}

/** Key rank drawn as floor(500·u^1.5): key-0000 is the busiest (~1.6% of the log), key-0499 sees ~0.13%. */
export const keyName = (rank: number): string => `key-${String(rank).padStart(4, '0')}`;

/**
 * Rows `from` to `to - 1` of `total`: row g belongs to replica g mod 3 with sequence g div 3 + 1, so each replica's
 * chain is dense and in time order, and the three are interleaved in time as live replicas are. Times are spread
 * evenly over the DAYS before `end`. random() is seeded per chunk, so a run is reproducible.
 */
function insertSql(from: number, to: number, total: number, end: number): string {
  const start = end - DAYS * DAY_MS;
  const action = caseOf('u_action', ACTIONS.map(([name, upTo]) => [upTo, sqlText(name)]));
  const aboutAKey = caseOf('u_action', ACTIONS.map(([, upTo, about]) => [upTo, about ? 'true' : 'false']));
  const outcome = caseOf('u_outcome', OUTCOMES.map(([name, , upTo]) => [upTo, sqlText(name)]));
  const status = caseOf('u_outcome', OUTCOMES.map(([, code, upTo]) => [upTo, String(code)]));
  return `
    INSERT INTO audit_records (replica_id, sequence, time, request_id, principal_id, principal_type, token_id,
      source_address, method, route, action, key_name, key_id, key_version, context_keys, decision, decision_reason,
      policy, statement, outcome, status, latency_ms, hash)
    SELECT
      'bench-replica-' || (g % ${REPLICAS}),
      g / ${REPLICAS} + 1,
      ${start}::bigint + (g::numeric * ${DAYS * DAY_MS} / ${total})::bigint,
      md5('request' || g),
      CASE WHEN unauthenticated THEN NULL ELSE ${principalSql('principal_rank')} END,
      CASE WHEN unauthenticated THEN NULL WHEN principal_rank < 150 THEN 'k8s' WHEN principal_rank < 190 THEN 'spiffe' ELSE 'token' END,
      CASE WHEN NOT unauthenticated AND principal_rank >= 190 THEN 'tok_' || principal_rank END,
      '10.0.' || (principal_rank % 250) || '.' || (g % 250),
      CASE WHEN batch_row OR action_name NOT IN ('keys:read', 'policies:read', 'audit:read') THEN 'POST' ELSE 'GET' END,
      CASE WHEN batch_row THEN '/v1/batch' WHEN about_a_key THEN '/v1/keys/:name/' || action_name
           ELSE '/v1/' || split_part(action_name, ':', 1) END,
      CASE WHEN unauthenticated THEN NULL WHEN batch_row THEN 'batch' ELSE action_name END,
      CASE WHEN about_a_key AND NOT batch_row THEN 'key-' || lpad(key_rank::text, 4, '0') END,
      CASE WHEN about_a_key AND NOT batch_row AND outcome_name <> 'KH_ERR_KEY_NOT_FOUND' THEN md5('key' || key_rank) END,
      CASE WHEN about_a_key AND NOT batch_row AND outcome_name <> 'KH_ERR_KEY_NOT_FOUND' THEN 1 + key_rank % 4 END,
      CASE WHEN action_name IN ('datakey', 'encrypt', 'decrypt', 'rewrap') THEN '["service","tenant"]' ELSE '[]' END,
      CASE WHEN unauthenticated THEN NULL WHEN outcome_name = 'KH_ERR_FORBIDDEN' THEN 'deny' ELSE 'allow' END,
      CASE WHEN unauthenticated THEN 'missing-credentials' WHEN outcome_name = 'KH_ERR_FORBIDDEN' THEN 'no-statement' END,
      CASE WHEN NOT unauthenticated AND outcome_name <> 'KH_ERR_FORBIDDEN' THEN 'team-' || (principal_rank % 50) END,
      CASE WHEN NOT unauthenticated AND outcome_name <> 'KH_ERR_FORBIDDEN' THEN principal_rank % 7 END,
      outcome_name,
      status_code,
      round((0.2 + u_latency * u_latency * 30)::numeric, 3),
      md5('hash' || g) || md5('chain' || g)
    FROM (
      SELECT g, u_action, u_outcome, u_latency,
             floor(${PRINCIPALS} * u_principal * u_principal)::int AS principal_rank,
             floor(${KEYS} * power(u_key, 1.5))::int AS key_rank,
             ${action} AS action_name,
             ${aboutAKey} AS about_a_key,
             ${outcome} AS outcome_name,
             ${status} AS status_code,
             ${outcome} = 'KH_ERR_UNAUTHENTICATED' AS unauthenticated,
             g % 100 = 50 AS batch_row
        FROM (
          SELECT g, random() AS u_principal, random() AS u_key, random() AS u_action, random() AS u_outcome,
                 random() AS u_latency
            FROM generate_series(${from}, ${to - 1}) AS g
        ) AS draws
    ) AS rows`;
}

export interface FillOptions {
  /**
   * Drop `audit_records`' secondary indexes before the load and build them again after it from their own
   * definitions, as a restore does: several times faster than updating five indexes row by row. The primary key
   * stays, so a duplicate still fails.
   */
  readonly deferIndexes?: boolean;
  /** Called after each chunk with the rows inserted so far. */
  readonly progress?: (rows: number) => void;
}

/**
 * Inserts `total` synthetic records ending at `end` (epoch ms) and indexes the batch records' keys, as the writer
 * does. Chunk seeds are fixed, so a run is reproducible.
 */
export async function fillAuditRecords(client: pg.Client, total: number, end: number, options: FillOptions = {}): Promise<void> {
  // Losing these rows in a crash costs nothing; not waiting for each chunk's WAL flush saves time.
  await client.query('SET synchronous_commit = off');
  const deferred = options.deferIndexes === true ? await dropSecondaryIndexes(client) : [];
  for (let from = 0; from < total; from += CHUNK) {
    const to = Math.min(total, from + CHUNK);
    await client.query(`SELECT setseed(${(from / total) * 0.5})`);
    await client.query(insertSql(from, to, total, end));
    if (options.progress !== undefined) options.progress(to);
    else if (process.stdout.isTTY) process.stdout.write(`\r  ${to.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} rows`);
  }
  if (options.progress === undefined && process.stdout.isTTY) process.stdout.write('\n');
  for (const definition of deferred) await client.query(definition);
  // Each batch record's summary names three keys, drawn as single requests' keys are; the writer indexes them so.
  await client.query(`
    INSERT INTO audit_record_keys (replica_id, sequence, key_name, time)
    SELECT DISTINCT replica_id, sequence, 'key-' || lpad(floor(${KEYS} * power(random(), 1.5))::int::text, 4, '0'), time
      FROM audit_records CROSS JOIN generate_series(1, 3)
     WHERE action = 'batch'`);
}

/** Drops the indexes of `audit_records` that back no constraint and returns the statements that create them again. */
async function dropSecondaryIndexes(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string; definition: string }>(
    `SELECT indexname AS name, indexdef AS definition FROM pg_indexes
      WHERE schemaname = current_schema() AND tablename = 'audit_records'
        AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'audit_records'::regclass)`,
  );
  for (const { name } of rows) await client.query(`DROP INDEX ${name}`);
  return rows.map((row) => row.definition);
}

