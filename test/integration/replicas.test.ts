import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { describe, expect, it } from 'vitest';
import { DATABASE_KINDS } from '../helpers/app.js';

const CLI = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));
const POSTGRES_URL = process.env.KEYHOLD_TEST_DATABASE_URL;

describe.runIf(DATABASE_KINDS.includes('postgres'))('replicas on one PostgreSQL [postgres]', () => {
  it('three replicas booting together on an empty database all start, on one root key and one admin token', async () => {
    const schema = `kh_replicas_${randomBytes(4).toString('hex')}`;
    const admin = knexFactory({ client: 'pg', connection: POSTGRES_URL });
    await admin.raw('CREATE SCHEMA ??', [schema]);
    const url = new URL(POSTGRES_URL!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const rootKey = randomBytes(32).toString('base64');
    const token = `kh_replica_test_${randomBytes(16).toString('hex')}`;
    const dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'keyhold-replica-')));
    try {
      const exits = await Promise.all(
        dirs.map(
          (dir) =>
            new Promise<{ code: number | null; output: string }>((resolve) => {
              const child = spawn(process.execPath, [CLI, 'server'], {
                env: {
                  PATH: process.env.PATH ?? '',
                  KEYHOLD_PORT: '0',
                  KEYHOLD_DATA_DIR: dir,
                  KEYHOLD_DATABASE_URL: url.toString(),
                  KEYHOLD_ROOT_KEY: rootKey,
                  KEYHOLD_BOOTSTRAP_TOKEN: token,
                  KEYHOLD_LOG_LEVEL: 'warn',
                  KEYHOLD_WORKERS: '1',
                },
                stdio: ['ignore', 'pipe', 'pipe'],
              });
              let output = '';
              const collect = (chunk: Buffer) => {
                output += chunk.toString();
                if (output.includes('listening on')) child.kill('SIGTERM');
              };
              child.stdout.on('data', collect);
              child.stderr.on('data', collect);
              child.on('exit', (code) => resolve({ code, output }));
              setTimeout(() => child.kill('SIGKILL'), 20_000).unref();
            }),
        ),
      );
      for (const exit of exits) expect(exit.output).toContain('listening on');
      const db = knexFactory({ client: 'pg', connection: POSTGRES_URL, searchPath: [schema] });
      try {
        expect(await db('root_keys').count({ n: '*' }).first()).toMatchObject({ n: '1' });
        expect(await db('tokens').where({ admin: true }).count({ n: '*' }).first()).toMatchObject({ n: '1' });
      } finally {
        await db.destroy();
      }
    } finally {
      await admin.raw('DROP SCHEMA ?? CASCADE', [schema]);
      await admin.destroy();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    }
  });
});
