/**
 * Fleet inventory benchmark: `npm run bench:key-usage` (see bench/README.md).
 *
 * Issue 17 asks that `GET /v1/keys/{name}/usage` be answered "from an index or a rollup, not a scan of millions of
 * records (measure it at 1M records)". For SQLite (a scratch file: what `npm start` uses) and, when a PostgreSQL URL
 * is given, a scratch PostgreSQL database, this runner migrates a store, fills `audit_records` with synthetic
 * records (1,000,000 by default), counts them into `key_usage` with the migration's backfill (the same rows the
 * writer keeps, which test/integration/key-usage.test.ts checks), then times, for the busiest key:
 *
 * - `rollup`: `KnexAuditRepository.keyUsage` (what the service calls), over the default 30-day window, with a
 *   version filter, and over the last day;
 * - `scan`: the same answer computed from `audit_records` through its best index (`audit_key_idx`, key name and
 *   time), the baseline a design without the rollup would run. It leaves batch records out, so it is cheaper than a
 *   complete answer would be.
 *
 * It prints p50 and p99 of each and the ratio. The rows are not valid audit chains; this measures reads only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { backfillKeyUsage } from '../migrations/20261207000000_key_usage.js';
import type { KeyUsageQuery } from '../src/audit/key-usage.js';
import { createDatabase, isPostgres, migrateToLatest, type Database } from '../src/storage/database.js';
import { KnexAuditRepository } from '../src/storage/knex-audit-repository.js';
import { dropDatabase, recreateDatabase, redactUrl } from './postgres.js';

const BENCH_DATABASE = 'keyhold_bench_key_usage';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

function setting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return Number(raw);
}

const RECORDS = setting('BENCH_USAGE_RECORDS', 1_000_000);
/** Over how many days the records are spread, ending now. */
const DAYS = setting('BENCH_USAGE_DAYS', 7);
const RUNS = setting('BENCH_USAGE_RUNS', 50);
const REPLICAS = 3;
const KEYS = 20;
/** Workloads per key: a key is used by a few services, each under its own principal. */
const PRINCIPALS_PER_KEY = 8;
const VERSIONS = 3;
const CHUNK = 100_000;

/**
 * Rows `from` to `to - 1`: record g is on replica g mod 3 at sequence g div 3 + 1, at an even step of time; its key
 * is skewed (key 0 gets about a quarter of the traffic), its principal one of the key's eight, its version mostly the
 * newest, its action datakey, decrypt or encrypt; 3% are denials, 2% failures. One expression for both databases.
 */
function insertSql(postgres: boolean, from: number, to: number, end: number): string {
  const start = end - DAYS * DAY_MS;
  // A deterministic pseudo-random integer in [0, 1000) from g and a salt: both databases give the same records.
  const draw = (salt: number) => `((g * ${2654435761 % 100_000} + ${salt * 7919}) * ${salt + 31} % 1000)`;
  const series = postgres
    ? `generate_series(${from}::bigint, ${to - 1}) as s(g)`
    : `(with recursive s(g) as (select ${from} union all select g + 1 from s where g < ${to - 1}) select g from s) as s`;
  const key = `(case when ${draw(1)} < 200 then 0 else ${draw(2)} % ${KEYS} end)`;
  const version = `(case when ${draw(3)} < 700 then ${VERSIONS} when ${draw(3)} < 950 then ${VERSIONS - 1} else 1 end)`;
  const action = `(case when ${draw(4)} < 450 then 'datakey' when ${draw(4)} < 850 then 'decrypt' else 'encrypt' end)`;
  const outcome = `(case when ${draw(5)} < 950 then 'ok' when ${draw(5)} < 980 then 'KH_ERR_FORBIDDEN' else 'KH_ERR_DECRYPTION_FAILED' end)`;
  const concat = (...parts: string[]) => parts.join(' || ');
  return `
    insert into audit_records (replica_id, sequence, time, request_id, principal_id, principal_type, token_id,
      source_address, method, route, action, key_name, key_id, key_version, context_keys, decision, decision_reason,
      policy, statement, outcome, status, latency_ms, hash)
    select ${concat("'bench-'", `(g % ${REPLICAS})`)}, g / ${REPLICAS} + 1,
      ${start} + (g * ${Math.floor((DAYS * DAY_MS) / RECORDS)}), ${concat("'req-'", 'g')},
      ${concat("'k8s:team-'", 'k', "'-svc-'", `(${draw(6)} % ${PRINCIPALS_PER_KEY})`)}, 'kubernetes', null, '10.0.0.1', 'POST',
      ${concat("'/v1/keys/:name/'", 'a')}, a, ${concat("'key-'", 'k')}, ${concat("'key-id-'", 'k')}, v, '[]',
      case when o = 'KH_ERR_FORBIDDEN' then 'deny' else 'allow' end, 'allowed', 'p', 0, o,
      case when o = 'ok' then 200 when o = 'KH_ERR_FORBIDDEN' then 403 else 400 end, 1.5, 'hash'
    from (select g, ${key} as k, ${version} as v, ${action} as a, ${outcome} as o from ${series}) as r`;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

async function timed(runs: number, work: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  await work();
  const samples: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const started = performance.now();
    await work();
    samples.push(performance.now() - started);
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 0.5), p99: percentile(samples, 0.99) };
}

