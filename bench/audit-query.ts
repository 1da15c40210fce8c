/**
 * Audit query benchmark: `npm run bench:audit-query` (see bench/README.md).
 *
 * Issue 4 asks that GET /v1/audit use "indexes that keep a query over 1M records under 100 ms". This runner creates
 * a scratch PostgreSQL database, runs Keyhold's migrations, fills `audit_records` with synthetic rows (1,000,000 by
 * default, over 30 days, 3 replicas, ~200 principals, ~500 keys, 12 actions, 5 outcomes; 1% of them batch records
 * whose summaries name 3 keys each in `audit_record_keys`), then times
 * `AuditRepository.query` (what the route calls) for each filter the API offers, and shows PostgreSQL's plan for
 * each. It prints a table and writes bench/results/audit-query.json. The exit status is non-zero only when the
 * benchmark itself failed; a slow query is a finding, not an error.
 *
 * The rows are not valid audit chains (their hashes are arbitrary): this measures queries, not verification.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { KnexAuditRepository } from '../src/storage/knex-audit-repository.js';
import type { AuditQuery, AuditRepository } from '../src/audit/audit-repository.js';
import { createDatabase, migrateToLatest, type Database } from '../src/storage/database.js';
import { benchDatabaseUrl, dropDatabase, recreateDatabase, redactUrl } from './postgres.js';
import { ACTIONS, DAY_MS, DAYS, fillAuditRecords, keyName, KEYS, OUTCOMES, PRINCIPALS, principalName, REPLICAS } from './audit-data.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The compiled runner is dist/bench/audit-query.js; the repository root is two levels up. */
const ROOT = resolve(HERE, '..', '..');
const RESULTS_FILE = join(ROOT, 'bench', 'results', 'audit-query.json');
/** Its own database, dropped before and after: do not keep anything in a database of that name. */
const BENCH_DATABASE = 'keyhold_bench_audit_query';
/** Issue 4: a query over 1M records stays under this. */
const BUDGET_MS = 100;
/** The API's default page size; the service asks the repository for one more row to know whether a next page exists. */
const PAGE = 100;
/** Keyhold's default KEYHOLD_DATABASE_TIMEOUT_MS: the repository runs under the statement timeout it has in production. */
const STATEMENT_TIMEOUT_MS = 5000;

class BenchError extends Error {}

function integerSetting(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new BenchError(`${name} must be an integer ≥ ${min}, got "${raw}"`);
  return Number(raw);
}

// ---------------------------------------------------------------------------------------------------------------
// Cases

interface Case {
  readonly name: string;
  /** Why this case is here; the extras probe what issue 4's list does not name. */
  readonly note: string;
  /** Part of issue 4's list (true), or an extra probe (false). */
  readonly required: boolean;
  readonly query: AuditQuery;
}

type Position = NonNullable<AuditQuery['before']>;

/** Follows the cursor the way a client does, `pages - 1` times, and returns the position the next page starts after. */
async function cursorAfterPages(repository: AuditRepository, query: AuditQuery, pages: number): Promise<Position> {
  let before: Position | undefined;
  for (let page = 1; page < pages; page += 1) {
    const records = await repository.query({ ...query, before, limit: PAGE + 1 });
    const last = records.slice(0, PAGE).at(-1);
    if (records.length <= PAGE || last === undefined) throw new BenchError(`${query.principal ?? 'the log'} has fewer than ${pages} pages`);
    before = { time: last.time.getTime(), replicaId: last.replicaId, sequence: last.sequence };
  }
  if (before === undefined) throw new BenchError('pages must be at least 2');
  return before;
}

/** The position of the newest record at or before `time`, as a cursor pointing there would carry it. */
async function cursorAt(client: pg.Client, time: number): Promise<Position> {
  const { rows } = await client.query<{ time: string; replica_id: string; sequence: string }>(
    'SELECT time, replica_id, sequence FROM audit_records WHERE time <= $1 ORDER BY time DESC, replica_id DESC, sequence DESC LIMIT 1',
    [time],
  );
  const row = rows[0];
  if (row === undefined) throw new BenchError('no record that old');
  return { time: Number(row.time), replicaId: row.replica_id, sequence: Number(row.sequence) };
}

