/**
 * Kubernetes KMS v2 plugin benchmark: `npm run bench:kms-plugin` (see bench/README.md).
 *
 * Starts Keyhold as `npm start` runs it (`node dist/src/main.js server`: SQLite in a temporary data directory, audit
 * on) in a child process, creates a key and an API token, and spawns the built plugin (`keyhold kms-plugin`) on a
 * unix socket in another. Then, with a fixed number of calls in flight, it measures in interleaved rounds:
 *
 * - `grpc-encrypt`: KMS v2 Encrypt of a fresh 32-byte DEK seed over the socket, as the apiserver calls it;
 * - `grpc-decrypt`: KMS v2 Decrypt of one such ciphertext;
 * - `http-encrypt` and `http-decrypt`, the baselines: the HTTP calls the plugin makes for each
 *   (`POST /v1/keys/{key}/encrypt` and `/decrypt`, the same body, context, token and x-request-id), made directly to
 *   the service from this process with the same client (Node's fetch).
 *
 * The ratio of each gRPC scenario's calls/s to its baseline's, taken within each round and reported as the median
 * over rounds, is what the plugin (the extra hop: gRPC over the socket, its process, base64 and JSON) costs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { KMS_CONTEXT } from '../src/kms-plugin/keyhold-kms.js';
import { loadKmsService } from '../src/kms-plugin/server.js';
import { setting } from './setting.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** dist/bench → the built CLI, dist/src/main.js. */
const KEYHOLD_CLI = resolve(HERE, '../src/main.js');
const RESULTS_FILE = resolve(HERE, '../../bench/results/kms-plugin.json');
const KEY_NAME = 'k8s-secrets';
const SEED_BYTES = 32;
/** The apiserver's KMS v2 calls carry a deadline; this one is never reached in a healthy run. */
const CALL_DEADLINE_MS = 5000;
const START_TIMEOUT_MS = 20_000;

const SECONDS = setting('BENCH_KMS_SECONDS', 3);
const ROUNDS = setting('BENCH_KMS_ROUNDS', 4);
const WARMUP = setting('BENCH_KMS_WARMUP', 1, 0);
const CONCURRENCY = setting('BENCH_KMS_CONCURRENCY', 16);

class BenchError extends Error {}

// ---------------------------------------------------------------------------------------------------------------
// Child processes

interface Child {
  readonly name: string;
  readonly child: ChildProcess;
  readonly tail: string[];
  /** user + system CPU time of the process so far, in µs (Linux /proc; 0 elsewhere). */
  cpuMicros(): number;
  stop(): Promise<void>;
}

const children: Child[] = [];

const CLOCK_TICK_MICROS = 10_000; // USER_HZ is 100 on Linux

function cpuMicrosOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MICROS;
  } catch {
    return 0;
  }
}

