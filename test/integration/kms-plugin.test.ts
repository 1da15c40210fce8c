import { randomBytes, randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { lstatSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import { join } from 'node:path';
import { status as Code, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KeyholdKms, MAX_PLAINTEXT_BYTES } from '../../src/kms-plugin/keyhold-kms.js';
import { describeEachDatabase } from '../helpers/app.js';
import { CLI_IS_BUILT, spawnCli, startCliServer, type CliServer } from '../helpers/cli.js';
import { apiserverClient, startPlugin, stopPlugin, type RunningPlugin } from '../helpers/kms-plugin.js';

/**
 * A TCP relay in front of the service, bound once for the whole file (no port is given up and taken again, which
 * another process could take in between). `forward`: the service is there; `refuse`: it has gone (every connection
 * is reset at once); `silent`: it accepts and never answers.
 */
class Relay {
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  mode: 'forward' | 'refuse' | 'silent' = 'forward';
  port = 0;

  constructor(private readonly target: number) {}

  async start(): Promise<void> {
    this.#server = createServer((inbound) => {
      this.#sockets.add(inbound);
      inbound.on('close', () => this.#sockets.delete(inbound));
      inbound.on('error', () => undefined);
      if (this.mode === 'refuse') {
        inbound.resetAndDestroy();
        return;
      }
      if (this.mode === 'silent') return;
      const outbound = new Socket();
      outbound.connect(this.target, '127.0.0.1');
      this.#sockets.add(outbound);
      outbound.on('close', () => this.#sockets.delete(outbound));
      outbound.on('error', () => undefined);
      inbound.pipe(outbound).pipe(inbound);
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server!.address() as { port: number }).port;
  }

  /** Switches mode; connections open under the old one are cut, as a service going away cuts them. */
  set(mode: 'forward' | 'refuse' | 'silent'): void {
    this.mode = mode;
    for (const socket of this.#sockets) socket.destroy();
  }

  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server!.close(() => resolve()));
  }
}

const expectCode = async (promise: Promise<unknown>, code: Code): Promise<ServiceError> => {
  const error = await promise.then(
    () => undefined,
    (e: ServiceError) => e,
  );
  expect(error, 'the call should fail').toBeDefined();
  expect(Code[error!.code], error!.details).toBe(Code[code]);
  return error!;
};

describeEachDatabase('keyhold kms-plugin (Kubernetes KMS v2)', (kind) => {
  let server: CliServer;
  let relay: Relay;
  let plugin: RunningPlugin | undefined;
  let apiserver: ReturnType<typeof apiserverClient>;
  let socket: string;
  let tokenFile: string;

  beforeAll(async () => {
    server = await startCliServer(kind);
    expect((await server.t.call('POST', '/v1/keys', { name: 'k8s-secrets' })).status).toBe(201);
    relay = new Relay(Number(new URL(server.addr).port));
    await relay.start();
    const issued = await server.t.call('POST', '/v1/tokens', { name: 'kms-plugin', admin: true });
    expect(issued.status).toBe(201);
    tokenFile = join(server.t.store.dataDir, 'kms-plugin.token');
    writeFileSync(tokenFile, `${issued.body.token as string}\n`, { mode: 0o600 });
    socket = join(server.t.store.dataDir, 'kms.sock');
    writeFileSync(socket, ''); // not a socket: the plugin refuses to replace it (checked below), then a stale socket
    if (!CLI_IS_BUILT) return;
    const refused = await spawnCli(['kms-plugin', '--socket', socket, '--key', 'k8s-secrets', '--addr', `http://127.0.0.1:${relay.port}`, '--token-file', tokenFile]).done;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^keyhold: KH_CLI_SOCKET: .*not a socket/);
    rmSync(socket);
    // A socket another process still accepts on is a running plugin's: taking it over is refused.
    const live = createServer();
    await new Promise<void>((resolve) => live.listen(socket, resolve));
    try {
      const busy = await spawnCli(['kms-plugin', '--socket', socket, '--key', 'k8s-secrets', '--addr', `http://127.0.0.1:${relay.port}`, '--token-file', tokenFile]).done;
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(/^keyhold: KH_CLI_SOCKET: .*in use/);
    } finally {
      await new Promise<void>((resolve) => live.close(() => resolve()));
    }
    // A socket file left behind by a plugin that was killed: nothing accepts on it, and the plugin replaces it.
    const crashed = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`]);
    await new Promise<void>((resolve) => crashed.stdout.once('data', () => resolve()));
    crashed.kill('SIGKILL');
    await new Promise<void>((resolve) => crashed.once('exit', () => resolve()));
    expect(lstatSync(socket).isSocket()).toBe(true);
    plugin = await startPlugin(['--socket', socket, '--key', 'k8s-secrets', '--addr', `http://127.0.0.1:${relay.port}`, '--token-file', tokenFile, '--timeout', '1500']);
    apiserver = apiserverClient(socket);
  }, 30_000);

  afterAll(async () => {
    apiserver?.close();
    if (plugin !== undefined) await stopPlugin(plugin, socket);
    await relay?.stop().catch(() => undefined);
    await server?.t.close();
  });

  it.skipIf(!CLI_IS_BUILT)('replaces a socket left by a killed plugin, refuses one in use, and makes its own 0600', () => {
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
  });

  it.skipIf(!CLI_IS_BUILT)('Status answers version v2, healthz ok and key_id naming the key and its primary version', async () => {
    expect(await apiserver.status()).toEqual({ version: 'v2', healthz: 'ok', key_id: 'k8s-secrets:v1' });
  });

  it.skipIf(!CLI_IS_BUILT)('Encrypt of a 32-byte DEK seed answers a ciphertext and key_id within 1 KiB, and Decrypt returns the seed', async () => {
    const seed = randomBytes(32);
    const object = await apiserver.encrypt(seed);
    expect(object.keyID).toBe('k8s-secrets:v1');
    expect(object.encryptedDEKSource.length).toBeGreaterThan(0);
    expect(object.encryptedDEKSource.length).toBeLessThanOrEqual(1024);
    expect(Buffer.byteLength(object.keyID)).toBeLessThanOrEqual(1024);
    expect(object.encryptedDEKSource.includes(seed)).toBe(false);
    expect(object.annotations).toEqual({});
    expect((await apiserver.decrypt(object)).equals(seed)).toBe(true);
  });

  it.skipIf(!CLI_IS_BUILT)("puts the apiserver's uid into the audit record as its requestId", async () => {
    const uid = randomUUID();
    await apiserver.encrypt(randomBytes(32), uid);
    const audit = await server.t.call('GET', '/v1/audit?limit=20');
    const records = (audit.body.items ?? audit.body.records ?? audit.body) as Array<{ requestId: string; action: string }>;
    expect(JSON.stringify(records)).toContain(uid);
    expect(records.find((record) => record.requestId === uid)?.action).toBe('encrypt');
  });

  it.skipIf(!CLI_IS_BUILT)('after a rotation the next Status reports the new key_id, and objects stored under the old version still decrypt', async () => {
    const seed = randomBytes(32);
    const old = await apiserver.encrypt(seed);
    expect(old.keyID).toBe('k8s-secrets:v1');
    expect((await server.t.call('POST', '/v1/keys/k8s-secrets/rotate')).status).toBe(200);
    expect((await apiserver.status()).key_id).toBe('k8s-secrets:v2');
    const fresh = await apiserver.encrypt(seed);
    expect(fresh.keyID).toBe('k8s-secrets:v2');
    expect((await apiserver.decrypt(old)).equals(seed)).toBe(true);
    // Whatever key_id the apiserver passes along, any version that may decrypt does.
    expect((await apiserver.decrypt({ ...old, keyID: 'k8s-secrets:v2' })).equals(seed)).toBe(true);
  });

  it.skipIf(!CLI_IS_BUILT)('takes a plaintext up to the size whose ciphertext is exactly 1 KiB, and refuses a larger or empty one with INVALID_ARGUMENT', async () => {
    const largest = Buffer.alloc(MAX_PLAINTEXT_BYTES, 7);
    const object = await apiserver.encrypt(largest);
    expect(object.encryptedDEKSource.length).toBe(1024);
    expect((await apiserver.decrypt(object)).equals(largest)).toBe(true);
    await expectCode(apiserver.encrypt(randomBytes(MAX_PLAINTEXT_BYTES + 1)), Code.INVALID_ARGUMENT);
    await expectCode(apiserver.encrypt(randomBytes(4097)), Code.INVALID_ARGUMENT);
    await expectCode(apiserver.encrypt(Buffer.alloc(0)), Code.INVALID_ARGUMENT);
  });

  it.skipIf(!CLI_IS_BUILT)('answers a tampered, foreign or oversized ciphertext with INVALID_ARGUMENT, never with its plaintext', async () => {
    const seed = randomBytes(32);
    const object = await apiserver.encrypt(seed);
    const tampered = Buffer.from(object.encryptedDEKSource);
    tampered[tampered.length - 3] = tampered[tampered.length - 3] === 65 ? 66 : 65;
    const error = await expectCode(apiserver.decrypt({ ...object, encryptedDEKSource: tampered }), Code.INVALID_ARGUMENT);
    expect(error.details).toMatch(/KH_ERR_DECRYPTION_FAILED/);
    await expectCode(apiserver.decrypt({ ...object, encryptedDEKSource: randomBytes(64) }), Code.INVALID_ARGUMENT);
    await expectCode(apiserver.decrypt({ ...object, encryptedDEKSource: Buffer.alloc(1025, 65) }), Code.INVALID_ARGUMENT);
  });

  it.skipIf(!CLI_IS_BUILT)('a disabled key turns the next Status unhealthy and Encrypt FAILED_PRECONDITION; enabled again, it is ok', async () => {
    expect((await server.t.call('POST', '/v1/keys/k8s-secrets/disable')).status).toBe(200);
    const status = await apiserver.status();
    expect(status.version).toBe('v2');
    expect(status.healthz).not.toBe('ok');
    expect(status.healthz).toMatch(/^unhealthy: KH_ERR_/);
    await expectCode(apiserver.encrypt(randomBytes(32)), Code.FAILED_PRECONDITION);
    expect((await server.t.call('POST', '/v1/keys/k8s-secrets/enable')).status).toBe(200);
    expect((await apiserver.status()).healthz).toBe('ok');
  });

  it.skipIf(!CLI_IS_BUILT)('a token revoked turns the next Status unhealthy, and calls UNAUTHENTICATED, naming no token', async () => {
    const issued = await server.t.call('POST', '/v1/tokens', { name: 'kms-plugin-2', admin: true });
    const secret = issued.body.token as string;
    writeFileSync(tokenFile, secret); // the plugin reads its token file on every call
    expect((await apiserver.status()).healthz).toBe('ok');
    expect((await server.t.call('DELETE', `/v1/tokens/${issued.body.id as string}`)).status).toBeLessThan(300);
    const status = await apiserver.status();
    expect(status.healthz).not.toBe('ok');
    expect(status.healthz).not.toContain(secret);
    const error = await expectCode(apiserver.encrypt(randomBytes(32)), Code.UNAUTHENTICATED);
    expect(error.details).not.toContain(secret);
    const fresh = await server.t.call('POST', '/v1/tokens', { name: 'kms-plugin-3', admin: true });
    writeFileSync(tokenFile, fresh.body.token as string);
    expect((await apiserver.status()).healthz).toBe('ok');
  });

  it.skipIf(!CLI_IS_BUILT)('a missing key is NOT_FOUND on Encrypt and unhealthy on Status', async () => {
    // Same plugin code path, another key: the service answers 404 for a key that does not exist.
    const kms = new KeyholdKms({ url: new URL(server.addr), token: () => readFileSync(tokenFile, 'utf8').trim(), keyName: 'no-such-key', timeoutMs: 2000 });
    expect((await kms.status()).healthz).toMatch(/^unhealthy: KH_ERR_KEY_NOT_FOUND/);
    await expect(kms.encrypt(randomBytes(32), randomUUID())).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it.skipIf(!CLI_IS_BUILT)('with the service gone, Status is unhealthy within its bound and calls are UNAVAILABLE; it recovers when the service is back', async () => {
    const seed = randomBytes(32);
    const object = await apiserver.encrypt(seed);
    relay.set('refuse');
    try {
      const started = Date.now();
      const status = await apiserver.status();
      expect(Date.now() - started).toBeLessThan(3000);
      expect(status.healthz).toMatch(/^unhealthy: cannot reach/);
      expect(status.key_id).toBe('k8s-secrets:v2'); // the last key id known
      await expectCode(apiserver.encrypt(seed), Code.UNAVAILABLE);
      await expectCode(apiserver.decrypt(object), Code.UNAVAILABLE);
    } finally {
      relay.set('forward');
    }
    expect((await apiserver.status()).healthz).toBe('ok');
    expect((await apiserver.decrypt(object)).equals(seed)).toBe(true);
  });

  it.skipIf(!CLI_IS_BUILT)('a service that does not answer makes Status unhealthy within --timeout, not a hang', async () => {
    // The service's port accepts and never answers.
    relay.set('silent');
    try {
      const started = Date.now();
      const status = await apiserver.status();
      // --timeout is 1500 ms; the bound leaves room for a loaded machine, far below a hang (the client's deadline).
      expect(Date.now() - started).toBeLessThan(4000);
      expect(status.healthz).toMatch(/no answer within 1500 ms/);
      await expectCode(apiserver.encrypt(randomBytes(32)), Code.UNAVAILABLE);
    } finally {
      relay.set('forward');
    }
    expect((await apiserver.status()).healthz).toBe('ok');
  });
});

