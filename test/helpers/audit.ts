import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import { KnexAuditRepository } from '../../src/storage/knex-audit-repository.js';
import type { AuditRepository } from '../../src/audit/audit-repository.js';
import { TEST_ROOT_KEY, type ApiResponse, type TestApp } from './app.js';

/** The admin token of every test app is issued from KEYHOLD_BOOTSTRAP_TOKEN under this name. */
export const ADMIN_PRINCIPAL = 'token:bootstrap-admin';

/** The built CLI; `npm run build` makes it. Tests that run it skip when it is missing. */
export const CLI = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));
export const CLI_IS_BUILT = existsSync(CLI);

/** A raw row of audit_records as the database holds it, for tampering and for grepping. */
export type AuditRow = Record<string, unknown> & { replica_id: string; sequence: number | string };

function repository(t: TestApp): AuditRepository {
  return new KnexAuditRepository(t.db);
}

/**
 * Moves the test's clock on as time passes for a running server, whose writer states its head at least every
 * minute: it states it again, so the chain still reads live.
 */
export async function advanceClock(t: TestApp, ms: number): Promise<void> {
  t.clock.advance(ms);
  await t.services.auditWriter?.stateHead();
}

/** This app's chain: one replica id per process start. */
export function replicaOf(t: TestApp): string {
  const writer = t.services.auditWriter;
  if (writer === undefined) throw new Error('The audit writer is off');
  return writer.replicaId;
}

/** Every stored record of every chain, oldest first (by chain, then sequence), read through the repository. */
export async function auditRecords(t: TestApp): Promise<AuditRecord[]> {
  const records: AuditRecord[] = [];
  const repo = repository(t);
  for (const replicaId of await repo.replicas()) {
    for await (const record of repo.chain(replicaId, 0)) records.push(record);
  }
  return records;
}

/** Every row of audit_records as stored, unconverted. */
export async function auditRows(t: TestApp): Promise<AuditRow[]> {
  return (await t.db('audit_records').orderBy(['replica_id', 'sequence'])) as AuditRow[];
}

/** Every row of audit_checkpoints as stored. */
export async function checkpointRows(t: TestApp): Promise<Array<Record<string, unknown>>> {
  return (await t.db('audit_checkpoints').orderBy(['replica_id', 'kind'])) as Array<Record<string, unknown>>;
}

export async function countRecords(t: TestApp): Promise<number> {
  const row = (await t.db('audit_records').count({ n: '*' }).first()) as { n: number | string };
  return Number(row.n);
}

/** The newest record of this app's chain. */
export async function lastRecord(t: TestApp): Promise<AuditRecord> {
  const records = (await auditRecords(t)).filter((record) => record.replicaId === replicaOf(t));
  const last = records[records.length - 1];
  if (last === undefined) throw new Error('No audit record yet');
  return last;
}

/**
 * Makes one call and returns its answer with the one record it wrote. The writer commits before the answer, so
 * the record is there when the call returns; exactly one new record is asserted.
 */
export async function auditedCall(
  t: TestApp,
  method: string,
  url: string,
  body?: unknown,
  token?: string | null,
): Promise<{ response: ApiResponse; record: AuditRecord }> {
  const before = await countRecords(t);
  const response = await t.call(method, url, body, token);
  expect(await countRecords(t), `records written by ${method} ${url}`).toBe(before + 1);
  const record = await lastRecord(t);
  expect(record.requestId).toBe(response.headers['x-request-id']);
  return { response, record };
}

export interface ChainReportBody {
  readonly replicaId: string;
  readonly ok: boolean;
  readonly records: number;
  readonly lastSequence?: number;
  readonly firstBadSequence?: number;
  readonly problem?: string;
  readonly state: 'sealed' | 'live' | 'unsealed';
  readonly heartbeat?: string;
  readonly witnessed?: { sequence: number; time: string; sealed: boolean };
  readonly accepted?: true;
}

export interface VerificationBody {
  readonly ok: boolean;
  readonly chains: ChainReportBody[];
}

/** GET /v1/audit/verify as the admin. Its own record is written after the walk, so it does not see itself. */
export async function verifyViaApi(t: TestApp): Promise<VerificationBody> {
  const response = await t.call('GET', '/v1/audit/verify');
  expect(response.status, response.text).toBe(200);
  return response.body as VerificationBody;
}

