import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import { clonePostgresTemplate } from './store-template.js';

/**
 * Real replicas for fault tests: `node dist/src/main.js server` processes over one PostgreSQL schema, reached through a
 * TCP proxy the test controls. Cutting the proxy takes the database away from these replicas only, never from the
 * shared PostgreSQL that other test files use at the same time.
 */

const CLI = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));
/** How long a replica may take from spawn to a 200 on /readyz: migrations and the root-key proof run first. */
const READY_TIMEOUT_MS = 30_000;
/** No child outlives a stuck test run by more than this, whatever the test does. */
const HARD_KILL_MS = 180_000;
/** A request the server never answers fails the test as a hang instead of running into the vitest timeout. */
const CALL_TIMEOUT_MS = 20_000;

export interface ApiResult {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The parsed JSON body, or undefined when the body is empty or not JSON. */
  readonly body: any;
  readonly text: string;
}

export interface Replica {
  readonly index: number;
  /** `http://127.0.0.1:PORT`; a restart keeps the port, so the URL stays valid. */
  readonly url: string;
  readonly pid: number | undefined;
  /** Calls the API with the cluster's admin token unless another (or null, for none) is given. */
  call(method: string, path: string, body?: unknown, token?: string | null, headers?: Record<string, string>): Promise<ApiResult>;
  /** Sends `signal` and resolves with the process's exit. */
  kill(signal: NodeJS.Signals): Promise<Exit>;
  /** Starts the process again on the same port, data dir and environment, and waits until it is ready. */
  restart(env?: Record<string, string>): Promise<void>;
  /** The current process's exit. */
  readonly exited: Promise<Exit>;
  /** Everything the current process wrote to stdout and stderr. */
  output(): string;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface DatabaseProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  /** Refuses new connections (ECONNREFUSED) and destroys every open one, as a database that went away. */
  down(): Promise<void>;
  /** Accepts connections again, on the same port. */
  up(): Promise<void>;
  /** Holds every byte, in both directions, on open and new connections: a database that stopped answering. */
  stall(): void;
  /**
   * Freezes every connection open now, for good, while new ones pass: a network path that died without a reset (a
   * failover, a dropped NAT entry), where only TCP retransmission would ever notice, after many minutes.
   */
  partitionOpenConnections(): void;
  /** Delays every chunk, in both directions, by `ms` (0 turns it off): a slow network to the database. */
  delay(ms: number): void;
  /** Connections the proxy has accepted so far. */
  readonly connectionsAccepted: number;
}

export interface Cluster {
  readonly replicas: readonly Replica[];
  readonly schema: string;
  readonly adminToken: string;
  readonly database: DatabaseProxy;
  /** A handle on the cluster's schema that goes straight to PostgreSQL, around the proxy, for assertions. */
  readonly db: Knex;
  /** Kills every replica, closes the proxy and the handle, drops the schema and removes the data dirs. Idempotent. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  readonly replicas?: number;
  /** Added to every replica's environment, over the defaults. */
  readonly env?: Record<string, string>;
}

const liveClusters = new Set<Cluster>();
const liveChildren = new Set<ChildProcess>();

// A worker that exits (a crash, a timeout) must not leave servers behind: kill is synchronous, so it works here.
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** Stops every cluster still running. Test files call it from afterEach, so a failing test cleans up as well. */
export async function stopAllClusters(): Promise<void> {
  await Promise.all([...liveClusters].map((cluster) => cluster.stop()));
}

function postgresUrl(): URL {
  const raw = process.env.KEYHOLD_TEST_DATABASE_URL;
  if (raw === undefined) throw new Error('KEYHOLD_TEST_DATABASE_URL is not set');
  return new URL(raw);
}

