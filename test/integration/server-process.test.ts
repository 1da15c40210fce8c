import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';

const CLI = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));

interface Running {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

/** `npm start`'s server, with one worker unless `env` says otherwise (the first tests run the default, all CPUs). */
function start(env: Record<string, string | undefined>): Running {
  const child = spawn(process.execPath, [CLI, 'server'], {
    env: { PATH: process.env.PATH ?? '', KEYHOLD_PORT: '0', KEYHOLD_LOG_LEVEL: 'warn', KEYHOLD_WORKERS: '1', ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

describe('the keyhold server process (npm start)', () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('starts with its default workers on an empty data dir, writes the admin token only to its file when stdout is a pipe, and is ready', { timeout: 90_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-proc-'));
    dirs.push(dataDir);
    // As `npm ci && npm start` on a fresh machine: SQLite, and a worker per CPU.
    const server = start({ KEYHOLD_DATA_DIR: dataDir, KEYHOLD_WORKERS: undefined });
    children.push(server.child);
    const address = await waitFor(() => /listening on (http:\/\/\S+)/.exec(server.output())?.[1], 30_000);
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    expect(token).toMatch(/^kh_/);
    // The log line naming the file is written asynchronously, so it may come after the listening line.
    await waitFor(() => (server.output().includes(join(dataDir, 'admin.token')) ? true : undefined), 45_000);
    // stdout is a pipe here, as in a container, where it is the log pipeline: the token is in the file only.
    expect(server.output()).not.toContain(token);
    expect(statSync(join(dataDir, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'root.key')).mode & 0o777).toBe(0o600);
    expect(server.output()).toContain('DEV MODE');
    const ready = await fetch(`${address}/readyz`);
    expect(ready.status).toBe(200);
    const whoami = await fetch(`${address}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
    expect(await whoami.json()).toMatchObject({ id: 'token:admin', admin: true });

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);

    // The second start reuses the data dir: no new token is printed, and the old one still works.
    const again = start({ KEYHOLD_DATA_DIR: dataDir, KEYHOLD_WORKERS: undefined });
    children.push(again.child);
    const address2 = await waitFor(() => /listening on (http:\/\/\S+)/.exec(again.output())?.[1], 30_000);
    expect(again.output()).not.toContain(token);
    const whoami2 = await fetch(`${address2}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
    expect(whoami2.status).toBe(200);
  });

  it('prints the generated admin token once when stdout is a terminal, with its default workers', { timeout: 60_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-proc-'));
    dirs.push(dataDir);
    // util-linux script(1) runs the server on a pseudo-terminal and copies what it prints to our pipe.
    const child = spawn('script', ['-qfec', `"${process.execPath}" "${CLI}" server`, '/dev/null'], {
      env: { PATH: process.env.PATH ?? '', KEYHOLD_PORT: '0', KEYHOLD_LOG_LEVEL: 'warn', KEYHOLD_DATA_DIR: dataDir },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      await waitFor(() => /listening on (http:\/\/\S+)/.exec(output)?.[1], 30_000);
      const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
      expect(output.split(token)).toHaveLength(2);
    } finally {
      // The server is script's child, on the terminal's process group: end them together.
      process.kill(-child.pid!, 'SIGKILL');
      await exited;
    }
  });

  it('refuses to start with a clear message when the root key does not match the store', async () => {

    const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-proc-'));
    dirs.push(dataDir);
    const first = start({ KEYHOLD_DATA_DIR: dataDir, KEYHOLD_ROOT_KEY: Buffer.alloc(32, 1).toString('base64') });
    children.push(first.child);
    const address = await waitFor(() => /listening on (http:\/\/\S+)/.exec(first.output())?.[1], 45_000);
    const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
    const created = await fetch(`${address}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'k' }),
    });
    expect(created.status).toBe(201);
    first.child.kill('SIGTERM');
    await first.exited;

    const wrong = start({ KEYHOLD_DATA_DIR: dataDir, KEYHOLD_ROOT_KEY: Buffer.alloc(32, 2).toString('base64') });
    children.push(wrong.child);
    expect(await wrong.exited).toBe(1);
    expect(wrong.output()).toMatch(/root key is not the one the store was wrapped with/);
  });

  // The orchestrator's log collector may go away first: closing both pipes as the process logs `shutting down` left
  // pino's exit-time synchronous flush retrying EPIPE for ever, 7 times in 8. Several rounds, since it is a race.
  it('exits after SIGTERM even when the reader of its stdout and stderr is gone', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-proc-'));
    dirs.push(dataDir);
    for (let round = 0; round < 6; round += 1) {
      const server = start({ KEYHOLD_DATA_DIR: dataDir, KEYHOLD_LOG_LEVEL: 'info', KEYHOLD_SHUTDOWN_TIMEOUT_MS: '2000' });
      children.push(server.child);
      // Two workers start one after the other; on a loaded 2-core machine that can take well over 10 s.
      await waitFor(() => /listening on (http:\/\/\S+)/.exec(server.output())?.[1], 45_000);
      let readerGone = false;
      server.child.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('shutting down')) {
          server.child.stdout!.destroy();
          server.child.stderr!.destroy();
          readerGone = true;
        }
      });
      server.child.kill('SIGTERM');
      // The test's own timeout is the only clock: a process that hangs never gets here. Closing the store finished,
      // so it exits 0, on its own rather than by the shutdown timer.
      expect(await server.exited).toBe(0);
      expect(readerGone).toBe(true);
    }
  }, 300_000);

  it('refuses to start on invalid configuration, naming every problem', async () => {
    const bad = start({ KEYHOLD_PORT: 'eighty', KEYHOLD_ROOT_KEY: 'short', KEYHOLD_DATA_DIR: tmpdir() });
    children.push(bad.child);
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toContain('KEYHOLD_PORT');
    expect(bad.output()).toContain('KEYHOLD_ROOT_KEY');
    expect(bad.output()).not.toContain('short');
  });
});
