import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { status as Code } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { CLI_IS_BUILT, spawnCli, startCliServer, type CliServer } from '../helpers/cli.js';
import { apiserverClient, startPlugin, stopPlugin } from '../helpers/kms-plugin.js';
import { createCertificateAuthority, PemDirectory, type IssuedCertificate } from '../helpers/pki.js';

const WORKLOAD = 'spiffe://example.org/ns/kube-system/sa/keyhold-kms';

describe('keyhold kms-plugin authenticating with an X.509-SVID over mutual TLS [sqlite]', () => {
  let dir: PemDirectory;
  let t: TestApp;
  let port: number;
  let svid: IssuedCertificate;
  let files: { cert: string; key: string; ca: string };

  beforeAll(async () => {
    dir = new PemDirectory();
    const [serverCa, trustDomainCa] = await Promise.all([
      createCertificateAuthority('Keyhold test server CA'),
      createCertificateAuthority('example.org root', 'ec', 'example.org'),
    ]);
    const server = await serverCa.issue({ subject: 'CN=localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] });
    svid = await trustDomainCa.issue({ uris: [WORKLOAD] });
    t = await buildTestApp('sqlite', {
      env: {
        KEYHOLD_TLS_CERT_FILE: dir.write('server.pem', server.certPem),
        KEYHOLD_TLS_KEY_FILE: dir.write('server-key.pem', server.keyPem),
        KEYHOLD_TLS_CLIENT_CA_FILE: dir.write('client-ca.pem', trustDomainCa.certPem),
        KEYHOLD_AUTH_CONFIG: dir.write('auth.yaml', 'spiffe:\n  trustDomains: [example.org]\n'),
      },
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.server.address() as AddressInfo).port;
    expect((await t.call('POST', '/v1/keys', { name: 'k8s-secrets' })).status).toBe(201);
    const policy = await t.call('PUT', '/v1/policies/kms-plugin', {
      statements: [{ effect: 'allow', principals: [WORKLOAD], actions: ['encrypt', 'decrypt'], keys: ['k8s-secrets'] }],
    });
    expect(policy.status).toBeLessThan(300);
    files = { cert: dir.write('svid.pem', svid.certPem), key: dir.write('svid-key.pem', svid.keyPem), ca: dir.write('bundle.pem', serverCa.certPem) };
  }, 30_000);

  afterAll(async () => {
    await t?.close();
    dir?.remove();
  });

  it.skipIf(!CLI_IS_BUILT)('with --tls-cert, --tls-key and --ca and no token: Status ok, Encrypt/Decrypt round trip, audited as the SPIFFE ID', async () => {
    const socket = join(t.store.dataDir, 'kms-svid.sock');
    const plugin = await startPlugin(
      ['--socket', socket, '--key', 'k8s-secrets', '--addr', `https://127.0.0.1:${port}`, '--tls-cert', files.cert, '--tls-key', files.key, '--ca', files.ca],
      {},
    );
    const apiserver = apiserverClient(socket);
    try {
      expect(plugin.stderr()).toContain('(status: ok)');
      expect(await apiserver.status()).toEqual({ version: 'v2', healthz: 'ok', key_id: 'k8s-secrets:v1' });
      const seed = randomBytes(32);
      const uid = randomUUID();
      const object = await apiserver.encrypt(seed, uid);
      expect(object.keyID).toBe('k8s-secrets:v1');
      expect((await apiserver.decrypt(object)).equals(seed)).toBe(true);
      const audit = await t.call('GET', '/v1/audit?limit=50');
      const records = (audit.body.items ?? audit.body.records ?? audit.body) as Array<{ requestId: string; action: string; principalId: string; principalType: string }>;
      expect(records.find((record) => record.requestId === uid)).toMatchObject({ action: 'encrypt', principalId: WORKLOAD, principalType: 'spiffe' });
      expect(plugin.stderr()).not.toContain(svid.keyPem.split('\n')[1]!);
    } finally {
      apiserver.close();
      await stopPlugin(plugin, socket);
    }
  }, 30_000);

  it.skipIf(!CLI_IS_BUILT)('without --ca the service certificate is refused: unhealthy, naming the check, and calls UNAVAILABLE', async () => {
    const socket = join(t.store.dataDir, 'kms-svid-noca.sock');
    const plugin = await startPlugin(['--socket', socket, '--key', 'k8s-secrets', '--addr', `https://127.0.0.1:${port}`, '--tls-cert', files.cert, '--tls-key', files.key]);
    const apiserver = apiserverClient(socket);
    try {
      expect((await apiserver.status()).healthz).toMatch(/^unhealthy: cannot reach https:\/\/127\.0\.0\.1:\d+: [A-Z_]+$/);
      await expect(apiserver.encrypt(randomBytes(32))).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    } finally {
      apiserver.close();
      await stopPlugin(plugin, socket);
    }
  }, 30_000);

  it.skipIf(!CLI_IS_BUILT)('refuses --tls-cert without --tls-key, and --tls-cert over http:', async () => {
    const socket = join(t.store.dataDir, 'kms-svid-bad.sock');
    const lone = await spawnCli(['kms-plugin', '--socket', socket, '--key', 'k', '--addr', `https://127.0.0.1:${port}`, '--tls-cert', files.cert]).done;
    expect(lone.code).toBe(2);
    expect(lone.stderr).toMatch(/--tls-cert and --tls-key go together/);
    const plain = await spawnCli(['kms-plugin', '--socket', socket, '--key', 'k', '--addr', `http://127.0.0.1:${port}`, '--tls-cert', files.cert, '--tls-key', files.key]).done;
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/need an https: service address/);
  });
});

describe('keyhold kms-plugin start-up [sqlite]', () => {
  let server: CliServer;

  beforeAll(async () => {
    server = await startCliServer('sqlite');
    expect((await server.t.call('POST', '/v1/keys', { name: 'k8s-secrets' })).status).toBe(201);
  });

  afterAll(async () => server?.t.close());

  it.skipIf(!CLI_IS_BUILT)('a token file missing at start: the plugin serves, unhealthy and UNAUTHENTICATED, until the file appears', async () => {
    const socket = join(server.t.store.dataDir, 'kms-late.sock');
    const tokenFile = join(server.t.store.dataDir, 'late.token');
    const plugin = await startPlugin(['--socket', socket, '--key', 'k8s-secrets', '--addr', server.addr, '--token-file', tokenFile]);
    const apiserver = apiserverClient(socket);
    try {
      expect(plugin.stderr()).toContain('(status: unhealthy: the plugin credential cannot be read)');
      expect((await apiserver.status()).healthz).toBe('unhealthy: the plugin credential cannot be read');
      await expect(apiserver.encrypt(randomBytes(32))).rejects.toMatchObject({ code: Code.UNAUTHENTICATED });
      const issued = await server.t.call('POST', '/v1/tokens', { name: 'kms-late', admin: true });
      writeFileSync(tokenFile, `${issued.body.token as string}\n`, { mode: 0o600 });
      expect(await apiserver.status()).toEqual({ version: 'v2', healthz: 'ok', key_id: 'k8s-secrets:v1' });
    } finally {
      apiserver.close();
      await stopPlugin(plugin, socket);
    }
  }, 30_000);

  it.skipIf(!CLI_IS_BUILT)('a SIGTERM while the first Status waits on a silent service removes the socket and exits 0', async () => {
    const held = new Set<Socket>();
    const silent: Server = createServer((connection) => held.add(connection));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const socket = join(server.t.store.dataDir, 'kms-slow.sock');
    const tokenFile = join(server.t.store.dataDir, 'slow.token');
    writeFileSync(tokenFile, 'not-checked', { mode: 0o600 });
    try {
      const silentPort = (silent.address() as AddressInfo).port;
      const plugin = spawnCli(['kms-plugin', '--socket', socket, '--key', 'k8s-secrets', '--addr', `http://127.0.0.1:${silentPort}`, '--token-file', tokenFile, '--timeout', '20000']);
      const started = Date.now();
      while (!existsSync(socket)) {
        if (Date.now() - started > 15_000) throw new Error('the plugin did not bind');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      plugin.child.kill('SIGTERM');
      const done = await plugin.done;
      // Promptly: the call the first Status waits on is cut, not left to its 20 s timeout.
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(done.code, done.stderr).toBe(0);
      expect(done.stderr).toContain('SIGTERM, stopping');
      expect(done.stderr).not.toContain('serving KMS v2');
      expect(existsSync(socket)).toBe(false);
    } finally {
      for (const connection of held) connection.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  }, 40_000);
});