/** The baseline: the same inventory from the records themselves, through the key-name index. */
function scan(db: Database, keyName: string, query: KeyUsageQuery) {
  const builder = db('audit_records')
    .select('principal_id', 'key_version', 'action')
    .count({ count: '*' })
    .min({ first_seen: 'time' })
    .max({ last_seen: 'time' })
    .where('key_name', keyName)
    .andWhere('time', '>=', query.since.getTime())
    .andWhere('time', '<', query.until.getTime())
    .andWhere({ outcome: 'ok', decision: 'allow' })
    .whereIn('action', ['datakey', 'encrypt', 'decrypt', 'rewrap', 'rewrap-revoked'])
    .whereNotNull('key_id')
    .groupBy('principal_id', 'key_version', 'action')
    .orderByRaw('max(time) desc, principal_id, key_version, action');
  if (query.version !== undefined) builder.andWhere('key_version', query.version);
  return builder;
}

async function run(label: string, db: Database): Promise<void> {
  const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
  await migrateToLatest(db);
  const postgres = isPostgres(db);
  let started = performance.now();
  for (let from = 0; from < RECORDS; from += CHUNK) await db.raw(insertSql(postgres, from, Math.min(RECORDS, from + CHUNK), end));
  const fillS = (performance.now() - started) / 1000;
  started = performance.now();
  await backfillKeyUsage(db);
  const backfillS = (performance.now() - started) / 1000;
  await db.raw(postgres ? 'vacuum analyze' : 'analyze');
  const rollupRows = Number((await db('key_usage').count({ n: '*' }))[0]!.n);
  const keyRows = Number((await db('key_usage').where('key_id', 'key-id-0').count({ n: '*' }))[0]!.n);
  const keyRecords = Number((await db('audit_records').where('key_name', 'key-0').count({ n: '*' }))[0]!.n);
  console.log(`\n${label}: ${RECORDS.toLocaleString('en-US')} records over ${DAYS} days (filled in ${fillS.toFixed(1)} s); ` +
    `rollup ${rollupRows.toLocaleString('en-US')} rows, counted from the records in ${backfillS.toFixed(1)} s (the migration's backfill)`);
  console.log(`busiest key: ${keyRecords.toLocaleString('en-US')} records, ${keyRows.toLocaleString('en-US')} rollup rows`);

  const repository = new KnexAuditRepository(db);
  const now = new Date(end);
  const cases: Array<[string, KeyUsageQuery]> = [
    ['30 days (default window)', { keyId: 'key-id-0', since: new Date(end - 30 * DAY_MS), until: now }],
    ['30 days, ?version=1', { keyId: 'key-id-0', version: 1, since: new Date(end - 30 * DAY_MS), until: now }],
    ['last day', { keyId: 'key-id-0', since: new Date(end - DAY_MS), until: now }],
  ];
  console.log('| query | rollup p50 ms | rollup p99 ms | scan p50 ms | scan p99 ms | scan / rollup (p50) |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [name, query] of cases) {
    const rollup = await timed(RUNS, () => repository.keyUsage(query));
    const baseline = await timed(Math.max(5, Math.floor(RUNS / 5)), () => scan(db, 'key-0', query));
    const same = (await repository.keyUsage(query)).reduce((n, u) => n + u.count, 0);
    const scanned = ((await scan(db, 'key-0', query)) as { count: number | string }[]).reduce((n, u) => n + Number(u.count), 0);
    if (same !== scanned) throw new Error(`${name}: the rollup counts ${same} uses, the scan ${scanned}`);
    console.log(`| ${name} | ${rollup.p50.toFixed(2)} | ${rollup.p99.toFixed(2)} | ${baseline.p50.toFixed(1)} | ${baseline.p99.toFixed(1)} | ${(baseline.p50 / rollup.p50).toFixed(0)}× |`);
  }
}

async function main(): Promise<void> {
  console.log(`key usage benchmark: node ${process.version}, ${cpus().length} CPUs, ${RUNS} runs per rollup query`);
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-bench-usage-'));
  const sqlite = createDatabase({ client: 'sqlite', filename: join(dir, 'keyhold.sqlite') }, { acquireTimeoutMs: 60_000 });
  try {
    await run('SQLite', sqlite);
  } finally {
    await sqlite.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  const adminUrl = process.env.KEYHOLD_BENCH_DATABASE_URL || process.env.KEYHOLD_TEST_DATABASE_URL;
  if (adminUrl === undefined || adminUrl === '') {
    console.log('\nPostgreSQL: skipped (set KEYHOLD_BENCH_DATABASE_URL or KEYHOLD_TEST_DATABASE_URL)');
    return;
  }
  const url = await recreateDatabase(adminUrl, BENCH_DATABASE);
  const pg = createDatabase({ client: 'postgres', url }, { acquireTimeoutMs: 60_000 });
  try {
    await run(`PostgreSQL (${redactUrl(url)})`, pg);
  } finally {
    await pg.destroy();
    await dropDatabase(adminUrl, BENCH_DATABASE);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