/** Spawns `node <args>` and resolves once an output line matches `ready` (its first group, if any, is returned). */
function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<{ process: Child; match: string }> {
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  let stopping = false;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const handle: Child = {
    name,
    child,
    tail,
    cpuMicros: () => cpuMicrosOf(child.pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      stopping = true;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  children.push(handle);
  return new Promise((resolveStart, rejectStart) => {
    let started = false;
    const fail = (reason: string): void => {
      if (started) return;
      started = true;
      clearTimeout(timer);
      rejectStart(new BenchError(`${name} failed to start: ${reason}\n${tail.join('\n')}`));
    };
    const timer = setTimeout(() => fail(`no ready line within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const onLine = (line: string): void => {
      tail.push(line);
      if (tail.length > 50) tail.shift();
      const match = started ? null : ready.exec(line);
      if (match !== null) {
        started = true;
        clearTimeout(timer);
        resolveStart({ process: handle, match: match[1] ?? '' });
      } else if (started && !stopping && line.trim() !== '') {
        process.stderr.write(`[${name}] ${line}\n`);
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('error', (error) => fail(error.message));
    child.once('exit', (code, signal) => fail(`exited with ${signal ?? `code ${code}`}`));
  });
}

/** The environment without Keyhold's own KEYHOLD_* settings from the shell, plus `values`. */
function environment(values: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('KEYHOLD_')) env[name] = value;
  return { ...env, ...values };
}

async function postJson(url: string, token: string, body: unknown, expected: number): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== expected) throw new BenchError(`POST ${new URL(url).pathname} answered ${response.status}, expected ${expected}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------------------
// The two clients

type Rpc = (request: object, options: { deadline: number }, callback: (error: ServiceError | null, answer: unknown) => void) => void;

/** A client shaped like the apiserver's (test/integration/kms-plugin.test.ts): the plugin's .proto, over its socket. */
function grpcClient(socket: string) {
  const KeyManagementService = loadKmsService();
  const client = new KeyManagementService(`unix:${socket}`, credentials.createInsecure()) as Client & Record<string, Rpc>;
  const call = <T>(method: string, request: object): Promise<T> =>
    new Promise((resolveCall, rejectCall) => {
      client[method]!.call(client, request, { deadline: Date.now() + CALL_DEADLINE_MS }, (error, answer) =>
        error ? rejectCall(new BenchError(`${method}: ${error.details || error.message}`)) : resolveCall(answer as T),
      );
    });
  return {
    status: () => call<{ version: string; healthz: string; key_id: string }>('Status', {}),
    encrypt: (plaintext: Buffer) => call<{ ciphertext: Buffer; key_id: string }>('Encrypt', { plaintext, uid: randomUUID() }),
    decrypt: (ciphertext: Buffer, keyId: string) => call<{ plaintext: Buffer }>('Decrypt', { ciphertext, key_id: keyId, annotations: {}, uid: randomUUID() }),
    close: () => client.close(),
  };
}

/** The HTTP calls the plugin makes (src/kms-plugin/keyhold-kms.ts), made directly: same headers, body and client. */
function httpClient(baseUrl: string, token: string) {
  const call = async (operation: 'encrypt' | 'decrypt', body: unknown): Promise<Record<string, string>> => {
    const response = await fetch(`${baseUrl}/v1/keys/${encodeURIComponent(KEY_NAME)}/${operation}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        'content-type': 'application/json',
        'x-request-id': randomUUID(),
      },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new BenchError(`POST /v1/keys/${KEY_NAME}/${operation} answered ${response.status}: ${text}`);
    return JSON.parse(text) as Record<string, string>;
  };
  return {
    encrypt: (plaintext: Buffer) => call('encrypt', { plaintext: plaintext.toString('base64'), context: KMS_CONTEXT }),
    decrypt: (ciphertext: string) => call('decrypt', { ciphertext, context: KMS_CONTEXT }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring

interface Scenario {
  readonly name: string;
  /** The scenario whose calls/s this one is compared with, if any. */
  readonly baseline?: string;
  readonly describe: string;
  readonly call: () => Promise<void>;
}

interface RunResult {
  readonly round: number;
  readonly calls: number;
  readonly seconds: number;
  readonly callsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU time per call of the Keyhold server and of the plugin process, µs. */
  readonly serverCpuMicrosPerCall: number;
  readonly pluginCpuMicrosPerCall: number;
  readonly loadAverage: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 0.5);
}

/** `CONCURRENCY` workers each calling in a loop until `seconds` have passed; any failed call fails the run. */
async function measure(scenario: Scenario, seconds: number, round: number, server: Child, plugin: Child): Promise<RunResult> {
  const latencies: number[] = [];
  const serverCpu = server.cpuMicros();
  const pluginCpu = plugin.cpuMicros();
  const started = performance.now();
  const end = started + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const at = performance.now();
      await scenario.call();
      latencies.push(performance.now() - at);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const calls = latencies.length;
  return {
    round,
    calls,
    seconds: elapsed,
    callsPerSecond: calls / elapsed,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    serverCpuMicrosPerCall: (server.cpuMicros() - serverCpu) / calls,
    pluginCpuMicrosPerCall: (plugin.cpuMicros() - pluginCpu) / calls,
    loadAverage: loadavg()[0]!,
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  console.log(
    `kms-plugin benchmark: node ${process.version}, ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
      `${CONCURRENCY} in flight, ${ROUNDS} rounds of ${SECONDS} s per scenario, ${WARMUP} s warm-up`,
  );
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-bench-kms-'));
  const adminToken = `kh_bench_${randomBytes(24).toString('hex')}`;
  let grpc: ReturnType<typeof grpcClient> | undefined;
  try {
    // Keyhold as `npm start` runs it: its node flag, SQLite, the database audit sink on (the default), but one worker:
    // the server CPU per call is read from its one process, and the plugin's cost is the point here, not the server's.
    const { process: server, match: url } = await startChild(
      'keyhold',
      ['--max-semi-space-size=32', KEYHOLD_CLI, 'server'],
      environment({
        KEYHOLD_DATA_DIR: dataDir,
        KEYHOLD_DATABASE_URL: `sqlite:${join(dataDir, 'keyhold.sqlite')}`,
        KEYHOLD_ROOT_KEY: randomBytes(32).toString('base64'),
        KEYHOLD_BOOTSTRAP_TOKEN: adminToken,
        KEYHOLD_LOG_LEVEL: 'warn',
        KEYHOLD_WORKERS: '1',
        KEYHOLD_HOST: '127.0.0.1',
        KEYHOLD_PORT: '0',
      }),
      /^Keyhold listening on (\S+)/,
    );
    await postJson(`${url}/v1/keys`, adminToken, { name: KEY_NAME }, 201);
    // The plugin's own token, as docs/kms-plugin.md sets it up; the baseline uses the same one.
    const issued = await postJson(`${url}/v1/tokens`, adminToken, { name: 'kms-plugin', admin: true }, 201);
    const token = issued.token as string;
    const tokenFile = join(dataDir, 'kms-plugin.token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const socket = join(dataDir, 'kms.sock');
    const { process: plugin } = await startChild(
      'kms-plugin',
      [KEYHOLD_CLI, 'kms-plugin', '--socket', socket, '--key', KEY_NAME, '--token-file', tokenFile],
      environment({ KEYHOLD_ADDR: url }),
      /serving KMS v2/,
    );

    grpc = grpcClient(socket);
    const http = httpClient(url, token);
    const status = await grpc.status();
    if (status.healthz !== 'ok') throw new BenchError(`the plugin's Status is ${status.healthz}`);
    // One check of each path before the load: both decrypt what the other encrypted.
    const seed = randomBytes(SEED_BYTES);
    const sealed = await grpc.encrypt(seed);
    const viaHttp = await http.encrypt(seed);
    if (!Buffer.from((await http.decrypt(sealed.ciphertext.toString('utf8'))).plaintext!, 'base64').equals(seed)) {
      throw new BenchError('HTTP decrypt of the plugin\'s ciphertext did not give back the seed');
    }
    if (!(await grpc.decrypt(Buffer.from(viaHttp.ciphertext!, 'utf8'), sealed.key_id)).plaintext.equals(seed)) {
      throw new BenchError('gRPC Decrypt of the service\'s ciphertext did not give back the seed');
    }
    console.log(`server ${url} (pid ${server.child.pid}), plugin unix:${socket} (pid ${plugin.child.pid}), key_id ${status.key_id}; ` +
      `ciphertext of a ${SEED_BYTES}-byte seed: ${sealed.ciphertext.length} bytes`);

    const ciphertextText = sealed.ciphertext.toString('utf8');
    const scenarios: Scenario[] = [
      { name: 'grpc-encrypt', baseline: 'http-encrypt', describe: 'KMS v2 Encrypt of a fresh 32-byte seed over the unix socket', call: async () => void (await grpc!.encrypt(randomBytes(SEED_BYTES))) },
      { name: 'http-encrypt', describe: `POST /v1/keys/${KEY_NAME}/encrypt, the same body, directly`, call: async () => void (await http.encrypt(randomBytes(SEED_BYTES))) },
      { name: 'grpc-decrypt', baseline: 'http-decrypt', describe: 'KMS v2 Decrypt of one ciphertext over the unix socket', call: async () => void (await grpc!.decrypt(sealed.ciphertext, sealed.key_id)) },
      { name: 'http-decrypt', describe: `POST /v1/keys/${KEY_NAME}/decrypt, the same body, directly`, call: async () => void (await http.decrypt(ciphertextText)) },
    ];

    if (WARMUP > 0) {
      process.stdout.write(`• warm-up: ${WARMUP} s of each scenario…\n`);
      for (const scenario of scenarios) await measure(scenario, WARMUP, 0, server, plugin);
    }
    const runs = new Map<string, RunResult[]>(scenarios.map((s) => [s.name, []]));
    for (let round = 1; round <= ROUNDS; round += 1) {
      // Rotated by one each round: no scenario always runs first or after the same neighbour.
      const order = scenarios.map((_, i) => scenarios[(i + round - 1) % scenarios.length]!);
      const line: string[] = [];
      for (const scenario of order) {
        const result = await measure(scenario, SECONDS, round, server, plugin);
        runs.get(scenario.name)!.push(result);
        line.push(`${scenario.name} ${Math.round(result.callsPerSecond)}/s`);
      }
      process.stdout.write(`• round ${round}/${ROUNDS}: ${line.join(', ')}\n`);
    }

    const summary = scenarios.map((scenario) => {
      const results = runs.get(scenario.name)!;
      const calls = results.reduce((n, r) => n + r.calls, 0);
      const seconds = results.reduce((n, r) => n + r.seconds, 0);
      const ratios = scenario.baseline === undefined
        ? undefined
        : results.map((r) => r.callsPerSecond / runs.get(scenario.baseline!)!.find((b) => b.round === r.round)!.callsPerSecond);
      return {
        scenario: scenario.name,
        describe: scenario.describe,
        baseline: scenario.baseline ?? null,
        calls,
        callsPerSecond: calls / seconds,
        p50Ms: median(results.map((r) => r.p50Ms)),
        p99Ms: median(results.map((r) => r.p99Ms)),
        ratioToBaseline: ratios === undefined ? null : median(ratios),
        ratiosByRound: ratios ?? null,
        serverCpuMicrosPerCall: median(results.map((r) => r.serverCpuMicrosPerCall)),
        pluginCpuMicrosPerCall: median(results.map((r) => r.pluginCpuMicrosPerCall)),
        rounds: results,
      };
    });

    const header = ['scenario', 'calls/s', 'p50 ms', 'p99 ms', 'vs baseline', 'server CPU µs/call', 'plugin CPU µs/call'];
    const rows = summary.map((s) => [
      s.scenario,
      Math.round(s.callsPerSecond).toLocaleString('en-US'),
      s.p50Ms.toFixed(2),
      s.p99Ms.toFixed(2),
      s.ratioToBaseline === null ? '(baseline)' : `${(s.ratioToBaseline * 100).toFixed(1)} %`,
      Math.round(s.serverCpuMicrosPerCall).toString(),
      s.baseline === null ? '-' : Math.round(s.pluginCpuMicrosPerCall).toString(),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const format = (row: string[]) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('   ');
    process.stdout.write(`\n${format(header)}\n${widths.map((w) => '-'.repeat(w)).join('   ')}\n${rows.map(format).join('\n')}\n\n`);
    process.stdout.write('calls/s: total over the rounds; p50, p99, ratio and CPU: median of the rounds\' (ratio taken within each round).\n');

    mkdirSync(dirname(RESULTS_FILE), { recursive: true });
    writeFileSync(
      RESULTS_FILE,
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          node: process.version,
          cpus: cpus().length,
          settings: { seconds: SECONDS, rounds: ROUNDS, warmupSeconds: WARMUP, concurrency: CONCURRENCY, seedBytes: SEED_BYTES },
          store: 'sqlite',
          audit: 'on',
          ciphertextBytes: sealed.ciphertext.length,
          scenarios: summary,
        },
        null,
        2,
      )}\n`,
    );
    process.stdout.write(`Results written to ${relative(process.cwd(), RESULTS_FILE) || RESULTS_FILE}\n`);
  } finally {
    grpc?.close();
    // The plugin first (it removes its socket), then the server.
    for (const child of [...children].reverse()) await child.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof BenchError ? `kms-plugin benchmark failed: ${error.message}` : error);
  process.exitCode = 1;
});
