import { createServer, type AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { CLI_IS_BUILT, cliServerPerSuite, runCli } from '../../helpers/cli.js';

describeEachDatabase('keyhold keys', (kind) => {
  const server = cliServerPerSuite(kind);
  const { keyhold } = server;

  it.skipIf(!CLI_IS_BUILT)('creates a key and prints it as a table, or as the API answered it with --json', async () => {
    const created = await keyhold('keys', 'create', 'orders', '--description', 'order records', '--label', 'team=shop', '--rotation-period', '30d');
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^name: +orders$/m);
    expect(created.stdout).toMatch(/^rotation period: +30d$/m);
    expect(created.stdout).toMatch(/^VERSION +STATE/m);

    const json = await keyhold('keys', 'show', 'orders', '--json');
    expect(json.code, json.stderr).toBe(0);
    const key = JSON.parse(json.stdout);
    expect(key).toMatchObject({ name: 'orders', description: 'order records', labels: { team: 'shop' }, rotationPeriodSeconds: 2_592_000, primaryVersion: 1 });
    expect(key).toEqual((await server.t.call('GET', '/v1/keys/orders')).body);
  });

  it.skipIf(!CLI_IS_BUILT)('lists keys in a table with one row per key', async () => {
    await keyhold('keys', 'create', 'list-a');
    const listed = await keyhold('keys', 'list', '--prefix', 'list-');
    expect(listed.code, listed.stderr).toBe(0);
    const lines = listed.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME +STATE +PRIMARY +MIN-DECRYPT +VERSIONS/);
    expect(lines.slice(1)).toEqual([expect.stringMatching(/^list-a +enabled +1 +1 +1/)]);
    expect(JSON.parse((await keyhold('keys', 'list', '--prefix', 'list-', '--json')).stdout)).toEqual({ keys: [expect.objectContaining({ name: 'list-a' })] });
  });

  it.skipIf(!CLI_IS_BUILT)('updates, rotates, and lists versions', async () => {
    await keyhold('keys', 'create', 'lifecycle');
    const noChange = await keyhold('keys', 'update', 'lifecycle');
    expect(noChange.code).toBe(2);
    expect(noChange.stderr).toContain('keyhold: KH_CLI_USAGE: keys update needs at least one change');
    expect((await keyhold('keys', 'rotate', 'lifecycle')).code).toBe(0);
    const updated = await keyhold('keys', 'update', 'lifecycle', '--min-decryption-version', '2', '--json');
    expect(updated.code, updated.stderr).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({ primaryVersion: 2, minDecryptionVersion: 2 });
    const versions = await keyhold('keys', 'versions', 'list', 'lifecycle');
    expect(versions.stdout.trimEnd().split('\n').slice(1)).toEqual([expect.stringMatching(/^1 +enabled/), expect.stringMatching(/^2 +enabled/)]);
  });

  it.skipIf(!CLI_IS_BUILT)('refuses a destructive command without --yes when not at a terminal, and changes nothing', async () => {
    await keyhold('keys', 'create', 'guarded');
    for (const args of [['keys', 'disable', 'guarded'], ['keys', 'versions', 'disable', 'guarded', '1'], ['keys', 'schedule-deletion', 'guarded']]) {
      const refused = await keyhold(...args);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr).toMatch(/^keyhold: KH_CLI_CONFIRMATION: .* needs --yes when not run at a terminal\n$/);
    }
    const key = (await server.t.call('GET', '/v1/keys/guarded')).body;
    expect(key).toMatchObject({ state: 'enabled', versions: [{ state: 'enabled' }] });
  });

  it.skipIf(!CLI_IS_BUILT)('disables and enables a version and the key, and schedules and cancels its deletion, with --yes', async () => {
    await keyhold('keys', 'create', 'retired');
    const versionOff = await keyhold('keys', 'versions', 'disable', 'retired', '1', '--yes');
    expect(versionOff.code, versionOff.stderr).toBe(0);
    expect(versionOff.stdout).toMatch(/^1 +disabled/m);
    expect((await keyhold('keys', 'versions', 'enable', 'retired', '1')).code).toBe(0);
    expect((await keyhold('keys', 'disable', 'retired', '-y')).stdout).toMatch(/^retired +disabled/m);
    expect((await keyhold('keys', 'enable', 'retired')).stdout).toMatch(/^retired +enabled/m);
    const scheduled = await keyhold('keys', 'schedule-deletion', 'retired', '--days', '7', '--yes', '--json');
    expect(scheduled.code, scheduled.stderr).toBe(0);
    expect(JSON.parse(scheduled.stdout)).toMatchObject({ state: 'pending_deletion', deletionDate: expect.any(String) });
    expect((await keyhold('keys', 'cancel-deletion', 'retired')).stdout).toMatch(/^retired +disabled/m);
  });

  it.skipIf(!CLI_IS_BUILT)('answers a problem with one line, its code and detail, and the exit status of its kind', async () => {
    const missing = await keyhold('keys', 'show', 'no-such-key');
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/^keyhold: KH_ERR_KEY_NOT_FOUND: .+\n$/);
    expect(missing.stdout).toBe('');

    await keyhold('keys', 'create', 'twice');
    const conflict = await keyhold('keys', 'create', 'twice');
    expect(conflict.code).toBe(5);
    expect(conflict.stderr).toMatch(/^keyhold: KH_ERR_KEY_EXISTS: .+\n$/);

    const versionMissing = await keyhold('keys', 'versions', 'enable', 'twice', '9');
    expect(versionMissing.code).toBe(4);
    expect(versionMissing.stderr).toMatch(/^keyhold: KH_ERR_KEY_VERSION_NOT_FOUND: /);

    const unauthenticated = await runCli(['keys', 'list'], { env: { ...server.env, KEYHOLD_TOKEN: 'kh_wrong_token_wrong_token_wrong_1' } });
    expect(unauthenticated.code).toBe(3);
    expect(unauthenticated.stderr).toMatch(/^keyhold: KH_ERR_UNAUTHENTICATED: .+\n$/);

    const invalid = await keyhold('keys', 'create', 'bad name!');
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/^keyhold: KH_ERR_VALIDATION: /);
  });

  it.skipIf(!CLI_IS_BUILT)('refuses unknown flags, missing and extra arguments, and bad values as usage errors (2), before any request', async () => {
    for (const args of [
      ['keys', 'create'],
      ['keys', 'create', 'a', 'b'],
      ['keys', 'list', '--bogus'],
      ['keys', 'versions', 'disable', 'a', 'one', '--yes'],
      ['keys', 'schedule-deletion', 'a', '--days', '3', '--yes'],
      ['keys'],
      ['keys', 'frobnicate'],
    ]) {
      const result = await keyhold(...args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toContain('Usage: keyhold');
      expect(result.stdout).toBe('');
    }
  });

  it.skipIf(!CLI_IS_BUILT)('reports an unreachable service as unavailable (6)', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const refused = await runCli(['keys', 'list'], { env: { ...server.env, KEYHOLD_ADDR: `http://127.0.0.1:${port}` } });
    expect(refused.code).toBe(6);
    expect(refused.stderr).toBe(`keyhold: KH_CLI_UNAVAILABLE: cannot reach http://127.0.0.1:${port}: ECONNREFUSED\n`);
  });
});