async function cases(repository: AuditRepository, client: pg.Client, end: number): Promise<Case[]> {
  const page = { limit: PAGE + 1 };
  // A busy but not the busiest principal and key (rank 20 of 200: ~0.8% of the log; key rank 20 of 500: ~0.4%).
  const principal = principalName(20);
  const key = keyName(20);
  const tenDaysAgo = end - 10 * DAY_MS;
  return [
    { name: 'no filter, first page', note: 'the console’s default view', required: true, query: { ...page } },
    { name: 'principal', note: `${principal}, ~0.8% of the log`, required: true, query: { ...page, principal } },
    { name: 'key', note: `${key}, ~0.4% of the log`, required: true, query: { ...page, key } },
    { name: 'action', note: 'keys:rotate, 1.5% of the log', required: true, query: { ...page, action: 'keys:rotate' } },
    { name: 'outcome', note: 'KH_ERR_FORBIDDEN, 3% of the log', required: true, query: { ...page, outcome: 'KH_ERR_FORBIDDEN' } },
    {
      name: 'since/until (one day, 10 days ago)',
      note: '~33,000 records in the window',
      required: true,
      query: { ...page, since: new Date(tenDaysAgo - DAY_MS), until: new Date(tenDaysAgo) },
    },
    {
      name: 'principal + since (last 7 days)',
      note: `${principal}`,
      required: true,
      query: { ...page, principal, since: new Date(end - 7 * DAY_MS) },
    },
    {
      name: 'page 10 via cursor',
      note: 'no filter; the cursor of page 9, as a client follows nextCursor',
      required: true,
      query: { ...page, before: await cursorAfterPages(repository, page, 10) },
    },
    // Extras: what the list above does not name but a user of the API will do.
    {
      name: 'principal, rarest',
      note: `${principalName(PRINCIPALS - 1)}, ~0.25% of the log`,
      required: false,
      query: { ...page, principal: principalName(PRINCIPALS - 1) },
    },
    {
      name: 'principal, page 10 via cursor',
      note: `${principal}`,
      required: false,
      query: { ...page, principal, before: await cursorAfterPages(repository, { ...page, principal }, 10) },
    },
    {
      name: 'cursor 15 days back',
      note: 'no filter; a cursor kept from an older listing, or page ~1,700',
      required: false,
      query: { ...page, before: await cursorAt(client, end - 15 * DAY_MS) },
    },
    {
      name: 'key + until 20 days ago',
      note: `${key}: an investigation of an old incident`,
      required: false,
      query: { ...page, key, until: new Date(end - 20 * DAY_MS) },
    },
    {
      name: 'action + outcome',
      note: 'keys:delete refused (KH_ERR_FORBIDDEN): ~0.03% of the log, two filters',
      required: false,
      query: { ...page, action: 'keys:delete', outcome: 'KH_ERR_FORBIDDEN' },
    },
    {
      name: 'principal + outcome',
      note: `${principal} refused (KH_ERR_FORBIDDEN): ~0.02% of the log, two filters`,
      required: false,
      query: { ...page, principal, outcome: 'KH_ERR_FORBIDDEN' },
    },
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring and explaining

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Scan Direction'?: string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

interface Explained {
  /** The plan from its top down to its scan, e.g. "Limit → Incremental Sort → Index Scan Backward (audit_key_idx)". */
  readonly path: string;
  readonly scan: string;
  readonly seqScan: boolean;
  readonly rowsRead: number;
  readonly rowsRemovedByFilter: number;
  readonly sharedBlocks: number;
  readonly executionMs: number;
  readonly plan: unknown;
}

function nodeLabel(node: PlanNode): string {
  const type = node['Node Type'] === 'Index Scan' && node['Scan Direction'] === 'Backward' ? 'Index Scan Backward' : node['Node Type'];
  return node['Index Name'] === undefined ? type : `${type} (${node['Index Name']})`;
}

function explain(root: PlanNode, executionMs: number): Explained {
  const path: string[] = [];
  let scanNode: PlanNode = root;
  for (let node: PlanNode | undefined = root; node !== undefined; node = node.Plans?.[0]) {
    path.push(nodeLabel(node));
    scanNode = node;
  }
  const all: PlanNode[] = [];
  const walk = (node: PlanNode): void => {
    all.push(node);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(root);
  const scans = all.filter((node) => node.Plans === undefined);
  return {
    path: path.join(' → '),
    scan: nodeLabel(scanNode),
    seqScan: all.some((node) => node['Node Type'] === 'Seq Scan' || node['Node Type'] === 'Parallel Seq Scan'),
    rowsRead: scans.reduce((sum, node) => sum + (node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0), 0),
    rowsRemovedByFilter: scans.reduce((sum, node) => sum + (node['Rows Removed by Filter'] ?? 0), 0),
    sharedBlocks: (root['Shared Hit Blocks'] ?? 0) + (root['Shared Read Blocks'] ?? 0),
    executionMs,
    plan: root,
  };
}

interface Timing {
  readonly firstMs: number;
  readonly medianMs: number;
  readonly p95Ms: number;
  readonly maxMs: number;
  readonly rows: number;
}

function percentile(sorted: readonly number[], p: number): number {
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

async function time(repository: AuditRepository, query: AuditQuery, runs: number): Promise<Timing> {
  const samples: number[] = [];
  let rows = 0;
  let firstMs = 0;
  // The first call is timed apart: it may read pages from disk and plan cold; the `runs` after it are the figures.
  for (let run = 0; run <= runs; run += 1) {
    const started = performance.now();
    rows = (await repository.query(query)).length;
    const elapsed = performance.now() - started;
    if (run === 0) firstMs = elapsed;
    else samples.push(elapsed);
  }
  samples.sort((a, b) => a - b);
  return { firstMs, medianMs: percentile(samples, 0.5), p95Ms: percentile(samples, 0.95), maxMs: samples.at(-1)!, rows };
}

/**
 * Runs the query once more with knex's `query` event listening, so the plan explained is the one for the exact
 * statement and bindings the repository sends, not a copy of it that could drift.
 */
async function statementOf(db: Database, repository: AuditRepository, query: AuditQuery): Promise<{ sql: string; bindings: unknown[] }> {
  let captured: { sql: string; bindings: unknown[] } | undefined;
  const listener = (data: { sql: string; bindings?: unknown[] }): void => {
    captured ??= { sql: data.sql, bindings: [...(data.bindings ?? [])] };
  };
  db.on('query', listener);
  try {
    await repository.query(query);
  } finally {
    db.removeListener('query', listener);
  }
  if (captured === undefined) throw new BenchError('the repository sent no statement');
  return captured;
}

/** How many records the query's filters match in all (the cursor aside): how selective the case is. */
async function matching(db: Database, query: AuditQuery): Promise<number> {
  const builder = db('audit_records');
  if (query.principal !== undefined) builder.where('principal_id', query.principal);
  const key = query.key;
  if (key !== undefined) {
    builder.where((byKey) =>
      byKey.where('key_name', key).orWhereExists((indexed) =>
        indexed
          .select(db.raw('1'))
          .from('audit_record_keys as k')
          .whereRaw('k.replica_id = audit_records.replica_id and k.sequence = audit_records.sequence')
          .andWhere('k.key_name', key),
      ),
    );
  }
  if (query.action !== undefined) builder.where('action', query.action);
  if (query.outcome !== undefined) builder.where('outcome', query.outcome);
  if (query.since !== undefined) builder.where('time', '>=', query.since.getTime());
  if (query.until !== undefined) builder.where('time', '<', query.until.getTime());
  const row = (await builder.count({ count: '*' }).first()) as { count: number | string } | undefined;
  return Number(row?.count ?? 0);
}

/** EXPLAIN ANALYZE of the captured statement, sent as the driver sent it ($n placeholders and their values). */
async function explainStatement(client: pg.Client, statement: { sql: string; bindings: unknown[] }): Promise<Explained> {
  const result = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>(
    `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${statement.sql}`,
    statement.bindings,
  );
  const top = result.rows[0]!['QUERY PLAN'][0];
  return explain(top.Plan, top['Execution Time']);
}

// ---------------------------------------------------------------------------------------------------------------
// Report

interface CaseResult {
  readonly name: string;
  readonly note: string;
  readonly required: boolean;
  /** Records the filters match in all, cursor aside. */
  readonly matching: number;
  readonly timing: Timing;
  readonly withinBudget: boolean;
  readonly sql: string;
  readonly bindings: unknown[];
  readonly explained: Omit<Explained, 'plan'>;
  readonly plan: unknown;
}

function printTable(results: readonly CaseResult[]): void {
  const rows = [
    ['query', 'matching', 'rows', 'first ms', 'median ms', 'p95 ms', `p95 < ${BUDGET_MS} ms`, 'rows read', 'plan (top → scan)'],
    ...results.map((r) => [
      `${r.required ? '' : '+ '}${r.name}`,
      r.matching.toLocaleString('en-US'),
      String(r.timing.rows),
      r.timing.firstMs.toFixed(1),
      r.timing.medianMs.toFixed(1),
      r.timing.p95Ms.toFixed(1),
      r.withinBudget ? 'yes' : 'NO',
      r.explained.rowsRead.toLocaleString('en-US'),
      `${r.explained.path}${r.explained.seqScan ? '  [SEQ SCAN]' : ''}`,
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const line = (row: string[]): string =>
    row
      .map((cell, column) => (column === 0 || column === row.length - 1 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('   ')
      .trimEnd();
  process.stdout.write(`\n${line(rows[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('   ')}\n`);
  for (const row of rows.slice(1)) process.stdout.write(`${line(row)}\n`);
  process.stdout.write(
    `\n"+" marks extra probes beyond issue 4's list. "matching": records the filters match in all; "rows read": entries the scan visited (EXPLAIN ANALYZE).\n` +
      `Each query asks for ${PAGE + 1} rows, as the service does for a page of ${PAGE} (one more tells whether a next page exists).\n`,
  );
}

async function main(): Promise<number> {
  const total = integerSetting('BENCH_AUDIT_ROWS', 1_000_000, 200_000);
  const runs = integerSetting('BENCH_AUDIT_RUNS', 20, 1);
  // Keeps the filled database for a look with psql (EXPLAIN of a candidate index or query) instead of dropping it.
  const keep = process.env.BENCH_AUDIT_KEEP === '1';
  const adminUrl = benchDatabaseUrl();
  if (!/^postgres(ql)?:\/\//.test(adminUrl)) throw new BenchError('KEYHOLD_BENCH_DATABASE_URL must be a postgres:// URL');
  const cpuList = cpus();
  const loadBefore = loadavg();
  process.stdout.write(
    `Keyhold audit query benchmark: node ${process.version}, ${cpuList.length} CPU(s), load average ` +
      `${loadBefore.map((l) => l.toFixed(2)).join(' ')}, database ${redactUrl(adminUrl)} → ${BENCH_DATABASE}\n` +
      `The ${total.toLocaleString('en-US')} rows are synthetic: their hashes do not form valid audit chains, which a query benchmark does not need.\n\n`,
  );

  let url: string;
  try {
    url = await recreateDatabase(adminUrl, BENCH_DATABASE);
  } catch (error) {
    throw new BenchError(`Could not create database ${BENCH_DATABASE} on ${redactUrl(adminUrl)}: ${error instanceof Error ? error.message : String(error)}`);
  }
  let db: Database | undefined;
  // A plain connection for loading, counting and EXPLAIN: no statement timeout. The repository runs on Keyhold's pool.
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    db = createDatabase({ client: 'postgres', url }, { acquireTimeoutMs: STATEMENT_TIMEOUT_MS });
    await migrateToLatest(db);
    const repository = new KnexAuditRepository(db);
    const end = Date.now();
    const loaded = await (async () => {
      const version = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version;
      process.stdout.write(`PostgreSQL ${version}: inserting…\n`);
      const started = performance.now();
      await fillAuditRecords(client, total, end);
      const insertSeconds = (performance.now() - started) / 1000;
      // A long-lived table has been vacuumed and analysed by autovacuum; a fresh one must be brought to that state.
      process.stdout.write('VACUUM (ANALYZE)…\n');
      await client.query('VACUUM (ANALYZE) audit_records');
      await client.query('VACUUM (ANALYZE) audit_record_keys');
      const size = await client.query<{ table: string; indexes: string }>(
        `SELECT pg_size_pretty(pg_table_size('audit_records')) AS table,
                pg_size_pretty(pg_indexes_size('audit_records')) AS indexes`,
      );
      const indexes = await client.query<{ indexdef: string }>(
        `SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_records' ORDER BY indexname`,
      );
      return {
        version,
        insertSeconds,
        tableSize: size.rows[0]?.table,
        indexSize: size.rows[0]?.indexes,
        indexes: indexes.rows.map((row) => row.indexdef),
        all: await cases(repository, client, end),
      };
    })();
    process.stdout.write(
      `Loaded in ${loaded.insertSeconds.toFixed(1)} s; table ${loaded.tableSize}, indexes ${loaded.indexSize}. ` +
        `Timing ${runs} runs per query, after a first run reported apart…\n`,
    );

    const results: CaseResult[] = [];
    for (const probe of loaded.all) {
      const timing = await time(repository, probe.query, runs);
      const statement = await statementOf(db, repository, probe.query);
      const { plan, ...explained } = await explainStatement(client, statement);
      results.push({
        name: probe.name,
        note: probe.note,
        required: probe.required,
        matching: await matching(db, probe.query),
        timing,
        withinBudget: timing.p95Ms < BUDGET_MS,
        sql: statement.sql,
        bindings: statement.bindings,
        explained,
        plan,
      });
    }
    printTable(results);

    const slow = results.filter((r) => !r.withinBudget);
    const seq = results.filter((r) => r.explained.seqScan);
    process.stdout.write(
      slow.length === 0
        ? `Every query's p95 is under ${BUDGET_MS} ms.\n`
        : `Over ${BUDGET_MS} ms at p95: ${slow.map((r) => r.name).join('; ')}.\n`,
    );
    if (seq.length > 0) process.stdout.write(`Sequential scans: ${seq.map((r) => r.name).join('; ')}.\n`);

    const report = {
      generatedAt: new Date().toISOString(),
      note: 'Synthetic rows: hashes are arbitrary and do not form valid audit chains; only the query paths are measured.',
      environment: {
        node: process.version,
        postgres: loaded.version,
        cpus: cpuList.length,
        cpuModel: cpuList[0]?.model,
        loadAverageBefore: loadBefore,
        loadAverageAfter: loadavg(),
      },
      settings: {
        rows: total,
        runs,
        days: DAYS,
        replicas: REPLICAS,
        principals: PRINCIPALS,
        keys: KEYS,
        actions: ACTIONS.map(([action]) => action),
        outcomes: OUTCOMES.map(([outcome]) => outcome),
        pageLimit: PAGE,
        budgetMs: BUDGET_MS,
        database: `${redactUrl(adminUrl)} → ${BENCH_DATABASE}`,
      },
      load: { seconds: loaded.insertSeconds, tableSize: loaded.tableSize, indexSize: loaded.indexSize, indexes: loaded.indexes },
      queries: results,
    };
    mkdirSync(dirname(RESULTS_FILE), { recursive: true });
    writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`Results written to ${relative(process.cwd(), RESULTS_FILE) || RESULTS_FILE}\n`);
    return 0;
  } finally {
    await client.end().catch(() => undefined);
    await db?.destroy();
    if (keep) process.stdout.write(`BENCH_AUDIT_KEEP=1: ${BENCH_DATABASE} is kept; drop it when done.\n`);
    else await dropDatabase(adminUrl, BENCH_DATABASE);
  }
}

process.once('SIGINT', () => {
  process.stderr.write(`\nbench:audit-query: interrupted; dropping ${BENCH_DATABASE}\n`);
  dropDatabase(benchDatabaseUrl(), BENCH_DATABASE).finally(() => process.exit(130));
});

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench:audit-query: ${error instanceof BenchError ? error.message : error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(error instanceof BenchError ? 2 : 1);
  },
);
