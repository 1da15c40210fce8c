/**
 * Keyhold throughput benchmark: `npm run bench` (see bench/README.md).
 *
 * One run measures ten scenarios with autocannon, each against a server in its own child process, every Keyhold server
 * configured as `npm start` configures it (default logging: no access log) but for what a deployment must set:
 *   - `baseline`:         a bare fastify JSON echo (bench/echo-server.ts), the ceiling for any fastify POST here;
 *   - `datakey-no-audit`: POST /v1/keys/bench/datakey on a one-worker Keyhold server started with KEYHOLD_AUDIT=off;
 *   - `datakey`:          the same request on a one-worker Keyhold server with the database audit sink on;
 *   - `datakey-k8s`:      datakey as a Kubernetes workload (a service-account JWT) under a policy of 50 statements;
 *   - `aws-generate-data-key`: the same data key through the AWS-KMS-compatible endpoint, a SigV4-signed
 *                         TrentService.GenerateDataKey with a Keyhold-issued access key, on the audited server;
 *   - `decrypt-no-audit`: POST /v1/decrypt of a ciphertext from one datakey call, on the KEYHOLD_AUDIT=off server;
 *   - `decrypt`:          the same request on the audited server;
 *   - `baseline-workers`, `datakey-workers`, `decrypt-workers`: the echo server and Keyhold (KEYHOLD_WORKERS unset:
 *                         npm start's default, a worker per CPU) under node:cluster with as many workers.
 * The Keyhold servers share one PostgreSQL database, root key and bootstrap token. All servers stay up and every
 * scenario is measured in several short interleaved rounds, so a drift in the machine's speed hits all of them
 * alike. It prints req/s, p50/p99 latency and each scenario's ratio to its baseline and to its reference, taken
 * within each round and then the median over rounds, says whether each target (ratios, and p99 for one worker) is
 * met, prints the scaling factors (N workers over one), and writes bench/results/latest.json. The targets are
 * informational; the exit status is non-zero only when a scenario saw errors, a server failed, or the audit log shows
 * the switch did not work (fewer records from an audited server than it answered, or any from the other).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import autocannon from 'autocannon';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { ciphertextOfBlob } from '../src/aws-kms/aws-kms-service.js';
import { variableSchema } from '../src/config-schema.js';
import { benchDatabaseUrl, dropDatabase, recreateDatabase, redactUrl, withClient } from './postgres.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The compiled runner is dist/bench/run.js; the repository root is two levels up. */
const ROOT = resolve(HERE, '..', '..');
const ECHO_SERVER = join(HERE, 'echo-server.js');
const KEYHOLD_CLI = join(ROOT, 'dist', 'src', 'main.js');
const RESULTS_FILE = join(ROOT, 'bench', 'results', 'latest.json');

/** A database of its own, dropped before and after, so a run never sees or leaves another run's rows. */
const BENCH_DATABASE = 'keyhold_bench';
const KEY_NAME = 'bench';
/** Every scenario, in the order they are measured; a run is `ok` only when all of them were measured cleanly. */
const SCENARIOS = [
  'baseline',
  'datakey-no-audit',
  'datakey',
  'datakey-k8s',
  'aws-generate-data-key',
  'decrypt-no-audit',
  'decrypt',
  'baseline-workers',
  'datakey-workers',
  'decrypt-workers',
] as const;
type ScenarioName = (typeof SCENARIOS)[number];

interface Target {
  readonly scenario: ScenarioName;
  readonly reference: ScenarioName;
  /** The share of the reference's req/s the scenario should reach. Informational: it never fails a run. */
  readonly ratio: number;
  readonly why: string;
}

/** A latency target: the scenario's p99 (the median of the rounds') below `maxMs`. Informational too. */
interface LatencyTarget {
  readonly scenario: ScenarioName;
  readonly maxMs: number;
  readonly why: string;
}

/**
 * The informational targets, keyed as in latest.json. A scenario's `vs reference` column shows the one target whose
 * reference is not the baseline.
 */
const TARGETS: Readonly<Record<string, Target>> = {
  datakey: {
    scenario: 'datakey',
    reference: 'baseline',
    ratio: 0.35,
    why: 'one worker, audited, as npm start configures it, over a bare fastify POST (issue 20)',
  },
  'datakey-no-audit': {
    scenario: 'datakey-no-audit',
    reference: 'baseline',
    ratio: 0.3,
    why: 'Keyhold work over a bare fastify POST, without the audit sink',
  },
  'datakey-audit': {
    scenario: 'datakey',
    reference: 'datakey-no-audit',
    ratio: 0.8,
    why: 'the database audit sink (group commit) against KEYHOLD_AUDIT=off (issue 4)',
  },
  'datakey-k8s': {
    scenario: 'datakey-k8s',
    reference: 'datakey',
    ratio: 0.85,
    why: 'a Kubernetes workload under a 50-statement policy against the API-token datakey',
  },
  'aws-generate-data-key': {
    scenario: 'aws-generate-data-key',
    reference: 'datakey',
    ratio: 0.8,
    why:
      'the same audited data key through the AWS endpoint: SigV4 verification (four SHA-256/HMAC passes), the AWS JSON ' +
      'body parsed and validated, and a policy evaluation, against the admin token on the native route',
  },
  decrypt: {
    scenario: 'decrypt',
    reference: 'baseline',
    ratio: 0.35,
    why: 'one worker, audited, as npm start configures it, over a bare fastify POST (issue 20)',
  },
  'decrypt-no-audit': {
    scenario: 'decrypt-no-audit',
    reference: 'baseline',
    ratio: 0.3,
    why: 'Keyhold work over a bare fastify POST, without the audit sink',
  },
  'decrypt-audit': {
    scenario: 'decrypt',
    reference: 'decrypt-no-audit',
    ratio: 0.8,
    why: "the database audit sink against KEYHOLD_AUDIT=off, issue 4's target applied to decrypt",
  },
  'datakey-workers': {
    scenario: 'datakey-workers',
    reference: 'baseline-workers',
    ratio: 0.35,
    why: 'npm start as it is (a worker per CPU), audited, over the echo server with as many workers (issue 20)',
  },
  'decrypt-workers': {
    scenario: 'decrypt-workers',
    reference: 'baseline-workers',
    ratio: 0.35,
    why: 'npm start as it is (a worker per CPU), audited, over the echo server with as many workers (issue 20)',
  },
};

/** The latency targets, keyed as in latest.json: one worker at BENCH_CONNECTIONS (50) connections (issue 20). */
const LATENCY_TARGETS: Readonly<Record<string, LatencyTarget>> = {
  'datakey-p99': { scenario: 'datakey', maxMs: 5, why: 'one worker, audited, 50 connections' },
  'decrypt-p99': { scenario: 'decrypt', maxMs: 5, why: 'one worker, audited, 50 connections' },
};