async function startProxy(target: { host: string; port: number }): Promise<DatabaseProxy & { close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let mode: 'up' | 'stalled' = 'up';
  let delayMs = 0;
  let accepted = 0;
  let port = 0;
  const server: Server = createServer((client) => {
    accepted += 1;
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      // Either side failing ends the pair; the replica sees a dropped connection, as it would in production.
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const forward = (from: Socket, to: Socket) => {
      from.on('data', (chunk: Buffer) => {
        if (delayMs === 0) to.write(chunk);
        else setTimeout(() => to.write(chunk), delayMs);
      });
      from.on('end', () => to.end());
    };
    forward(client, upstream);
    forward(upstream, client);
    if (mode === 'stalled') {
      client.pause();
      upstream.pause();
    }
  });
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        const address = server.address();
        if (address !== null && typeof address === 'object') port = address.port;
        resolve();
      });
    });
  const closeListener = () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  const destroyAll = () => {
    for (const socket of sockets) socket.destroy();
  };
  await listen();
  return {
    get port() {
      return port;
    },
    get connectionsAccepted() {
      return accepted;
    },
    async down() {
      const closed = closeListener();
      destroyAll();
      await closed;
    },
    async up() {
      mode = 'up';
      delayMs = 0;
      for (const socket of sockets) socket.resume();
      if (!server.listening) await listen();
    },
    stall() {
      mode = 'stalled';
      for (const socket of sockets) socket.pause();
    },
    partitionOpenConnections() {
      for (const socket of sockets) {
        socket.pause();
        // A partitioned socket stays frozen through up(); only down() or close() ends it.
        socket.resume = () => socket;
      }
    },
    delay(ms) {
      delayMs = ms;
    },
    async close() {
      const closed = closeListener();
      destroyAll();
      await closed;
    },
  };
}

async function waitUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Fetches with JSON in and out; a request that gets no answer within CALL_TIMEOUT_MS rejects. */
export async function callApi(
  url: string,
  method: string,
  body?: unknown,
  token?: string | null,
  headers: Record<string, string> = {},
): Promise<ApiResult> {
  const requestHeaders: Record<string, string> = { ...headers };
  if (token !== null && token !== undefined) requestHeaders.authorization = `Bearer ${token}`;
  if (body !== undefined) requestHeaders['content-type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers: requestHeaders,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
  });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: Object.fromEntries(response.headers), body: parsed, text };
}

interface ReplicaSettings {
  readonly index: number;
  readonly env: Record<string, string>;
  readonly adminToken: string;
}

class ReplicaProcess implements Replica {
  readonly index: number;
  #env: Record<string, string>;
  readonly #adminToken: string;
  #port = 0;
  #child: ChildProcess | undefined;
  #output = '';
  #exited: Promise<Exit> = Promise.resolve({ code: null, signal: null });

  constructor(settings: ReplicaSettings) {
    this.index = settings.index;
    this.#env = settings.env;
    this.#adminToken = settings.adminToken;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get exited(): Promise<Exit> {
    return this.#exited;
  }

  output(): string {
    return this.#output;
  }

  call(method: string, path: string, body?: unknown, token: string | null = this.#adminToken, headers?: Record<string, string>) {
    return callApi(`${this.url}${path}`, method, body, token, headers);
  }

  async kill(signal: NodeJS.Signals): Promise<Exit> {
    this.#child?.kill(signal);
    return this.#exited;
  }

  async restart(env: Record<string, string> = {}): Promise<void> {
    if (this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null) {
      throw new Error(`replica ${this.index} is still running; kill it first`);
    }
    this.#env = { ...this.#env, ...env };
    await this.start();
  }

