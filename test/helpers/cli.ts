import { spawn, type ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll } from 'vitest';
import { buildTestApp, TEST_ADMIN_TOKEN, type DatabaseKind, type TestApp } from './app.js';
import { CLI } from './audit.js';

export { CLI, CLI_IS_BUILT } from './audit.js';

/** A test app listening on a real port, for the `keyhold` binary to talk to. */
export interface CliServer {
  readonly t: TestApp;
  readonly addr: string;
  /** The environment of a CLI process that talks to this server as the admin. */
  readonly env: Record<string, string>;
}

export async function startCliServer(kind: DatabaseKind): Promise<CliServer> {
  const t = await buildTestApp(kind);
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = t.app.server.address() as AddressInfo;
  const addr = `http://127.0.0.1:${port}`;
  return { t, addr, env: { KEYHOLD_ADDR: addr, KEYHOLD_TOKEN: TEST_ADMIN_TOKEN } };
}

/** The suite's CLI server, started before its tests and closed after them, and `keyhold ARGS…` run as its admin. */
export interface CliSuite extends CliServer {
  keyhold(...args: string[]): Promise<CliRun>;
}

/** Registers the suite's CLI server (beforeAll/afterAll); its fields are readable from the tests on. */
export function cliServerPerSuite(kind: DatabaseKind): CliSuite {
  let server: CliServer | undefined;
  beforeAll(async () => {
    server = await startCliServer(kind);
  });
  afterAll(async () => {
    await server?.t.close();
  });
  const started = (): CliServer => {
    if (server === undefined) throw new Error('the CLI server starts in beforeAll: read it from a test');
    return server;
  };
  return {
    get t() {
      return started().t;
    },
    get addr() {
      return started().addr;
    },
    get env() {
      return started().env;
    },
    keyhold: (...args) => runCli(args, { env: started().env }),
  };
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly stdoutBytes: Buffer;
}

export interface CliRunOptions {
  /** The whole environment besides PATH: nothing of the test runner's leaks in. */
  readonly env?: Record<string, string | undefined>;
  readonly input?: string | Buffer | Readable;
  readonly cwd?: string;
  /** Leave stdout to the caller's own listener (a large output), rather than collect it. */
  readonly ownStdout?: boolean;
}

/** Spawns `node dist/src/main.js ARGS` and collects its exit status and output. */
export function spawnCli(args: readonly string[], options: CliRunOptions = {}): { child: ChildProcess; done: Promise<CliRun> } {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
  for (const [name, value] of Object.entries(options.env ?? {})) if (value !== undefined) env[name] = value;
  const child = spawn(process.execPath, [CLI, ...args], { env, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let stderr = '';
  if (options.ownStdout !== true) child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const { input } = options;
  if (input === undefined) child.stdin!.end();
  else if (typeof input === 'string' || Buffer.isBuffer(input)) child.stdin!.end(input);
  else input.pipe(child.stdin!);
  child.stdin!.on('error', () => undefined);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString('utf8'), stderr, stdoutBytes });
    });
  });
  return { child, done };
}

export function runCli(args: readonly string[], options: CliRunOptions = {}): Promise<CliRun> {
  return spawnCli(args, options).done;
}
