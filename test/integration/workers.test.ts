import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { SEAL_METHOD } from '../../src/audit/seal.js';
import { DATABASE_KINDS, type DatabaseKind } from '../helpers/app.js';
import { clonePostgresTemplate, dropPostgresSchema } from '../helpers/store-template.js';
import { waitFor } from '../helpers/wait.js';

/**
 * `keyhold server` with KEYHOLD_WORKERS=2, as real processes: a cluster primary and two workers sharing the port, each
 * a replica with its own audit chain. No timing is asserted; the revocation bound is measured and printed.
 */

const CLI = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));
const ADMIN = `kh_workers_admin_${randomBytes(16).toString('hex')}`;
const POSTGRES_URL = process.env.KEYHOLD_TEST_DATABASE_URL;
/** Generous: two workers start one after the other on a loaded 2-core machine. */
const START_TIMEOUT_MS = 60_000;

interface Answer {
  readonly status: number;
  readonly requestId: string;
  readonly body: any;
}

/** One request on a connection of its own, so the primary hands each to the next worker in turn. */
function call(base: string, method: string, path: string, body?: unknown, agent: Agent | false = false): Promise<Answer> {
  const requestId = `w-${randomBytes(8).toString('hex')}`;
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      {
        method,
        agent,
        headers: { authorization: `Bearer ${ADMIN}`, 'x-request-id': requestId, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        timeout: 20_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, requestId, body: text === '' ? undefined : JSON.parse(text) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

interface Server {
  readonly url: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  /** The workers' process ids, from /proc. */
  workers(): number[];
  /** A handle on the server's store, for what the API does not show; the caller destroys it. */
  store(): Knex;
}

const cleanups: Array<() => Promise<void> | void> = [];

async function startServer(kind: DatabaseKind, env: Record<string, string> = {}): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-workers-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  let databaseUrl = `sqlite:${join(dataDir, 'keyhold.sqlite')}`;
  let store = (): Knex =>
    knexFactory({ client: 'better-sqlite3', connection: { filename: join(dataDir, 'keyhold.sqlite') }, useNullAsDefault: true });
  if (kind === 'postgres') {
    const schema = `kh_workers_${randomBytes(6).toString('hex')}`;
    await clonePostgresTemplate(POSTGRES_URL!, schema);
    cleanups.push(() => dropPostgresSchema(POSTGRES_URL!, schema));
    const url = new URL(POSTGRES_URL!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    databaseUrl = url.toString();
    store = () => knexFactory({ client: 'pg', connection: POSTGRES_URL!, searchPath: [schema], pool: { min: 0, max: 1 } });
  }
  const child = spawn(process.execPath, [CLI, 'server'], {
    env: {
      PATH: process.env.PATH ?? '',
      KEYHOLD_PORT: '0',
      KEYHOLD_WORKERS: '2',
      KEYHOLD_DATA_DIR: dataDir,
      KEYHOLD_DATABASE_URL: databaseUrl,
      KEYHOLD_BOOTSTRAP_TOKEN: ADMIN,
      KEYHOLD_LOG_LEVEL: 'warn',
      // Only the announcements between workers (SQLite) or NOTIFY (PostgreSQL) can make a revocation prompt.
      KEYHOLD_CACHE_TTL_MS: '600000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const workers = (): number[] => {
    try {
      return readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  cleanups.push(async () => {
    for (const pid of workers()) process.kill(pid, 'SIGKILL');
    child.kill('SIGKILL');
    await exited;
  });
  const url = await waitFor(() => /Keyhold listening on (http:\/\/\S+)/.exec(output)?.[1], START_TIMEOUT_MS, `the server to listen:\n${output}`);
  return { url, child, exited, output: () => output, workers, store };
}

/** Each request's audit record names the chain, so the worker, that answered it. */
async function replicaOf(server: Server, key: string): Promise<Map<string, string>> {
  const page = await call(server.url, 'GET', `/v1/audit?key=${key}&limit=500`);
  expect(page.status).toBe(200);
  return new Map(page.body.records.map((record: { requestId: string; replicaId: string }) => [record.requestId, record.replicaId]));
}

/** Data keys, each on a new connection, until both workers have answered one: both then hold the key in cache. */
async function datakeysFromBothWorkers(server: Server, key: string): Promise<Set<string>> {
  const ids: string[] = [];
  for (let i = 0; i < 40; i += 1) {
    const answer = await call(server.url, 'POST', `/v1/keys/${key}/datakey`, {});
    expect(answer.status).toBe(200);
    ids.push(answer.requestId);
    if (i % 4 === 3) {
      const replicas = await replicaOf(server, key);
      const seen = new Set(ids.map((id) => replicas.get(id)).filter((replica) => replica !== undefined));
      if (seen.size === 2) return seen as Set<string>;
    }
  }
  throw new Error('40 data keys on new connections did not reach two workers');
}

/** One kept-alive connection to each worker, told apart by the chain that audited a data key on it. */
async function pinnedToEachWorker(server: Server, key: string): Promise<[Agent, Agent]> {
  // New connections one after the other, so the primary hands them to the workers in turn; then one lookup.
  const agents = Array.from({ length: 4 }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
  const requestIds: string[] = [];
  for (const agent of agents) {
    const answer = await call(server.url, 'POST', `/v1/keys/${key}/datakey`, {}, agent);
    expect(answer.status).toBe(200);
    requestIds.push(answer.requestId);
  }
  const chains = await replicaOf(server, key);
  const byChain = new Map<string, Agent>();
  agents.forEach((agent, i) => {
    const chain = chains.get(requestIds[i]!)!;
    if (byChain.has(chain)) agent.destroy();
    else byChain.set(chain, agent);
  });
  expect(byChain.size).toBe(2);
  return [...byChain.values()] as [Agent, Agent];
}

afterEach(async () => {
  for (const undo of cleanups.splice(0).reverse()) await undo();
});

for (const kind of DATABASE_KINDS) {
  describe(`keyhold server with KEYHOLD_WORKERS=2 [${kind}]`, () => {
    it('serves from both workers, each on its own audit chain, and SIGTERM drains both, seals both chains and exits 0', async () => {
      const server = await startServer(kind);
      expect(server.output().match(/Keyhold listening on/g)).toHaveLength(1);
      expect(server.workers()).toHaveLength(2);
      expect((await call(server.url, 'POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
      const chains = await datakeysFromBothWorkers(server, 'orders');

      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
      // Read after the exit, from a server of one worker over the same store.
      expect((await sealedChains(server)).sort()).toEqual([...chains].sort());
    }, 120_000);

    it('a key disabled through one worker is refused by the other, measured from the disable answered', async () => {
      const server = await startServer(kind);
      expect((await call(server.url, 'POST', '/v1/keys', { name: 'revoked' })).status).toBe(201);
      // Two kept-alive connections, each pinned to one worker: A disables, B serves data keys all the while.
      const [a, b] = await pinnedToEachWorker(server, 'revoked');
      const onB: Array<Answer & { sentMs: number; answeredMs: number }> = [];
      let disabledAt: number | undefined;
      const hammer = (async () => {
        const started = performance.now();
        while (performance.now() - started < 20_000) {
          const sentMs = performance.now();
          const answer = await call(server.url, 'POST', '/v1/keys/revoked/datakey', {}, b);
          onB.push({ ...answer, sentMs, answeredMs: performance.now() });
          if (disabledAt !== undefined && answer.status === 409) return;
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const disableSent = performance.now();
      const disable = await call(server.url, 'POST', '/v1/keys/revoked/disable', undefined, a);
      disabledAt = performance.now();
      expect(disable.status).toBe(200);
      await hammer;
      const refused = onB.find((answer) => answer.status === 409);
      const servedAfter = onB.filter((answer) => answer.status === 200 && answer.sentMs >= disabledAt!);
      console.log(
        `[${kind}] disable sent to worker A, answered after ${Math.round(disabledAt - disableSent)} ms; worker B (${onB.length} data keys ` +
          `in a row) answered its first refusal ${Math.round(refused!.answeredMs - disableSent)} ms after the disable was sent; ` +
          `${servedAfter.length} sent after A's answer were still served`,
      );
      expect(refused?.body.code).toBe('KH_ERR_KEY_DISABLED');
      a.destroy();
      b.destroy();
      server.child.kill('SIGTERM');
      expect((await server.exited).code).toBe(0);
    }, 120_000);
  });
}

describe('the metrics of a server with KEYHOLD_WORKERS=2 [sqlite]', () => {
  it('are served once, by the primary, with every worker\'s counts summed', async () => {
    const server = await startServer('sqlite', { KEYHOLD_METRICS_PORT: '0', KEYHOLD_LOG_LEVEL: 'info' });
    const metricsUrl = await waitFor(() => /"url":"(http:[^"]+\/metrics)"/.exec(server.output())?.[1], 20_000, 'the metrics line');
    expect((await call(server.url, 'POST', '/v1/keys', { name: 'counted' })).status).toBe(201);
    await datakeysFromBothWorkers(server, 'counted');
    const records = (await replicaOf(server, 'counted')).size;
    const text = await (await fetch(metricsUrl)).text();
    const served = [...text.matchAll(/^keyhold_crypto_operations_total\{operation="datakey",key="counted",version="1",outcome="ok"\} (\d+)$/gm)];
    // One series, however many workers answered: the data keys audited (every one of them) less the key's creation.
    expect(served).toHaveLength(1);
    expect(Number(served[0]![1])).toBe(records - 1);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  }, 120_000);
});

describe.runIf(DATABASE_KINDS.includes('sqlite'))('a worker that dies [sqlite]', () => {
  it('is replaced, counted in the primary\'s metrics, and the server keeps serving from two workers and still exits 0 on SIGTERM', async () => {
    const server = await startServer('sqlite', { KEYHOLD_METRICS_PORT: '0', KEYHOLD_LOG_LEVEL: 'info' });
    const metricsUrl = await waitFor(() => /"url":"(http:[^"]+\/metrics)"/.exec(server.output())?.[1], 20_000, 'the metrics line');
    expect(await clusterSeries(metricsUrl)).toEqual({ configured: 2, listening: 2, serving: 0, starting: 0 });
    expect((await call(server.url, 'POST', '/v1/keys', { name: 'k' })).status).toBe(201);
    const before = await datakeysFromBothWorkers(server, 'k');
    const [victim, survivor] = server.workers() as [number, number];
    process.kill(victim, 'SIGKILL');
    await waitFor(() => (server.output().includes('a worker died; replacing it') ? true : undefined), 20_000, 'the primary to notice');
    const replaced = await waitFor(
      () => {
        const now = server.workers();
        return now.length === 2 && !now.includes(victim) ? now : undefined;
      },
      30_000,
      'a new worker',
    );
    expect(replaced).toContain(survivor);
    // The new worker listens a moment after it is forked (seconds on a loaded machine); the survivor answers meanwhile,
    // and every request succeeds. The replacement writes a chain of its own.
    expect((await chainsUntilThird(server, before, 60, 500)).size).toBe(3);
    expect(await clusterSeries(metricsUrl)).toEqual({ configured: 2, listening: 2, serving: 1, starting: 0 });
    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
  }, 150_000);
});

describe.runIf(DATABASE_KINDS.includes('sqlite'))('a replacement that dies before it listens [sqlite]', () => {
  it('is a crash like any other: it is replaced in turn while the other worker serves, and the server still exits 0', async () => {
    const server = await startServer('sqlite', { KEYHOLD_METRICS_PORT: '0', KEYHOLD_LOG_LEVEL: 'info' });
    const metricsUrl = await waitFor(() => /"url":"(http:[^"]+\/metrics)"/.exec(server.output())?.[1], 20_000, 'the metrics line');
    expect((await call(server.url, 'POST', '/v1/keys', { name: 'k' })).status).toBe(201);
    const before = await datakeysFromBothWorkers(server, 'k');
    const [victim] = server.workers() as [number, number];
    // The store's write lock, held past a starting worker's busy timeout (5 s): the replacement cannot migrate, and exits.
    const db = server.store();
    await db.raw('BEGIN EXCLUSIVE');
    try {
      process.kill(victim, 'SIGKILL');
      await waitFor(
        () => (server.output().includes('a replacement worker failed to start; replacing it') ? true : undefined),
        60_000,
        'a replacement to die before it listened',
      );
      // Meanwhile a scrape is answered, if only with the primary's own series (a starting worker answers no scrape).
      expect(await clusterSeries(metricsUrl)).toMatchObject({ configured: 2, listening: 1, serving: 1 });
    } finally {
      await db.raw('ROLLBACK');
      await db.destroy();
    }
    expect(server.output()).not.toContain('a worker exited before it listened; stopping');
    // A later replacement starts; the server answers from two workers again, one of them a new chain.
    expect((await chainsUntilThird(server, before, 60, 500)).size).toBe(3);
    const series = await clusterSeries(metricsUrl);
    expect(series).toMatchObject({ configured: 2, listening: 2, serving: 1 });
    expect(series.starting).toBeGreaterThanOrEqual(1);
    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
  }, 180_000);
});

/** The primary's own series: its workers, configured and listening, and the crashes by phase. */
async function clusterSeries(metricsUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? Number.NaN);
  return {
    configured: value(/^keyhold_cluster_workers\{state="configured"\} (\d+)$/m),
    listening: value(/^keyhold_cluster_workers\{state="listening"\} (\d+)$/m),
    serving: value(/^keyhold_cluster_worker_crashes_total\{phase="serving"\} (\d+)$/m),
    starting: value(/^keyhold_cluster_worker_crashes_total\{phase="starting"\} (\d+)$/m),
  };
}

/**
 * The chains that answered data keys of key `k`, `before` and then in up to `rounds` rounds (`pauseMs` apart) until a
 * third appears: a replacement worker's, once it listens.
 */
async function chainsUntilThird(server: Server, before: ReadonlySet<string>, rounds: number, pauseMs = 0): Promise<Set<string>> {
  let chains = new Set(before);
  for (let round = 0; round < rounds && chains.size < 3; round += 1) {
    const now = await datakeysFromBothWorkers(server, 'k').catch(() => new Set<string>());
    chains = new Set([...chains, ...now]);
    if (chains.size < 3 && pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return chains;
}

/** The replica ids of the chains sealed in the server's store, read straight from it. */
async function sealedChains(server: Server): Promise<string[]> {
  const db = server.store();
  try {
    const rows = (await db('audit_records').where({ method: SEAL_METHOD }).select('replica_id')) as Array<{ replica_id: string }>;
    return rows.map((row) => row.replica_id);
  } finally {
    await db.destroy();
  }
}
