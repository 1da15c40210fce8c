import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TEST_ROOT_KEY } from '../../helpers/app.js';
import { CLI_IS_BUILT, runCli } from '../../helpers/cli.js';

describe('keyhold: the command line itself and the local commands', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'keyhold-cli-'));
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it.skipIf(!CLI_IS_BUILT)('prints the help and exits 2 when run bare, and 0 when asked for it', async () => {
    const bare = await runCli([], { cwd });
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('Usage: keyhold');
    expect(bare.stderr).toContain('Exit status: 0 ok, 1 failure, 2 usage');
    const help = await runCli(['--help'], { cwd });
    expect(help.code).toBe(0);
    for (const group of ['server', 'openapi', 'root', 'keys', 'policies', 'tokens', 'whoami', 'audit', 'usage', 'encrypt', 'decrypt', 'inspect']) {
      expect(help.stdout).toMatch(new RegExp(`^  ${group}\\b`, 'm'));
    }
    expect((await runCli(['help'], { cwd })).code).toBe(0);
    const keysHelp = await runCli(['help', 'keys'], { cwd });
    expect(keysHelp.code).toBe(0);
    expect(keysHelp.stdout).toContain('Usage: keyhold keys');
    const unknown = await runCli(['frobnicate'], { cwd });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^keyhold: KH_CLI_USAGE: unknown command 'frobnicate'/);
  });

  it.skipIf(!CLI_IS_BUILT)('refuses audit verify and root rotate on a store that does not exist, and creates none', async () => {
    const env = { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY };
    const verify = await runCli(['audit', 'verify'], { cwd, env });
    expect(verify.code).toBe(1);
    expect(verify.stderr).toBe(`keyhold: KH_CLI_NO_STORE: no store at ${join(cwd, 'data', 'keyhold.sqlite')}: set KEYHOLD_DATA_DIR or KEYHOLD_DATABASE_URL as for the server\n`);
    const keyFile = join(cwd, 'new.key');
    writeFileSync(keyFile, `${Buffer.alloc(32, 9).toString('base64')}\n`, { mode: 0o600 });
    const rotate = await runCli(['root', 'rotate', '--new-key-file', keyFile], { cwd, env });
    expect(rotate.code).toBe(1);
    expect(rotate.stderr).toMatch(/^keyhold: KH_CLI_NO_STORE: no store at /);
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  it.skipIf(!CLI_IS_BUILT)('takes one new root key for root rotate, and a label and a token for root init-hsm', async () => {
    const env = { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY };
    const bare = await runCli(['root', 'rotate'], { cwd, env });
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('root rotate needs --new-key-file PATH or --new-key-label LABEL');
    const both = await runCli(['root', 'rotate', '--new-key-file', 'a.key', '--new-key-label', 'root'], { cwd, env });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('root rotate takes --new-key-file or --new-key-label, not both');
    const noToken = await runCli(['root', 'rotate', '--new-key-label', 'root'], { cwd, env });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('keyhold: --new-key-label names a key in an HSM: set KEYHOLD_PKCS11_LIBRARY, KEYHOLD_PKCS11_TOKEN_LABEL');
    const noLabel = await runCli(['root', 'init-hsm'], { cwd, env });
    expect(noLabel.code).toBe(2);
    expect(noLabel.stderr).toContain('root init-hsm needs --label LABEL or KEYHOLD_PKCS11_KEY_LABEL');
    const initNoToken = await runCli(['root', 'init-hsm', '--label', 'root'], { cwd, env });
    expect(initNoToken.code).toBe(1);
    expect(initNoToken.stderr).toContain('keyhold: --label names a key in an HSM');
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  it.skipIf(!CLI_IS_BUILT)('walks the store locally for audit verify when no address is given, and asks the service when one is', async () => {
    // No address: the local walk, which here finds no store. With KEYHOLD_ADDR and --local, the local walk too.
    const env = { KEYHOLD_ROOT_KEY: TEST_ROOT_KEY };
    expect((await runCli(['audit', 'verify'], { cwd, env })).stderr).toContain('KH_CLI_NO_STORE');
    const forced = await runCli(['audit', 'verify', '--local'], { cwd, env: { ...env, KEYHOLD_ADDR: 'http://127.0.0.1:1' } });
    expect(forced.stderr).toContain('KH_CLI_NO_STORE');
    // An address without --local: the service (here unreachable, so unavailable).
    const remote = await runCli(['audit', 'verify'], { cwd, env: { KEYHOLD_ADDR: 'http://127.0.0.1:1', KEYHOLD_TOKEN: 'kh_x' } });
    expect(remote.code).toBe(6);
  });
});
