import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalRootKey, parseRootKeyText } from '../../src/root-keys/root-key.js';
import { buildTestApp, TEST_ROOT_KEY, TestStore, type TestApp } from '../helpers/app.js';
import { CLI, CLI_IS_BUILT } from '../helpers/audit.js';

const POSTGRES_URL = process.env.KEYHOLD_TEST_DATABASE_URL;
const OLD = new LocalRootKey(parseRootKeyText(TEST_ROOT_KEY)!);
const NEW_KEY = randomBytes(32).toString('base64');
const NEW = new LocalRootKey(parseRootKeyText(NEW_KEY)!);
const KEYS = 20;
const VERSIONS_PER_KEY = 15;

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `keyhold root rotate` over the test's schema; `killOn` SIGKILLs it as soon as stderr matches. */
function rotate(store: TestStore, env: Record<string, string>, args: string[], killOn?: RegExp): Promise<Run> {
  const url = new URL(POSTGRES_URL!);
  url.searchParams.set('options', `-c search_path=${store.schema}`);
  const child = spawn(process.execPath, [CLI, 'root', 'rotate', ...args], {
    env: { PATH: process.env.PATH ?? '', KEYHOLD_DATA_DIR: store.dataDir, KEYHOLD_DATABASE_URL: url.toString(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (killOn?.test(stderr) === true) child.kill('SIGKILL');
  });
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

describe.skipIf(POSTGRES_URL === undefined || !CLI_IS_BUILT)('keyhold root rotate, the process [postgres]', () => {
  let store: TestStore;
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.app.close();
    t = undefined;
    await store.destroy();
  });

  async function wrappedUnder(app: TestApp): Promise<Record<string, number>> {
    const rows = await app.db('key_versions').whereNotNull('material').select('root_key_id');
    const secrets = await app.db('system_secrets').select('root_key_id');
    const counts: Record<string, number> = {};
    for (const row of [...rows, ...secrets] as Array<{ root_key_id: string }>) counts[row.root_key_id] = (counts[row.root_key_id] ?? 0) + 1;
    return counts;
  }

  it(
    'survives SIGKILL part way: the re-run finishes, every row ends under the new key, and every earlier ciphertext decrypts',
    async () => {
      store = new TestStore('postgres');
      t = await buildTestApp('postgres', { store });
      const sealed: Array<{ name: string; ciphertext: string; plaintext: string }> = [];
      for (let k = 0; k < KEYS; k++) {
        const name = `bulk-${k}`;
        expect((await t.call('POST', '/v1/keys', { name })).status).toBe(201);
        for (let v = 2; v <= VERSIONS_PER_KEY; v++) await t.call('POST', `/v1/keys/${name}/rotate`);
        const dk = await t.call('POST', `/v1/keys/${name}/datakey`, {});
        sealed.push({ name, ciphertext: dk.body.ciphertext, plaintext: dk.body.plaintext });
      }
      const total = KEYS * VERSIONS_PER_KEY + 1; // and the audit key
      await t.app.close();
      t = undefined;

      const newKeyFile = store.writeSecretFile('new.key', NEW_KEY);
      const dryRun = await rotate(store, { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY }, ['--new-key-file', newKeyFile, '--dry-run']);
      expect(dryRun.code, dryRun.stderr).toBe(1);
      expect(JSON.parse(dryRun.stdout)).toEqual({ rootKeyId: NEW.id, rewrapped: 0, remaining: total, dryRun: true });

      // The first run unwraps with the old key alone, records the new one, and is killed after its first batch.
      const killed = await rotate(
        store,
        { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY },
        ['--new-key-file', newKeyFile, '--batch-size', '5'],
        /rewrapped \d+/,
      );
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      expect(killed.stderr).toMatch(/keyhold root rotate: rewrapped 5, \d+ remaining/);

      t = await buildTestApp('postgres', { store, env: { KEYHOLD_ROOT_KEY: '', KEYHOLD_ROOT_KEY_FILE: newKeyFile, KEYHOLD_PREVIOUS_ROOT_KEY_FILE: store.writeSecretFile('old.key', TEST_ROOT_KEY) } });
      const midway = await wrappedUnder(t);
      expect(midway[NEW.id]).toBeGreaterThanOrEqual(5);
      expect(midway[OLD.id]).toBeGreaterThan(0);
      expect((midway[NEW.id] ?? 0) + (midway[OLD.id] ?? 0)).toBe(total);
      await t.app.close();
      t = undefined;

      // The re-run uses the servers' own environment: the new key primary, the old one previous.
      const finished = await rotate(
        store,
        { KEYHOLD_ROOT_KEY_FILE: newKeyFile, KEYHOLD_PREVIOUS_ROOT_KEY_FILE: join(store.dataDir, 'old.key') },
        ['--new-key-file', newKeyFile, '--batch-size', '5'],
      );
      expect(finished.code, finished.stderr).toBe(0);
      const summary = JSON.parse(finished.stdout);
      expect(summary).toEqual({ rootKeyId: NEW.id, rewrapped: midway[OLD.id], remaining: 0, dryRun: false });
      for (const output of [dryRun, killed, finished]) {
        expect(output.stdout + output.stderr).not.toContain(NEW_KEY);
        expect(output.stdout + output.stderr).not.toContain(TEST_ROOT_KEY);
      }

      t = await buildTestApp('postgres', { store, env: { KEYHOLD_ROOT_KEY: '', KEYHOLD_ROOT_KEY_FILE: newKeyFile } });
      expect(await wrappedUnder(t)).toEqual({ [NEW.id]: total });
      for (const { ciphertext, plaintext } of sealed) {
        const opened = await t.call('POST', '/v1/decrypt', { ciphertext });
        expect(opened.status, opened.text).toBe(200);
        expect(opened.body.plaintext).toBe(plaintext);
      }
      expect((await t.services.auditLog.verify()).ok).toBe(true);
    },
    120_000,
  );

  it('an unreadable or malformed --new-key-file is a clear error that changes nothing', async () => {
    store = new TestStore('postgres');
    t = await buildTestApp('postgres', { store });
    await t.app.close();
    t = undefined;
    const missing = join(store.dataDir, 'missing.key');
    const unreadable = await rotate(store, { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY }, ['--new-key-file', missing]);
    expect(unreadable.code).toBe(1);
    expect(unreadable.stderr).toContain(`keyhold: --new-key-file ${missing} cannot be read: ENOENT`);
    const malformed = store.writeSecretFile('malformed.key', 'c2hvcnQ=');
    const wrong = await rotate(store, { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY }, ['--new-key-file', malformed]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`keyhold: --new-key-file ${malformed} must hold the base64 encoding of exactly 32 bytes`);
    const usage = await rotate(store, { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY }, ['--batch-size', '0']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('root rotate needs --new-key-file PATH');

    t = await buildTestApp('postgres', { store });
    expect((await t.db('root_keys').select('id')).map((row: { id: string }) => row.id)).toEqual([OLD.id]);
  });
});
