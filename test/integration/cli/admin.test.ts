import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { CLI_IS_BUILT, cliServerPerSuite, runCli, spawnCli } from '../../helpers/cli.js';

describeEachDatabase('keyhold policies, tokens, whoami and audit', (kind) => {
  const server = cliServerPerSuite(kind);
  const { keyhold } = server;

  it.skipIf(!CLI_IS_BUILT)('puts a policy from a file or stdin, reads it back, lists, simulates and deletes it', async () => {
    const document = { description: 'shop reads orders', statements: [{ sid: 'shop', effect: 'allow', principals: ['token:shop'], actions: ['decrypt'], keys: ['orders'] }] };
    const file = join(server.t.store.dataDir, 'policy.json');
    writeFileSync(file, JSON.stringify(document));
    const put = await keyhold('policies', 'put', 'shop', '--file', file, '--create');
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toMatch(/^revision: +1$/m);

    const got = await keyhold('policies', 'get', 'shop', '--json');
    const policy = JSON.parse(got.stdout);
    expect(policy).toMatchObject({ name: 'shop', revision: 1, ...document });
    // What `get --json` prints goes back in as it is, conditionally on its revision.
    const replaced = await runCli(['policies', 'put', 'shop', '-f', '-', '--if-match', '1', '--json'], { env: server.env, input: got.stdout });
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(JSON.parse(replaced.stdout)).toMatchObject({ revision: 2 });
    const stale = await runCli(['policies', 'put', 'shop', '-f', '-', '--if-match', '1'], { env: server.env, input: got.stdout });
    expect(stale.code).toBe(5);
    expect(stale.stderr).toMatch(/^keyhold: KH_ERR_POLICY_REVISION_MISMATCH: /);

    expect((await keyhold('policies', 'list')).stdout).toMatch(/^shop +2 +1 /m);

    const allowed = await keyhold('policies', 'simulate', '--principal', 'token:shop', '--action', 'decrypt', '--key', 'orders');
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toMatch(/^allow: /);
    expect(allowed.stdout).toMatch(/^shop +0 +shop +allow$/m);
    const denied = await keyhold('policies', 'simulate', '--principal', 'token:shop', '--action', 'encrypt', '--key', 'orders', '--json');
    expect(JSON.parse(denied.stdout)).toMatchObject({ decision: 'deny', matched: [] });
    expect((await keyhold('policies', 'simulate', '--principal', 'token:shop', '--action', 'fly')).code).toBe(2);

    expect((await keyhold('policies', 'delete', 'shop')).code).toBe(2);
    const deleted = await keyhold('policies', 'delete', 'shop', '--yes');
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toBe('deleted policy shop\n');
    expect((await keyhold('policies', 'get', 'shop')).code).toBe(4);
  });

  it.skipIf(!CLI_IS_BUILT)('issues a token, which whoami then names, lists it, and revokes it with --yes', async () => {
    const issued = await keyhold('tokens', 'create', 'ci', '--ttl', '3600', '--json');
    expect(issued.code, issued.stderr).toBe(0);
    const { id, token } = JSON.parse(issued.stdout) as { id: string; token: string };

    const tokenFile = join(server.t.store.dataDir, 'ci.token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const me = await runCli(['whoami', '--token-file', tokenFile, '--addr', server.addr], { env: {} });
    expect(me.code, me.stderr).toBe(0);
    expect(me.stdout).toMatch(/^id: +token:ci$/m);
    expect(me.stdout).toMatch(/^admin: +no$/m);

    expect((await keyhold('tokens', 'list')).stdout).toMatch(new RegExp(`^${id} +ci +no `, 'm'));
    expect((await keyhold('tokens', 'revoke', id)).code).toBe(2);
    const revoked = await keyhold('tokens', 'revoke', id, '--yes');
    expect(revoked.code, revoked.stderr).toBe(0);
    const refused = await runCli(['whoami', '--token-file', tokenFile, '--addr', server.addr]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^keyhold: KH_ERR_UNAUTHENTICATED: /);
    // A workload without the grant is refused (403) with the same exit status.
    const other = JSON.parse((await keyhold('tokens', 'create', 'plain', '--json')).stdout) as { token: string };
    const forbidden = await runCli(['tokens', 'list'], { env: { ...server.env, KEYHOLD_TOKEN: other.token } });
    expect(forbidden.code).toBe(3);
    expect(forbidden.stderr).toMatch(/^keyhold: KH_ERR_FORBIDDEN: /);
  });

  it.skipIf(!CLI_IS_BUILT)('queries the audit log with filters, and verifies it through the service when an address is given', async () => {
    await keyhold('keys', 'create', 'audited');
    await keyhold('keys', 'show', 'missing-key');
    const page = await keyhold('audit', 'query', '--key', 'audited', '--json');
    expect(page.code, page.stderr).toBe(0);
    expect(JSON.parse(page.stdout).records).toEqual([expect.objectContaining({ keyName: 'audited', action: 'keys:create', outcome: 'ok' })]);
    const table = await keyhold('audit', 'query', '--outcome', 'KH_ERR_KEY_NOT_FOUND');
    expect(table.stdout).toMatch(/^TIME +PRINCIPAL +ACTION/);
    expect(table.stdout).toMatch(/token:bootstrap-admin +keys:read +missing-key .* KH_ERR_KEY_NOT_FOUND +404/);
    expect((await keyhold('audit', 'query', '--since', 'yesterday')).code).toBe(2);

    const verified = await keyhold('audit', 'verify');
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, chains: [expect.objectContaining({ state: 'live' })] });
    const contradictory = await keyhold('audit', 'verify', '--addr', server.addr, '--witness', 'file');
    expect(contradictory.code).toBe(2);
  });

  it.skipIf(!CLI_IS_BUILT)('tails the audit log: the newest records first, then new ones as they come, without its own polls', async () => {
    await keyhold('keys', 'create', 'tailed');
    const { child, done } = spawnCli(['audit', 'tail', '-n', '1', '--interval', '100', '--json'], { env: server.env });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    const lines = async (n: number) => {
      for (let i = 0; i < 200 && out.split('\n').length - 1 < n; i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
      return out.trimEnd().split('\n').map((line) => JSON.parse(line) as { keyName: string | null; action: string | null });
    };
    expect(await lines(1)).toEqual([expect.objectContaining({ keyName: 'tailed', action: 'keys:create' })]);
    await new Promise((resolve) => setTimeout(resolve, 400)); // several polls, none of which may show up
    await server.t.call('POST', '/v1/keys/tailed/rotate', {});
    const followed = await lines(2);
    child.kill('SIGTERM');
    await done;
    expect(followed).toEqual([
      expect.objectContaining({ keyName: 'tailed', action: 'keys:create' }),
      expect.objectContaining({ keyName: 'tailed', action: 'keys:rotate' }),
    ]);
  });

  it.skipIf(!CLI_IS_BUILT)('tail -n 0 prints only what is written after it started, not the log so far', async () => {
    await server.t.call('POST', '/v1/keys', { name: 'before-tail' });
    const auditReads = async () => Number((await server.t.db('audit_records').where({ action: 'audit:read' }).count({ n: '*' }))[0]!.n);
    const readsBefore = await auditReads();
    const { child, done } = spawnCli(['audit', 'tail', '-n', '0', '--interval', '100', '--json'], { env: server.env });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    // "After it started" is after its first poll was answered (audited first), however long a busy machine takes to
    // start the process; then several more polls, over a log of every earlier test's records.
    for (let i = 0; i < 200 && (await auditReads()) === readsBefore; i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await server.t.call('POST', '/v1/keys', { name: 'after-tail' });
    for (let i = 0; i < 200 && !out.includes('after-tail'); i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill('SIGTERM');
    await done;
    const printed = out.trimEnd().split('\n').map((line) => JSON.parse(line) as { keyName: string | null; action: string | null });
    expect(printed).toEqual([expect.objectContaining({ keyName: 'after-tail', action: 'keys:create' })]);
  });

  it.skipIf(!CLI_IS_BUILT)('usage names who used which version of a key for what, from the service\'s fleet inventory', async () => {
    expect((await server.t.call('POST', '/v1/keys', { name: 'inventoried' })).status).toBe(201);
    expect((await server.t.call('POST', '/v1/keys/inventoried/datakey', {})).status).toBe(200);
    expect((await server.t.call('POST', '/v1/keys/inventoried/rotate')).status).toBe(200);
    expect((await server.t.call('POST', '/v1/keys/inventoried/encrypt', { plaintext: 'aGk=' })).status).toBe(200);

    const all = await keyhold('usage', 'inventoried', '--json');
    expect(all.code, all.stderr).toBe(0);
    const rows = (JSON.parse(all.stdout) as { usage: { principal: string; keyVersion: number; action: string; count: number }[] }).usage;
    expect(rows.map(({ principal, keyVersion, action, count }) => ({ principal, keyVersion, action, count }))).toEqual(
      expect.arrayContaining([
        { principal: 'token:bootstrap-admin', keyVersion: 1, action: 'datakey', count: 1 },
        { principal: 'token:bootstrap-admin', keyVersion: 2, action: 'encrypt', count: 1 },
      ]),
    );
    expect(rows).toHaveLength(2);

    const first = await keyhold('usage', 'inventoried', '--version', '1');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^token:bootstrap-admin +1 +datakey +1 /m);
    expect(first.stdout).not.toContain('encrypt');
    expect((await keyhold('usage', 'no-such-key')).code).toBe(4);
  });
});

it.skipIf(!CLI_IS_BUILT)('keyhold usage renders the fleet inventory of GET /v1/keys/{name}/usage as a table, newest first', async () => {
  // A stub answers a fixed body, so the query string and the table's layout are checked exactly.
  const requests: string[] = [];
  const stub: Server = createServer((request, response) => {
    requests.push(request.url ?? '');
    response.setHeader('content-type', 'application/json');
    response.end(
      JSON.stringify({
        keyName: 'orders',
        keyId: '3f1c6f39-8d0c-4a43-9d55-0d4b1e0f7a11',
        since: '2025-01-01T00:00:00.000Z',
        until: null,
        usage: [
          { principal: 'k8s:shop:api', keyVersion: 2, action: 'encrypt', count: 1200, firstSeen: '2025-01-02T00:00:00.000Z', lastSeen: '2025-01-09T00:00:00.000Z' },
          { principal: 'k8s:shop:batch', keyVersion: 1, action: 'decrypt', count: 3, firstSeen: '2025-01-01T00:00:00.000Z', lastSeen: '2025-01-10T00:00:00.000Z' },
        ],
      }),
    );
  });
  await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
  try {
    const addr = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
    const result = await runCli(['usage', 'orders', '--version', '1', '--since', '2025-01-01T00:00:00Z'], { env: { KEYHOLD_ADDR: addr, KEYHOLD_TOKEN: 'kh_x' } });
    expect(result.code, result.stderr).toBe(0);
    expect(requests).toEqual(['/v1/keys/orders/usage?version=1&since=2025-01-01T00%3A00%3A00Z']);
    expect(result.stdout.split('\n').slice(2, 5)).toEqual([
      expect.stringMatching(/^PRINCIPAL +VERSION +ACTION +COUNT +FIRST SEEN +LAST SEEN$/),
      expect.stringMatching(/^k8s:shop:batch +1 +decrypt +3 +2025-01-01T00:00:00.000Z +2025-01-10T00:00:00.000Z$/),
      expect.stringMatching(/^k8s:shop:api +2 +encrypt +1200 /),
    ]);
  } finally {
    await new Promise((resolve) => stub.close(resolve));
  }
});