/** The scaling factors reported (not targets): the multi-worker server's req/s over the one-worker server's. */
const SCALING: ReadonlyArray<{ readonly scenario: ScenarioName; readonly reference: ScenarioName }> = [
  { scenario: 'baseline-workers', reference: 'baseline' },
  { scenario: 'datakey-workers', reference: 'datakey' },
  { scenario: 'decrypt-workers', reference: 'decrypt' },
];

/** KEYHOLD_REPLICA_ID of each Keyhold server; Keyhold adds a random suffix per start. */
const AUDIT_ON_REPLICA = 'bench-audit-on';
/** The multi-worker server's replica name; each worker's chain adds its own suffix. */
const WORKERS_REPLICA = 'bench-workers';
const AUDIT_OFF_REPLICA = 'bench-audit-off';
const K8S_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const K8S_POLICY_STATEMENTS = 50;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
/**
 * The Node.js runtime flags every server runs with: those `npm start` gives Keyhold (package.json). A young
 * generation of 2 × 32 MiB instead of 2 × 16 MiB means fewer scavenges, and fewer objects of requests still in
 * flight (waiting for their audit commit) promoted to the old generation: about a tenth more datakey req/s, measured.
 * The echo server gets the same flags, so the baseline stays the most a fastify POST can do with this runtime.
 */
const SERVER_NODE_FLAGS = ['--max-semi-space-size=32'];
/** Child output forwarded to the terminal, per process; the rest is kept only for failure messages. */
const MAX_FORWARDED_LINES = 20;

/** A failure of the benchmark itself (bad settings, a server that will not start), as opposed to a slow result. */
class BenchError extends Error {}

interface Settings {
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  /** How many times every scenario is measured, in interleaved rounds; each measurement lasts `durationSeconds`. */
  readonly rounds: number;
  readonly connections: number;
  readonly databaseUrl: string;
  /** When set, the Keyhold server runs with `--cpu-prof` and writes its profile here. */
  readonly profileDir: string | undefined;
  /** The multi-worker servers' worker count: what `npm start` runs, the CPUs this process may use. */
  readonly workers: number;
}

function integerSetting(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new BenchError(`${name} must be an integer ≥ ${min}, got "${raw}"`);
  return Number(raw);
}