/**
 * The verifier called directly, as `keyhold audit verify` does: no request, so no audit record and no commit. For
 * tampering that the writer itself would trip over on the next request.
 */
export async function verifyDirectly(t: TestApp): Promise<VerificationBody> {
  const report = await t.services.auditLog.verify();
  return JSON.parse(JSON.stringify(report)) as VerificationBody;
}

/** The verdict on this app's chain. */
export async function chainReport(t: TestApp): Promise<ChainReportBody> {
  const report = await verifyViaApi(t);
  const chain = report.chains.find((c) => c.replicaId === replicaOf(t));
  if (chain === undefined) throw new Error(`No chain ${replicaOf(t)} in ${JSON.stringify(report)}`);
  return chain;
}

/** An API token for a workload (principal `token:NAME`, not admin). */
export async function issueToken(t: TestApp, name: string): Promise<{ id: string; token: string }> {
  const response = await t.call('POST', '/v1/tokens', { name });
  expect(response.status, response.text).toBe(201);
  return response.body as { id: string; token: string };
}

export async function putPolicy(t: TestApp, name: string, statements: unknown[]): Promise<void> {
  const response = await t.call('PUT', `/v1/policies/${name}`, { statements });
  expect(response.status, response.text).toBeLessThan(300);
}

export async function createKey(t: TestApp, name: string): Promise<{ id: string }> {
  const response = await t.call('POST', '/v1/keys', { name });
  expect(response.status, response.text).toBe(201);
  return response.body as { id: string };
}

/** The environment under which a separate process (the CLI) reaches the same store with the same root key. */
export function cliEnvironment(t: Pick<TestApp, 'store'>): Record<string, string> {
  const env = t.store.environment({ KEYHOLD_ROOT_KEY: TEST_ROOT_KEY, KEYHOLD_LOG_LEVEL: 'warn' });
  let url = env.KEYHOLD_DATABASE_URL ?? '';
  if (t.store.kind === 'postgres') {
    // The test's tables live in its own schema; a libpq startup option puts it on the CLI's search path.
    const separator = url.includes('?') ? '&' : '?';
    url = `${url}${separator}options=${encodeURIComponent(`-c search_path=${t.store.schema}`)}`;
  }
  const result: Record<string, string> = { PATH: process.env.PATH ?? '' };
  for (const [name, value] of Object.entries(env)) if (value !== undefined) result[name] = value;
  delete result.KEYHOLD_BOOTSTRAP_TOKEN;
  result.KEYHOLD_DATABASE_URL = url;
  return result;
}

/**
 * Runs `keyhold audit verify [args]` against the test's store (`t` or, once the app is closed, its store) and
 * collects its exit code and output.
 */
export function runAuditVerifyCli(
  t: Pick<TestApp, 'store'>,
  args: readonly string[] = [],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'audit', 'verify', ...args], { env: cliEnvironment(t), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The lines of a KEYHOLD_AUDIT_FILE, apart: records, and the writer's head statements (`{"headStatement":…}`). */
export function auditFileLines(path: string): { records: string[]; statements: string[] } {
  const lines = readFileSync(path, 'utf8').split('\n');
  if (lines.pop() !== '') throw new Error(`${path} does not end with a newline`);
  const isStatement = (line: string): boolean => line.startsWith('{"headStatement":');
  return { records: lines.filter((line) => !isStatement(line)), statements: lines.filter(isStatement) };
}

/** Raw C0/C1 controls, DEL, and the Unicode line and paragraph separators: none may sit unescaped in a record. */
export const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Makes every insert into audit_records fail, as an audit log that is down: requests must then fail closed. */
export async function breakAuditInserts(t: TestApp): Promise<void> {
  if (t.store.kind === 'sqlite') {
    await t.db.raw(`CREATE TRIGGER audit_down BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'audit down'); END`);
  } else {
    // The app's connection has the test's schema first on its search path, so both land there.
    await t.db.raw(`CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$`);
    await t.db.raw('CREATE TRIGGER audit_down BEFORE INSERT ON audit_records FOR EACH ROW EXECUTE FUNCTION audit_down()');
  }
}

export async function repairAuditInserts(t: TestApp): Promise<void> {
  if (t.store.kind === 'sqlite') {
    await t.db.raw('DROP TRIGGER audit_down');
  } else {
    await t.db.raw('DROP TRIGGER audit_down ON audit_records');
    await t.db.raw('DROP FUNCTION audit_down()');
  }
}