  async start(): Promise<void> {
    this.#output = '';
    const child = spawn(process.execPath, [CLI, 'server'], {
      env: { ...this.#env, KEYHOLD_PORT: String(this.#port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    liveChildren.add(child);
    const hardKill = setTimeout(() => child.kill('SIGKILL'), HARD_KILL_MS);
    hardKill.unref();
    const collect = (chunk: Buffer) => {
      if (this.#child === child) this.#output += chunk.toString();
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    this.#exited = new Promise<Exit>((resolve) =>
      child.once('exit', (code, signal) => {
        clearTimeout(hardKill);
        liveChildren.delete(child);
        resolve({ code, signal });
      }),
    );
    let gone: Exit | undefined;
    void this.#exited.then((exit) => (gone = exit));
    const address = await waitUntil(`replica ${this.index} to listen`, READY_TIMEOUT_MS, () => {
      if (gone !== undefined) throw new Error(`replica ${this.index} exited (${JSON.stringify(gone)}) before listening:\n${this.#output}`);
      return /listening on (http:\/\/\S+)/.exec(this.#output)?.[1];
    });
    this.#port = Number(new URL(address).port);
    await waitUntil(`replica ${this.index} to be ready`, READY_TIMEOUT_MS, async () => {
      if (gone !== undefined) throw new Error(`replica ${this.index} exited before it was ready:\n${this.#output}`);
      const ready = await callApi(`${this.url}/readyz`, 'GET').catch(() => undefined);
      return ready?.status === 200 ? true : undefined;
    });
  }

  /** SIGKILLs the process unless it has exited, and waits for the exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await this.#exited;
  }
}

/**
 * Creates a fresh schema, a proxy in front of PostgreSQL, and `replicas` server processes that share a root key and a
 * bootstrap admin token, each with its own port and data dir; resolves once every replica answers /readyz with 200.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const count = options.replicas ?? 3;
  const base = postgresUrl();
  const schema = `kh_cluster_${randomBytes(6).toString('hex')}`;
  // Migrated already, from the template: these are fault tests, not migration tests. Replicas migrating an empty
  // store, and racing to, is what test/integration/replicas.test.ts checks.
  await clonePostgresTemplate(base.toString(), schema);
  const proxy = await startProxy({ host: base.hostname, port: Number(base.port || 5432) });
  const viaProxy = new URL(base);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  viaProxy.searchParams.set('options', `-c search_path=${schema}`);
  const db = knexFactory({ client: 'pg', connection: base.toString(), searchPath: [schema], pool: { min: 0, max: 4 } });
  const adminToken = `kh_cluster_admin_${randomBytes(16).toString('hex')}`;
  const rootKey = randomBytes(32).toString('base64');
  const dataDirs: string[] = [];
  const replicas = Array.from({ length: count }, (_, index) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-cluster-'));
    dataDirs.push(dataDir);
    return new ReplicaProcess({
      index,
      adminToken,
      env: {
        PATH: process.env.PATH ?? '',
        KEYHOLD_DATA_DIR: dataDir,
        KEYHOLD_DATABASE_URL: viaProxy.toString(),
        KEYHOLD_ROOT_KEY: rootKey,
        KEYHOLD_BOOTSTRAP_TOKEN: adminToken,
        KEYHOLD_REPLICA_ID: `replica-${index}`,
        KEYHOLD_LOG_LEVEL: 'warn',
        // One process per replica: the fault tests reach into it (signals, its output) as into a pod of one.
        KEYHOLD_WORKERS: '1',
        ...options.env,
      },
    });
  });
  let stopping: Promise<void> | undefined;
  const cluster: Cluster = {
    replicas,
    schema,
    adminToken,
    database: proxy,
    db,
    stop() {
      stopping ??= (async () => {
        liveClusters.delete(cluster);
        await Promise.all(replicas.map((replica) => replica.stop()));
        await proxy.close();
        await db.destroy();
        const dropper = knexFactory({ client: 'pg', connection: base.toString() });
        try {
          await dropper.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
        } finally {
          await dropper.destroy();
        }
        for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  liveClusters.add(cluster);
  try {
    // The first replica records the root key and creates the admin token alone; booting on an empty database
    // together is what test/integration/replicas.test.ts checks, and a fault test should not fail on that race.
    const [first, ...rest] = replicas;
    await first?.start();
    await Promise.all(rest.map((replica) => replica.start()));
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/** Resolves with how long `probe` took to first return true, polling every 50 ms for at most `timeoutMs`. */
export async function timeUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  await waitUntil(what, timeoutMs, async () => ((await probe().catch(() => false)) ? true : undefined));
  return Math.round(performance.now() - started);
}