function loadSettings(): Settings {
  const databaseUrl = benchDatabaseUrl();
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new BenchError('The benchmark runs on PostgreSQL: KEYHOLD_BENCH_DATABASE_URL must be a postgres:// URL');
  }
  const profileDir = process.env.BENCH_PROFILE_DIR || undefined;
  return {
    durationSeconds: integerSetting('BENCH_DURATION', 4, 1),
    rounds: integerSetting('BENCH_ROUNDS', 5, 1),
    warmupSeconds: integerSetting('BENCH_WARMUP', 2, 0),
    connections: integerSetting('BENCH_CONNECTIONS', 50, 1),
    databaseUrl,
    profileDir: profileDir === undefined ? undefined : resolve(profileDir),
    workers: availableParallelism(),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Cleanup: everything started registers how to undo it, and it is undone on success, failure and Ctrl-C alike.

const cleanups: Array<() => Promise<void>> = [];
const running = new Set<ChildProcess>();

async function cleanUp(): Promise<void> {
  while (cleanups.length > 0) {
    const undo = cleanups.pop();
    try {
      await undo?.();
    } catch (error) {
      process.stderr.write(`bench: cleanup failed: ${messageOf(error)}\n`);
    }
  }
}

// Last resort when the runner exits without reaching cleanUp (an uncaught error): no server outlives it.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping servers\n`);
    void cleanUp().finally(() => process.exit(130));
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------------------------------------------
// Child processes

interface ServerProcess {
  readonly name: string;
  readonly url: string;
  readonly child: ChildProcess;
  /** The last lines the process wrote, for failure messages. */
  outputTail(): string;
  exited(): boolean;
  stop(): Promise<void>;
}

/**
 * Starts `node <script>` and resolves once a stdout line matches `listening` (its first group is the URL). Rejects,
 * with the process's last output, if it exits or stays silent for START_TIMEOUT_MS.
 */
function startServer(
  name: string,
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  listening: RegExp,
  nodeOptions: string[] = [],
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...nodeOptions, script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const tail: string[] = [];
  let forwarded = 0;
  const exitPromise = new Promise<void>((resolveExit) => {
    const gone = (): void => {
      running.delete(child);
      resolveExit();
    };
    child.once('exit', gone);
    // A process that could not be spawned emits 'error' and never 'exit'.
    child.once('error', () => {
      if (child.pid === undefined) gone();
    });
  });
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const server: Omit<ServerProcess, 'url'> = {
    name,
    child,
    outputTail: () => tail.join('\n'),
    exited,
    async stop() {
      if (exited() || child.pid === undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exitPromise;
      clearTimeout(timer);
    },
  };
  cleanups.push(() => server.stop());

  return new Promise<ServerProcess>((resolveStart, rejectStart) => {
    let started = false;
    const fail = (reason: string): void => {
      if (started) return;
      started = true;
      clearTimeout(timer);
      rejectStart(new BenchError(`${name} failed to start: ${reason}${tail.length > 0 ? `\n${server.outputTail()}` : ''}`));
    };
    const timer = setTimeout(() => fail(`no "listening" line within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const onLine = (line: string): void => {
      tail.push(line);
      if (tail.length > 50) tail.shift();
      const match = started ? null : listening.exec(line);
      if (match?.[1] !== undefined) {
        started = true;
        clearTimeout(timer);
        resolveStart({ ...server, url: match[1] });
        return;
      }
      // Keyhold logs at its default level (info) now, as npm start runs it: its warnings and errors during a run are
      // worth seeing, its start-up and audit head lines are not; a failing run must not flood.
      if (line.trim() === '' || forwarded > MAX_FORWARDED_LINES || isInfoLogLine(line)) return;
      forwarded += 1;
      process.stderr.write(
        forwarded > MAX_FORWARDED_LINES ? `[${name}] (further output suppressed)\n` : `[${name}] ${line}\n`,
      );
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('error', (error) => fail(error.message));
    child.once('exit', (code, signal) => fail(`exited with ${signal ?? `code ${code}`}`));
  });
}

/** A pino JSON line below warn (level 40). */
function isInfoLogLine(line: string): boolean {
  const level = /^\{"level":(\d+),/.exec(line)?.[1];
  return level !== undefined && Number(level) < 40;
}

async function waitUntilReady(url: string, server: ServerProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (server.exited()) throw new BenchError(`${server.name} exited before it was ready\n${server.outputTail()}`);
    try {
      const response = await fetch(`${url}/readyz`);
      if (response.ok) return;
      last = `${response.status} ${await response.text()}`;
    } catch (error) {
      last = messageOf(error);
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 100));
  }
  throw new BenchError(`${server.name} was not ready within ${START_TIMEOUT_MS} ms: ${last}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Database: a fresh `keyhold_bench` database on the configured PostgreSQL server.

/** Creates the bench database and returns its URL; it is dropped again at the end, whatever happens. */
async function createBenchDatabase(adminUrl: string): Promise<string> {
  let url: string;
  try {
    url = await recreateDatabase(adminUrl, BENCH_DATABASE);
  } catch (error) {
    throw new BenchError(`Could not create database ${BENCH_DATABASE} on ${redactUrl(adminUrl)}: ${messageOf(error)}`);
  }
  cleanups.push(() => dropDatabase(adminUrl, BENCH_DATABASE));
  return url;
}

// ---------------------------------------------------------------------------------------------------------------
// Server CPU accounting. On a shared 2-core machine req/s moves with whatever else runs; the server's own CPU time
// per request moves much less, so it is recorded next to req/s. Linux only (/proc); elsewhere it is left out.

let clockTicksPerSecond: number | undefined;

function ticksPerSecond(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** User plus system CPU seconds a process has used so far, from /proc/PID/stat (proc(5): utime, stime). */
function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined || process.platform !== 'linux') return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces; utime and stime are fields
    // 14 and 15, so 11 and 12 counted from field 3 (the state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/**
 * The same for a server and its children: a server with several workers is a cluster primary (which accepts the
 * connections and hands them out) and its worker processes. Workers are listed in /proc/PID/task/TID/children.
 */
function treeCpuSecondsOf(pid: number | undefined): number | undefined {
  const own = cpuSecondsOf(pid);
  if (own === undefined) return undefined;
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // no children file: count the process alone
  }
  return children.reduce((total, child) => total + (cpuSecondsOf(child) ?? 0), own);
}

/**
 * CPU seconds used so far by each PostgreSQL backend serving Keyhold on the bench database, by process id. The
 * audited scenarios move work into the database (a multi-row insert into an indexed table per group commit); on a
 * shared machine that work competes with the server and autocannon, so it is recorded next to the server's own.
 * Only for a server on this machine (/proc must show the backend as `postgres`); undefined otherwise.
 */
async function databaseBackendCpu(databaseUrl: string): Promise<Map<number, number> | undefined> {
  if (process.platform !== 'linux' || !['127.0.0.1', 'localhost', '[::1]'].includes(new URL(databaseUrl).hostname)) return undefined;
  const { rows } = await withClient(databaseUrl, (client) =>
    client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'keyhold'",
    ),
  );
  const seconds = new Map<number, number>();
  for (const { pid } of rows) {
    let command = '';
    try {
      command = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      // gone, or not ours to see
    }
    const used = command === 'postgres' ? cpuSecondsOf(pid) : undefined;
    if (used !== undefined) seconds.set(pid, used);
  }
  return seconds;
}

/** CPU the backends used between two readings; a backend opened in between counts from zero. */
function databaseCpuBetween(before: Map<number, number> | undefined, after: Map<number, number> | undefined): number | undefined {
  if (before === undefined || after === undefined) return undefined;
  let total = 0;
  for (const [pid, used] of after) total += used - (before.get(pid) ?? 0);
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// Load

interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly url: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  /**
   * Headers made afresh right before each run (warm-up and every round), instead of `headers`: a SigV4 signature is
   * valid for 5 minutes from its X-Amz-Date, and a whole benchmark run lasts longer.
   */
  readonly freshHeaders?: () => Promise<Record<string, string>>;
  readonly body: string;
  /** The server under load; a scenario fails if it dies. */
  readonly server: ServerProcess;
  /** Keyhold's database, whose backends' CPU is recorded; undefined for the baseline. */
  readonly databaseUrl?: string;
}

interface RunCounts {
  readonly requests: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly statusCodes: Record<string, number>;
}

interface ScenarioResult {
  readonly name: string;
  readonly description: string;
  readonly method: 'POST';
  readonly path: string;
  readonly requestBodyBytes: number;
  readonly durationSeconds: number;
  readonly connections: number;
  readonly requestsPerSecond: { readonly mean: number; readonly stddev: number; readonly min: number; readonly max: number };
  readonly latencyMs: { readonly mean: number; readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number };
  /** The server process's CPU over the measured run; undefined where /proc is not available. */
  readonly serverCpu: { readonly microsecondsPerRequest: number; readonly utilisation: number } | undefined;
  /** The same for the PostgreSQL backends serving Keyhold (not the WAL writer or other background processes). */
  readonly databaseCpu: { readonly microsecondsPerRequest: number; readonly utilisation: number } | undefined;
  /** This process's (autocannon's) CPU share over the measured run: near 1.0 means the client was the limit. */
  readonly clientCpuUtilisation: number;
  readonly measured: RunCounts;
  readonly warmup: RunCounts | undefined;
  /** Each round's own figures, in the order measured. */
  readonly rounds: ReadonlyArray<{
    readonly round: number;
    readonly requestsPerSecond: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly serverCpuMicrosecondsPerRequest: number | undefined;
  }>;
  /** The median over rounds of this scenario's req/s over the baseline's in the same round; set once all are measured. */
  ratioToBaseline: number | undefined;
  /** For scenarios measured against another scenario of the same run rather than the baseline (median over rounds). */
  ratioToReference: { readonly reference: string; readonly ratio: number } | undefined;
  /** Why this scenario does not count as a clean run; empty when it does. */
  readonly problems: string[];
}

function countsOf(result: autocannon.Result): RunCounts {
  const statusCodes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stats.count ?? 0;
  return {
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
  };
}

function problemsOf(phase: string, counts: RunCounts): string[] {
  const found: string[] = [];
  if (counts.non2xx > 0) found.push(`${phase}: ${counts.non2xx} non-2xx responses (${JSON.stringify(counts.statusCodes)})`);
  if (counts.errors > 0) found.push(`${phase}: ${counts.errors} connection errors`);
  if (counts.timeouts > 0) found.push(`${phase}: ${counts.timeouts} timeouts`);
  return found;
}

async function fire(scenario: Scenario, settings: Settings, seconds: number): Promise<autocannon.Result> {
  const headers = scenario.freshHeaders === undefined ? scenario.headers : await scenario.freshHeaders();
  return autocannon({
    url: scenario.url + scenario.path,
    method: 'POST',
    headers,
    body: scenario.body,
    connections: settings.connections,
    duration: seconds,
  });
}

/** One measured run of one scenario: what autocannon saw and the CPU each process used meanwhile. */
interface RoundMeasurement {
  readonly round: number;
  readonly requestsPerSecond: number;
  readonly durationSeconds: number;
  readonly latencyMs: { readonly mean: number; readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number };
  readonly serverCpuSeconds: number | undefined;
  readonly databaseCpuSeconds: number | undefined;
  readonly clientCpuSeconds: number;
  readonly counts: RunCounts;
  readonly successes: number;
}

async function measureRound(scenario: Scenario, settings: Settings, round: number): Promise<RoundMeasurement> {
  const databaseCpuBefore = scenario.databaseUrl === undefined ? undefined : await databaseBackendCpu(scenario.databaseUrl);
  const serverCpuBefore = treeCpuSecondsOf(scenario.server.child.pid);
  const clientCpuBefore = process.cpuUsage();
  const result = await fire(scenario, settings, settings.durationSeconds);
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const serverCpuAfter = treeCpuSecondsOf(scenario.server.child.pid);
  const databaseCpuSeconds = databaseCpuBetween(
    databaseCpuBefore,
    scenario.databaseUrl === undefined ? undefined : await databaseBackendCpu(scenario.databaseUrl),
  );
  return {
    round,
    requestsPerSecond: result.requests.total / result.duration,
    durationSeconds: result.duration,
    latencyMs: {
      mean: result.latency.mean,
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
    },
    serverCpuSeconds: serverCpuBefore === undefined || serverCpuAfter === undefined ? undefined : serverCpuAfter - serverCpuBefore,
    databaseCpuSeconds,
    clientCpuSeconds: (clientCpu.user + clientCpu.system) / 1e6,
    counts: countsOf(result),
    successes: result['2xx'],
  };
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function mergeCounts(counts: readonly RunCounts[]): RunCounts {
  const statusCodes: Record<string, number> = {};
  for (const count of counts) {
    for (const [code, n] of Object.entries(count.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n;
  }
  return {
    requests: sum(counts.map((c) => c.requests)),
    non2xx: sum(counts.map((c) => c.non2xx)),
    errors: sum(counts.map((c) => c.errors)),
    timeouts: sum(counts.map((c) => c.timeouts)),
    statusCodes,
  };
}

/** CPU over all rounds: per request answered, and as a share of the time measured. */
function cpuOver(seconds: ReadonlyArray<number | undefined>, requests: number, duration: number) {
  if (seconds.some((s) => s === undefined) || requests === 0) return undefined;
  const total = sum(seconds as number[]);
  return { microsecondsPerRequest: (total * 1e6) / requests, utilisation: total / duration };
}

/**
 * A scenario's result over its rounds. req/s and CPU are totals over all rounds; latency percentiles are the
 * median of the rounds' (max: the largest). Ratios are filled in once every scenario is measured.
 */
function aggregate(scenario: Scenario, settings: Settings, rounds: readonly RoundMeasurement[], warmup: RunCounts | undefined): ScenarioResult {
  const measured = mergeCounts(rounds.map((r) => r.counts));
  const duration = sum(rounds.map((r) => r.durationSeconds));
  const perRound = rounds.map((r) => r.requestsPerSecond);
  const mean = measured.requests / duration;
  const problems = [...(warmup === undefined ? [] : problemsOf('warm-up', warmup)), ...problemsOf('measured', measured)];
  if (sum(rounds.map((r) => r.successes)) === 0) problems.push('measured: no successful response');
  if (scenario.server.exited()) problems.push(`${scenario.server.name} exited during the run\n${scenario.server.outputTail()}`);
  return {
    name: scenario.name,
    description: scenario.description,
    method: 'POST',
    path: scenario.path,
    requestBodyBytes: Buffer.byteLength(scenario.body),
    durationSeconds: duration,
    connections: settings.connections,
    requestsPerSecond: {
      mean,
      stddev: Math.sqrt(sum(perRound.map((rps) => (rps - mean) ** 2)) / perRound.length),
      min: Math.min(...perRound),
      max: Math.max(...perRound),
    },
    latencyMs: {
      mean: sum(rounds.map((r) => r.latencyMs.mean * r.counts.requests)) / Math.max(1, measured.requests),
      p50: median(rounds.map((r) => r.latencyMs.p50)),
      p90: median(rounds.map((r) => r.latencyMs.p90)),
      p99: median(rounds.map((r) => r.latencyMs.p99)),
      max: Math.max(...rounds.map((r) => r.latencyMs.max)),
    },
    serverCpu: cpuOver(rounds.map((r) => r.serverCpuSeconds), measured.requests, duration),
    databaseCpu: cpuOver(rounds.map((r) => r.databaseCpuSeconds), measured.requests, duration),
    clientCpuUtilisation: sum(rounds.map((r) => r.clientCpuSeconds)) / duration,
    measured,
    warmup,
    rounds: rounds.map((r) => ({
      round: r.round,
      requestsPerSecond: r.requestsPerSecond,
      p50Ms: r.latencyMs.p50,
      p99Ms: r.latencyMs.p99,
      serverCpuMicrosecondsPerRequest: cpuOver([r.serverCpuSeconds], r.counts.requests, r.durationSeconds)?.microsecondsPerRequest,
    })),
    ratioToBaseline: undefined,
    ratioToReference: undefined,
    problems,
  };
}

/** One request before the load, so a scenario that only produces errors fails with a readable reason. */
async function postJson(url: string, headers: Record<string, string>, body: unknown, expected: number): Promise<unknown> {
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await response.text();
  if (response.status !== expected) throw new BenchError(`POST ${url} answered ${response.status}, expected ${expected}: ${text}`);
  return JSON.parse(text) as unknown;
}

function field(value: unknown, name: string): string {
  const found = (value as Record<string, unknown> | null)?.[name];
  if (typeof found !== 'string') throw new BenchError(`response has no string "${name}": ${JSON.stringify(value)}`);
  return found;
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

const JSON_HEADERS = { 'content-type': 'application/json' };
/** A realistic small encryption context: what a workload binds to its data keys. */
const CONTEXT = { service: 'bench', tenant: 'tenant-0001' };
/** The datakey request body; the baseline echoes a body of the same bytes. */
const DATAKEY_BODY = { context: CONTEXT };

/**
 * The echo server, answering, as the baseline scenario: one process, or `workers` under node:cluster as Keyhold runs
 * them (`baseline-workers`). It stays up, idle between its rounds.
 */
async function startBaseline(settings: Settings, workers = 1): Promise<Scenario> {
  const name = workers === 1 ? 'echo' : 'echo-workers';
  const server = await startServer(name, ECHO_SERVER, ['0', String(workers)], process.env, /^echo listening on (\S+)/);
  const echoed = await postJson(`${server.url}/echo`, JSON_HEADERS, DATAKEY_BODY, 200);
  if (JSON.stringify(echoed) !== JSON.stringify(DATAKEY_BODY)) throw new BenchError(`echo server answered ${JSON.stringify(echoed)}`);
  return {
    name: workers === 1 ? 'baseline' : 'baseline-workers',
    description:
      'bare fastify JSON echo of a datakey-sized body, no auth, schema or logging' + (workers === 1 ? '' : `, ${workers} cluster workers`),
    url: server.url,
    path: '/echo',
    headers: JSON_HEADERS,
    body: JSON.stringify(DATAKEY_BODY),
    server,
  };
}

/** Environment for the Keyhold child: the runner's, minus any KEYHOLD_* setting that could change what is measured. */
function keyholdEnvironment(values: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('KEYHOLD_')) env[name] = value;
  return { ...env, ...values };
}

interface KubernetesWorkload {
  /** The KEYHOLD_AUTH_CONFIG file naming the issuer and its JWKS file. */
  readonly authConfigPath: string;
  /** A projected service-account token for `system:serviceaccount:bench:worker`, valid for the run. */
  readonly token: string;
}

/** An issuer key pair, its JWKS file and auth config in `dir`, and a token as the kubelet would project it. */
async function kubernetesWorkload(dir: string): Promise<KubernetesWorkload> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256', use: 'sig' };
  const jwksPath = join(dir, 'jwks.json');
  writeFileSync(jwksPath, JSON.stringify({ keys: [jwk] }));
  const authConfigPath = join(dir, 'auth.yaml');
  writeFileSync(
    authConfigPath,
    `kubernetes:\n  issuers:\n    - issuer: ${K8S_ISSUER}\n      audiences: [keyhold]\n      algorithms: [RS256]\n      jwksFile: ${jwksPath}\n`,
  );
  const token = await new SignJWT({
    'kubernetes.io': { namespace: 'bench', serviceaccount: { name: 'worker', uid: randomUUID() }, pod: { name: 'worker-0', uid: randomUUID() } },
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'bench' })
    .setIssuer(K8S_ISSUER)
    .setAudience('keyhold')
    .setSubject('system:serviceaccount:bench:worker')
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(privateKey);
  return { authConfigPath, token };
}

/**
 * 50 statements, as a cluster with many teams would have: other namespaces' grants and denies first, the one that
 * lets the bench workload use its key last, with a context condition, so evaluation runs the whole list.
 */
function benchPolicy(): unknown {
  const statements: unknown[] = [];
  for (let team = 0; statements.length < K8S_POLICY_STATEMENTS - 1; team += 1) {
    statements.push({
      effect: team % 5 === 4 ? 'deny' : 'allow',
      principals: [`k8s:team-${team}:*`, `spiffe://example.org/ns/team-${team}/*`],
      actions: team % 5 === 4 ? ['keys:delete'] : ['datakey', 'encrypt', 'decrypt'],
      keys: [`team-${team}-*`],
    });
  }
  statements.push({
    sid: 'bench-workload',
    effect: 'allow',
    principals: ['k8s:bench:*'],
    actions: ['datakey', 'decrypt'],
    keys: [KEY_NAME],
    conditions: { context: { service: '${principal.namespace}' } },
  });
  return { description: 'benchmark: 50 statements', statements };
}

/** The principal the AWS access key is bound to, as `keyhold aws-credentials create --principal` would bind it. */
const AWS_PRINCIPAL = 'k8s:bench:api';
/** Where and for which region `npm start` serves the AWS endpoint: the defaults, which the bench does not change. */
const AWS_KMS_PATH = String(variableSchema('KEYHOLD_AWS_KMS_PATH').default);
const AWS_REGION = String(variableSchema('KEYHOLD_AWS_REGION').default);
const AWS_JSON_HEADERS = { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.GenerateDataKey' };
/** What an AWS SDK sends for `GenerateDataKey` on `alias/bench`, with datakey's encryption context. */
const AWS_GENERATE_DATA_KEY_BODY = JSON.stringify({ KeyId: `alias/${KEY_NAME}`, KeySpec: 'AES_256', EncryptionContext: CONTEXT });

interface AwsWorkload {
  /** A `TrentService.GenerateDataKey` request's headers, signed now (valid for 5 minutes), with `host`. */
  sign(): Promise<Record<string, string>>;
}

/**
 * An access key bound to {@link AWS_PRINCIPAL} (issued by the admin), a policy that lets that principal make data
 * keys of the bench key, and a signer for the server at `url`, which signs as the AWS SDK for JavaScript does:
 * `@smithy/signature-v4` with its defaults (so `x-amz-content-sha256` too), over host, content type and target.
 */
async function awsWorkload(url: string, adminHeaders: Record<string, string>): Promise<AwsWorkload> {
  const issued = await postJson(`${url}/v1/aws-credentials`, adminHeaders, { name: 'bench', principal: AWS_PRINCIPAL }, 201);
  const policy = await fetch(`${url}/v1/policies/bench-aws`, {
    method: 'PUT',
    headers: adminHeaders,
    body: JSON.stringify({
      description: 'benchmark: the AWS workload',
      statements: [{ sid: 'bench-aws', effect: 'allow', principals: [AWS_PRINCIPAL], actions: ['datakey'], keys: [KEY_NAME] }],
    }),
  });
  if (policy.status !== 201) throw new BenchError(`PUT /v1/policies/bench-aws answered ${policy.status}: ${await policy.text()}`);
  const endpoint = new URL(url);
  const signer = new SignatureV4({
    credentials: { accessKeyId: field(issued, 'accessKeyId'), secretAccessKey: field(issued, 'secretAccessKey') },
    region: AWS_REGION,
    service: 'kms',
    sha256: Hash.bind(null, 'sha256'),
  });
  return {
    async sign() {
      const signed = await signer.sign(
        {
          method: 'POST',
          protocol: endpoint.protocol,
          hostname: endpoint.hostname,
          port: Number(endpoint.port),
          path: AWS_KMS_PATH,
          query: {},
          // The Host header autocannon sends (it keeps one given here rather than adding its own): the signature covers it.
          headers: { host: endpoint.host, ...AWS_JSON_HEADERS },
          body: AWS_GENERATE_DATA_KEY_BODY,
        },
        { signingDate: new Date() },
      );
      return Object.fromEntries(Object.entries(signed.headers).map(([name, value]) => [name.toLowerCase(), value]));
    },
  };
}

/**
 * One signed GenerateDataKey, checked as an AWS SDK client would use it: a 32-byte Plaintext, and a CiphertextBlob
 * that the native `POST /v1/decrypt` opens, with the same context, to that same data key.
 */
async function checkAwsGenerateDataKey(url: string, workload: AwsWorkload, adminHeaders: Record<string, string>): Promise<void> {
  // Node's fetch sets the same Host itself, from the URL.
  const { host: _host, ...headers } = await workload.sign();
  const response = await fetch(url + AWS_KMS_PATH, { method: 'POST', headers, body: AWS_GENERATE_DATA_KEY_BODY });
  const text = await response.text();
  if (response.status !== 200) throw new BenchError(`TrentService.GenerateDataKey answered ${response.status}: ${text}`);
  const answer = JSON.parse(text) as unknown;
  const plaintext = Buffer.from(field(answer, 'Plaintext'), 'base64');
  if (plaintext.length !== 32) throw new BenchError(`GenerateDataKey's Plaintext has ${plaintext.length} bytes, not 32`);
  const ciphertext = ciphertextOfBlob(Buffer.from(field(answer, 'CiphertextBlob'), 'base64'));
  const opened = await postJson(`${url}/v1/decrypt`, adminHeaders, { ciphertext, context: CONTEXT }, 200);
  if (!Buffer.from(field(opened, 'plaintext'), 'base64').equals(plaintext)) {
    throw new BenchError("the native decrypt of GenerateDataKey's CiphertextBlob did not give back its Plaintext");
  }
}

/**
 * Rows of the audit log per Keyhold server, told apart by their replica names. The audit-on server's count must
 * cover every response it gave (each waits for its record), and the audit-off server must have written none: a
 * run in which the sink was not where it should be would make the audit ratio meaningless.
 */
async function auditedRecords(databaseUrl: string): Promise<{ on: number; off: number; workers: number; workerChains: number }> {
  return withClient(databaseUrl, async (client) => {
    const { rows } = await client.query<{ on: string; off: string; workers: string; chains: string }>(
      `SELECT count(*) FILTER (WHERE replica_id LIKE '${AUDIT_ON_REPLICA}-%') AS on,
              count(*) FILTER (WHERE replica_id LIKE '${AUDIT_OFF_REPLICA}-%') AS off,
              count(*) FILTER (WHERE replica_id LIKE '${WORKERS_REPLICA}-%') AS workers,
              count(DISTINCT replica_id) FILTER (WHERE replica_id LIKE '${WORKERS_REPLICA}-%') AS chains
         FROM audit_records`,
    );
    const row = rows[0];
    return { on: Number(row?.on ?? 0), off: Number(row?.off ?? 0), workers: Number(row?.workers ?? 0), workerChains: Number(row?.chains ?? 0) };
  });
}

interface KeyholdScenarios {
  /** On the one-worker servers. */
  readonly scenarios: readonly Scenario[];
  /** On the server with a worker per CPU, measured against the echo server with as many. */
  readonly workersScenarios: readonly Scenario[];
  /** After the run: the audit log must hold a record of every audited response, and none from the other server. */
  checkAuditLog(results: readonly ScenarioResult[]): Promise<void>;
}

/** Both Keyhold servers, set up and checked, with their six scenarios. They stay up, idle between their rounds. */
async function startKeyhold(settings: Settings): Promise<KeyholdScenarios> {
  const databaseUrl = await createBenchDatabase(settings.databaseUrl);
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-bench-'));
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  const token = `kh_bench_${randomBytes(32).toString('base64url')}`;
  const rootKey = randomBytes(32).toString('base64');
  const workload = await kubernetesWorkload(dataDir);
  // Two replicas of one deployment: the same database, root key and bootstrap token; only the audit switch differs.
  const environment = (audit: 'on' | 'off'): NodeJS.ProcessEnv =>
    keyholdEnvironment({
      KEYHOLD_AUTH_CONFIG: workload.authConfigPath,
      KEYHOLD_HOST: '127.0.0.1',
      KEYHOLD_PORT: '0',
      KEYHOLD_DATA_DIR: dataDir,
      KEYHOLD_DATABASE_URL: databaseUrl,
      KEYHOLD_ROOT_KEY: rootKey,
      KEYHOLD_BOOTSTRAP_TOKEN: token,
      // Logging, the access log and everything else as npm start has them: only what a deployment must set is set.
      KEYHOLD_AUDIT: audit,
      KEYHOLD_REPLICA_ID: audit === 'on' ? AUDIT_ON_REPLICA : AUDIT_OFF_REPLICA,
      KEYHOLD_WORKERS: '1',
    });
  let nodeOptions: string[] = [];
  if (settings.profileDir !== undefined) {
    mkdirSync(settings.profileDir, { recursive: true });
    nodeOptions = ['--cpu-prof', `--cpu-prof-dir=${settings.profileDir}`];
  }
  const listening = /^Keyhold listening on (\S+)/;
  // The audit-on server starts first and alone: it migrates the database and creates the admin token.
  const server = await startServer('keyhold', KEYHOLD_CLI, ['server'], environment('on'), listening, nodeOptions);
  await waitUntilReady(server.url, server);
  const headers = { ...JSON_HEADERS, authorization: `Bearer ${token}` };
  await postJson(`${server.url}/v1/keys`, headers, { name: KEY_NAME }, 201);
  const path = `/v1/keys/${KEY_NAME}/datakey`;
  const dataKey = await postJson(server.url + path, headers, DATAKEY_BODY, 200);
  const decryptBody = { ciphertext: field(dataKey, 'ciphertext'), context: CONTEXT };
  const opened = await postJson(`${server.url}/v1/decrypt`, headers, decryptBody, 200);
  if (field(opened, 'plaintext') !== field(dataKey, 'plaintext')) throw new BenchError('decrypt did not return the data key');
  const policy = await fetch(`${server.url}/v1/policies/bench`, { method: 'PUT', headers, body: JSON.stringify(benchPolicy()) });
  if (policy.status !== 201) throw new BenchError(`PUT /v1/policies/bench answered ${policy.status}: ${await policy.text()}`);
  const workloadHeaders = { ...JSON_HEADERS, authorization: `Bearer ${workload.token}` };
  await postJson(server.url + path, workloadHeaders, DATAKEY_BODY, 200);
  const aws = await awsWorkload(server.url, headers);
  await checkAwsGenerateDataKey(server.url, aws, headers);

  // The audit-off server stays idle while the other one is measured, and the other way round.
  const noAuditServer = await startServer('keyhold-no-audit', KEYHOLD_CLI, ['server'], environment('off'), listening, nodeOptions);
  await waitUntilReady(noAuditServer.url, noAuditServer);
  const unaudited = await postJson(noAuditServer.url + path, headers, DATAKEY_BODY, 200);
  const unauditedBody = { ciphertext: field(unaudited, 'ciphertext'), context: CONTEXT };
  const openedElsewhere = await postJson(`${server.url}/v1/decrypt`, headers, unauditedBody, 200);
  if (field(openedElsewhere, 'plaintext') !== field(unaudited, 'plaintext')) {
    throw new BenchError('the two Keyhold servers do not share their keys');
  }
  const openedHere = await postJson(`${noAuditServer.url}/v1/decrypt`, headers, decryptBody, 200);
  if (field(openedHere, 'plaintext') !== field(dataKey, 'plaintext')) {
    throw new BenchError('the KEYHOLD_AUDIT=off server did not decrypt what the audited one issued');
  }

  const datakeyBody = JSON.stringify(DATAKEY_BODY);
  const noAuditDatakey: Scenario = {
    name: 'datakey-no-audit',
    description: `POST ${path} with a two-pair context, on a Keyhold server with KEYHOLD_AUDIT=off`,
    url: noAuditServer.url,
    path,
    headers,
    body: datakeyBody,
    server: noAuditServer,
    databaseUrl,
  };
  const adminDatakey: Scenario = {
    name: 'datakey',
    description: `POST ${path} with a two-pair context (32-byte data key, plaintext and wrapped), audited`,
    url: server.url,
    path,
    headers,
    body: datakeyBody,
    server,
    databaseUrl,
  };
  const workloadDatakey: Scenario = {
    ...adminDatakey,
    name: 'datakey-k8s',
    description: `POST ${path} as a Kubernetes service account (RS256 JWT) under a ${K8S_POLICY_STATEMENTS}-statement policy`,
    headers: workloadHeaders,
  };
  const awsGenerateDataKey: Scenario = {
    name: 'aws-generate-data-key',
    description:
      `POST ${AWS_KMS_PATH} TrentService.GenerateDataKey of alias/${KEY_NAME} (AES_256, the same context), SigV4-signed ` +
      `with an access key bound to ${AWS_PRINCIPAL}, audited; signed afresh before each run and replayed within it`,
    url: server.url,
    path: AWS_KMS_PATH,
    headers: {},
    freshHeaders: () => aws.sign(),
    body: AWS_GENERATE_DATA_KEY_BODY,
    server,
    databaseUrl,
  };
  const decrypt: Scenario = {
    name: 'decrypt',
    description: 'POST /v1/decrypt of one datakey ciphertext with its context, audited',
    url: server.url,
    path: '/v1/decrypt',
    headers,
    body: JSON.stringify(decryptBody),
    server,
    databaseUrl,
  };
  const noAuditDecrypt: Scenario = {
    ...decrypt,
    name: 'decrypt-no-audit',
    description: 'POST /v1/decrypt of the same ciphertext and context, on a Keyhold server with KEYHOLD_AUDIT=off',
    url: noAuditServer.url,
    server: noAuditServer,
  };

  // npm start as it is, on the same database: a worker per CPU (no KEYHOLD_WORKERS), each its own audit chain.
  const workersEnvironment: NodeJS.ProcessEnv = { ...environment('on'), KEYHOLD_REPLICA_ID: WORKERS_REPLICA };
  delete workersEnvironment.KEYHOLD_WORKERS;
  const workersServer = await startServer('keyhold-workers', KEYHOLD_CLI, ['server'], workersEnvironment, listening, nodeOptions);
  await waitUntilReady(workersServer.url, workersServer);
  const openedByWorkers = await postJson(`${workersServer.url}/v1/decrypt`, headers, decryptBody, 200);
  if (field(openedByWorkers, 'plaintext') !== field(dataKey, 'plaintext')) {
    throw new BenchError('the multi-worker server did not decrypt what the one-worker server issued');
  }
  const onWorkers = (scenario: Scenario): Scenario => ({
    ...scenario,
    name: `${scenario.name}-workers`,
    description: `${scenario.description}, on the server with ${settings.workers} workers (npm start's default)`,
    url: workersServer.url,
    server: workersServer,
  });
  const workersScenarios = [onWorkers(adminDatakey), onWorkers(decrypt)];

  const unauditedScenarios = [noAuditDatakey, noAuditDecrypt];
  return {
    scenarios: [noAuditDatakey, adminDatakey, workloadDatakey, awsGenerateDataKey, noAuditDecrypt, decrypt],
    workersScenarios,
    async checkAuditLog(results) {
      const records = await auditedRecords(databaseUrl);
      const isUnaudited = (result: ScenarioResult): boolean =>
        unauditedScenarios.some((scenario) => scenario.name === result.name);
      const byWorkers = results.filter((r) => workersScenarios.some((scenario) => scenario.name === r.name));
      const answeredByWorkers = byWorkers.reduce((total, r) => total + r.measured.requests, 0);
      if (records.workers < answeredByWorkers) {
        byWorkers[0]?.problems.push(`the audit log holds ${records.workers} records of the workers, fewer than their ${answeredByWorkers} measured responses`);
      }
      if (records.workerChains < settings.workers) {
        byWorkers[0]?.problems.push(`only ${records.workerChains} of the ${settings.workers} workers wrote audit records`);
      }
      const audited = results.filter((r) => !isUnaudited(r) && !r.name.startsWith('baseline') && !byWorkers.includes(r));
      const answeredWithAudit = audited.reduce((total, r) => total + r.measured.requests, 0);
      if (records.off > 0) {
        results.find(isUnaudited)?.problems.push(`the KEYHOLD_AUDIT=off server wrote ${records.off} audit records`);
      }
      if (records.on < answeredWithAudit) {
        audited[0]?.problems.push(`the audit log holds ${records.on} records, fewer than the ${answeredWithAudit} measured responses`);
      }
    },
  };
}

/**
 * Measures every scenario `rounds` times, in interleaved rounds: a machine whose speed drifts during a run (a
 * shared VM, a neighbour's burst) then slows all scenarios alike instead of whichever one ran at that moment, and each
 * ratio is taken within a round, between runs seconds apart. The order rotates from round to round, so no scenario
 * always runs first or right after the same other one. All servers stay up; only the one under load works.
 */
async function measureInterleaved(scenarios: readonly Scenario[], settings: Settings): Promise<ScenarioResult[]> {
  const warmups = new Map<string, RunCounts | undefined>();
  if (settings.warmupSeconds > 0) {
    // A fresh server compiles its hot paths during its first seconds of load; every path is primed before any round.
    process.stdout.write(`• warm-up: ${settings.warmupSeconds} s of each scenario…\n`);
  }
  for (const scenario of scenarios) {
    warmups.set(scenario.name, settings.warmupSeconds > 0 ? countsOf(await fire(scenario, settings, settings.warmupSeconds)) : undefined);
  }
  const rounds = new Map<string, RoundMeasurement[]>(scenarios.map((scenario) => [scenario.name, []]));
  for (let round = 0; round < settings.rounds; round += 1) {
    const order = [...scenarios.slice(round % scenarios.length), ...scenarios.slice(0, round % scenarios.length)];
    process.stdout.write(
      `• round ${round + 1} of ${settings.rounds}: ${settings.durationSeconds} s each with ${settings.connections} connections: ` +
        `${order.map((scenario) => scenario.name).join(', ')}\n`,
    );
    for (const scenario of order) {
      rounds.get(scenario.name)!.push(await measureRound(scenario, settings, round + 1));
      if (scenario.server.exited()) throw new BenchError(`${scenario.server.name} exited during the run\n${scenario.server.outputTail()}`);
    }
  }
  return scenarios.map((scenario) => aggregate(scenario, settings, rounds.get(scenario.name)!, warmups.get(scenario.name)));
}

// ---------------------------------------------------------------------------------------------------------------
// Report

function printTable(results: readonly ScenarioResult[]): void {
  const rows = [
    ['scenario', 'req/s (mean)', 'p50 ms', 'p99 ms', 'vs baseline', 'vs reference', 'server CPU µs/req', 'server CPU', 'db CPU µs/req', 'db CPU', 'client CPU', 'non-2xx', 'errors'],
    ...results.map((r) => [
      r.name,
      Math.round(r.requestsPerSecond.mean).toLocaleString('en-US'),
      r.latencyMs.p50.toFixed(1),
      r.latencyMs.p99.toFixed(1),
      r.ratioToBaseline === undefined ? '–' : `${(r.ratioToBaseline * 100).toFixed(1)}%`,
      r.ratioToReference === undefined ? '–' : `${(r.ratioToReference.ratio * 100).toFixed(1)}% of ${r.ratioToReference.reference}`,
      r.serverCpu === undefined ? '–' : r.serverCpu.microsecondsPerRequest.toFixed(0),
      r.serverCpu === undefined ? '–' : `${(r.serverCpu.utilisation * 100).toFixed(0)}%`,
      r.databaseCpu === undefined ? '–' : r.databaseCpu.microsecondsPerRequest.toFixed(0),
      r.databaseCpu === undefined ? '–' : `${(r.databaseCpu.utilisation * 100).toFixed(0)}%`,
      `${(r.clientCpuUtilisation * 100).toFixed(0)}%`,
      String(r.measured.non2xx + (r.warmup?.non2xx ?? 0)),
      String(r.measured.errors + r.measured.timeouts + (r.warmup ? r.warmup.errors + r.warmup.timeouts : 0)),
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const line = (row: string[]): string =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('   ');
  process.stdout.write(`\n${line(rows[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('   ')}\n`);
  for (const row of rows.slice(1)) process.stdout.write(`${line(row)}\n`);
  process.stdout.write('\n');
}

function writeResults(report: unknown): void {
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`Results written to ${relative(process.cwd(), RESULTS_FILE) || RESULTS_FILE}\n`);
}

async function main(): Promise<number> {
  const settings = loadSettings();
  for (const file of [ECHO_SERVER, KEYHOLD_CLI]) {
    if (!existsSync(file)) throw new BenchError(`${file} is missing: run \`npm run build\` first (npm run bench does)`);
  }
  const cpuList = cpus();
  const loadBefore = loadavg();
  process.stdout.write(
    `Keyhold benchmark: node ${process.version}, ${cpuList.length} CPU(s) (${cpuList[0]?.model ?? 'unknown'}), ` +
      `load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, database ${redactUrl(settings.databaseUrl)} → ${BENCH_DATABASE}\n` +
      'autocannon runs in this process and shares the CPUs with the servers under test (and anything else running).\n\n',
  );

  const results: ScenarioResult[] = [];
  let failure: string | undefined;
  try {
    const baseline = await startBaseline(settings);
    const baselineWorkers = await startBaseline(settings, settings.workers);
    const keyhold = await startKeyhold(settings);
    const all = [baseline, ...keyhold.scenarios, baselineWorkers, ...keyhold.workersScenarios];
    results.push(...(await measureInterleaved(all, settings)));
    await keyhold.checkAuditLog(results);
  } catch (error) {
    failure = error instanceof BenchError ? error.message : error instanceof Error ? error.stack ?? error.message : String(error);
  } finally {
    await cleanUp();
  }

  const byName = (name: ScenarioName): ScenarioResult | undefined => results.find((r) => r.name === name);
  // Within each round, then the median over rounds: one round hit by a burst elsewhere on the machine moves it little.
  const ratioOf = (scenario: ScenarioName, reference: ScenarioName): number | undefined => {
    const [measured, against] = [byName(scenario), byName(reference)];
    if (measured === undefined || against === undefined) return undefined;
    const ratios = measured.rounds.flatMap((round) => {
      const other = against.rounds.find((r) => r.round === round.round);
      return other === undefined || other.requestsPerSecond <= 0 ? [] : [round.requestsPerSecond / other.requestsPerSecond];
    });
    return ratios.length === 0 ? undefined : median(ratios);
  };
  // The multi-worker scenarios' baseline is the echo server with as many workers; their reference, the same
  // scenario on one worker (the scaling factor).
  const baselineOf = (name: ScenarioName): ScenarioName => (name.endsWith('-workers') ? 'baseline-workers' : 'baseline');
  for (const result of results) {
    const name = result.name as ScenarioName;
    if (name !== 'baseline-workers') result.ratioToBaseline = ratioOf(name, baselineOf(name));
    const target = Object.values(TARGETS).find((t) => t.scenario === name && t.reference !== baselineOf(name));
    const reference = target?.reference ?? SCALING.find((scaling) => scaling.scenario === name)?.reference;
    const ratio = reference === undefined ? undefined : ratioOf(name, reference);
    if (reference !== undefined && ratio !== undefined) result.ratioToReference = { reference, ratio };
  }
  if (results.length > 0) printTable(results);

  const targets: Record<string, { scenario: string; reference: string; ratio: number | undefined; target: number; met: boolean }> = {};
  for (const [key, target] of Object.entries(TARGETS)) {
    const ratio = ratioOf(target.scenario, target.reference);
    const met = ratio !== undefined && ratio >= target.ratio;
    targets[key] = { scenario: target.scenario, reference: target.reference, ratio, target: target.ratio, met };
    const share = ratio === undefined ? '?' : `${(ratio * 100).toFixed(1)}%`;
    process.stdout.write(
      `${target.scenario}: ${share} of ${target.reference}, ${met ? 'meets' : 'below'} the ${target.ratio * 100}% target ` +
        `(informational: ${target.why})\n`,
    );
  }
  const latencyTargets: Record<string, { scenario: string; p99Ms: number | undefined; maxMs: number; met: boolean }> = {};
  for (const [key, target] of Object.entries(LATENCY_TARGETS)) {
    const p99Ms = byName(target.scenario)?.latencyMs.p99;
    const met = p99Ms !== undefined && p99Ms < target.maxMs;
    latencyTargets[key] = { scenario: target.scenario, p99Ms, maxMs: target.maxMs, met };
    process.stdout.write(
      `${target.scenario}: p99 ${p99Ms === undefined ? '?' : `${p99Ms} ms`}, ${met ? 'meets' : 'misses'} the < ${target.maxMs} ms target ` +
        `(informational: ${target.why}; the median of the rounds' p99, autocannon's 1 ms resolution)\n`,
    );
  }
  const scaling: Record<string, { scenario: string; reference: string; factor: number | undefined }> = {};
  for (const { scenario, reference } of SCALING) {
    const factor = ratioOf(scenario, reference);
    scaling[scenario] = { scenario, reference, factor };
    process.stdout.write(
      `scaling: ${scenario} ${factor === undefined ? '?' : `${factor.toFixed(2)}×`} ${reference} ` +
        `(${settings.workers} workers over one; reported, not a target)\n`,
    );
  }

  const problems = results.flatMap((r) => r.problems.map((p) => `${r.name}: ${p}`));
  if (failure !== undefined) problems.push(failure);
  const missing = SCENARIOS.filter((name) => byName(name) === undefined);
  if (missing.length > 0 && failure === undefined) problems.push(`scenarios not measured: ${missing.join(', ')}`);
  const ok = problems.length === 0 && missing.length === 0;
  writeResults({
    generatedAt: new Date().toISOString(),
    ok,
    environment: {
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cpus: cpuList.length,
      cpuModel: cpuList[0]?.model,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadavg(),
      note: 'autocannon and the servers under test share the same CPUs',
      workers: settings.workers,
    },
    settings: {
      durationSeconds: settings.durationSeconds,
      warmupSeconds: settings.warmupSeconds,
      rounds: settings.rounds,
      connections: settings.connections,
      database: `${redactUrl(settings.databaseUrl)} → ${BENCH_DATABASE}`,
    },
    targets,
    latencyTargets,
    scaling,
    scenarios: results,
    problems,
  });
  if (problems.length > 0) {
    process.stderr.write(`\nbench: FAILED\n  - ${problems.join('\n  - ')}\n`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  async (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof BenchError ? error.message : error instanceof Error ? error.stack : String(error)}\n`);
    await cleanUp();
    process.exit(error instanceof BenchError ? 2 : 1);
  },
);
