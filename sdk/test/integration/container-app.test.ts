import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { buildTestApp, type TestApp } from '../../../test/helpers/app.js';
import { AUDIENCE, ISSUER, issuerKey, keySet, serviceAccountClaims, signToken, TempDir, type IssuerKey } from '../../../test/helpers/kubernetes.js';

/**
 * The container-app example (examples/container-app), run for real: `node server.mjs` as a child process, as its
 * image runs it, against a Keyhold server listening on a port. It authenticates as the Kubernetes workload its
 * manifests describe, with a projected-token file signed by a test issuer, under the policy it ships
 * (k8s/keyhold-policy.json). The example resolves '@keyhold/sdk' through the repository's node_modules, so the SDK
 * must be built (`npm run build`).
 */

const EXAMPLE_DIR = fileURLToPath(new URL('../../../examples/container-app/', import.meta.url));
const SERVER = join(EXAMPLE_DIR, 'server.mjs');
const SDK_ENTRY = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
const POSTGRES_URL = process.env.KEYHOLD_TEST_DATABASE_URL;
const PLAINTEXT = 'card 4111 1111 1111 1111, exp 12/29';

// ---------------------------------------------------------------------------------------------------------------
// What the example ships: the test reads its names from the manifests, so they cannot drift from what it runs.

interface Manifest {
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec?: any;
}

function manifest(file: string): Manifest {
  return parseYaml(readFileSync(join(EXAMPLE_DIR, 'k8s', file), 'utf8')) as Manifest;
}

const DEPLOYMENT = manifest('deployment.yaml');
const SERVICE_ACCOUNT = manifest('serviceaccount.yaml');
const SERVICE = manifest('service.yaml');
const POLICY = JSON.parse(readFileSync(join(EXAMPLE_DIR, 'k8s', 'keyhold-policy.json'), 'utf8')) as {
  statements: Array<{ principals: string[]; keys: string[] }>;
};
const POD = DEPLOYMENT.spec.template.spec;
const CONTAINER = POD.containers[0];
const ENV = new Map<string, string | undefined>(CONTAINER.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
const NAMESPACE = DEPLOYMENT.metadata.namespace as string;
const KEY_NAME = ENV.get('APP_KEY_NAME') as string;
const PRINCIPAL = `k8s:${NAMESPACE}:${POD.serviceAccountName}`;

/** A projected token of `serviceAccount` in `namespace`, as the kubelet would write it. */
async function projectedToken(issuer: IssuerKey, t: TestApp, namespace: string, serviceAccount: string): Promise<string> {
  return signToken(
    issuer,
    serviceAccountClaims(t.clock, {
      sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
      'kubernetes.io': {
        namespace,
        pod: { name: `${serviceAccount}-7d9f8b6c5-x2k4q`, uid: '3c0f9d2e-5b1a-4c8e-9f7d-2a6b1e4c8d90' },
        serviceaccount: { name: serviceAccount, uid: 'a1b2c3d4-0000-4000-8000-000000000001' },
      },
    }),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The example as a child process

interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

class ExampleProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  #stdout = '';
  #stderr = '';

  constructor(env: Record<string, string>) {
    // Only what the example needs: nothing of the test runner's environment (a KEYHOLD_TOKEN, say) leaks in.
    this.child = spawn(process.execPath, [SERVER], {
      cwd: EXAMPLE_DIR,
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', KEYHOLD_TIMEOUT_MS: '5000', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.#stdout += chunk.toString('utf8')));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.#stderr += chunk.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  output(): string {
    return this.#stdout + this.#stderr;
  }

  /** Every JSON log line, stdout and stderr. */
  lines(): LogLine[] {
    return this.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine);
  }

  /** The `listening` line, once it is printed; rejects with the output if the process exits first. */
  async listening(timeoutMs = 15_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    let exitCode: number | null | undefined;
    void this.exited.then((code) => (exitCode = code));
    for (;;) {
      const line = this.lines().find((l) => l.msg === 'listening');
      if (line !== undefined) return line;
      if (exitCode !== undefined) throw new Error(`the example exited with ${exitCode}:\n${this.output()}`);
      if (Date.now() > deadline) throw new Error(`the example did not listen within ${timeoutMs} ms:\n${this.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Where the example keeps its ciphertexts, seen from outside

interface Storage {
  readonly kind: 'files' | 'postgres';
  readonly env: Record<string, string>;
  read(id: string): Promise<Buffer | undefined>;
  write(id: string, bytes: Buffer): Promise<void>;
  destroy(): Promise<void>;
}

function fileStorage(): Storage {
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-container-app-'));
  const path = (id: string): string => join(dir, `${id}.enc`);
  return {
    kind: 'files',
    env: { DATA_DIR: dir },
    read: async (id) => (existsSync(path(id)) ? readFileSync(path(id)) : undefined),
    write: async (id, bytes) => writeFileSync(path(id), bytes),
    destroy: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

function postgresStorage(url: string): Storage {
  // A table of its own per run, dropped at the end, in the shared test database.
  const table = `container_app_test_${randomBytes(6).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  return {
    kind: 'postgres',
    env: { DATABASE_URL: url, APP_TABLE: table },
    async read(id) {
      const result = await pool.query<{ ciphertext: Buffer }>(`SELECT ciphertext FROM "${table}" WHERE id = $1`, [id]);
      return result.rows[0]?.ciphertext;
    },
    async write(id, bytes) {
      const result = await pool.query(`UPDATE "${table}" SET ciphertext = $2 WHERE id = $1`, [id, bytes]);
      expect(result.rowCount).toBe(1);
    },
    async destroy() {
      try {
        await pool.query(`DROP TABLE IF EXISTS "${table}"`);
      } finally {
        await pool.end();
      }
    },
  };
}

const STORAGES: Array<[Storage['kind'], () => Storage]> = [
  ['files', fileStorage],
  ...(POSTGRES_URL === undefined ? [] : [['postgres', () => postgresStorage(POSTGRES_URL)] as [Storage['kind'], () => Storage]]),
];

// ---------------------------------------------------------------------------------------------------------------

let issuer: IssuerKey;
const dir = new TempDir();
let authConfig: string;

beforeAll(async () => {
  expect(existsSync(SDK_ENTRY), `${SDK_ENTRY} is missing: run \`npm run build\` first`).toBe(true);
  issuer = await issuerKey('RS256', 'cluster-1');
  const jwks = dir.write('jwks.json', keySet(issuer));
  authConfig = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['RS256'], jwksFile: jwks }]);
});
afterAll(() => dir.remove());

/** A Keyhold server on a real port, with the example's key and policy, as its README deploys them. */
async function keyholdForTheExample(): Promise<{ t: TestApp; url: string }> {
  const t = await buildTestApp('sqlite', { env: { KEYHOLD_AUTH_CONFIG: authConfig } });
  try {
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const created = await t.call('POST', '/v1/keys', { name: KEY_NAME });
    expect(created.status, created.text).toBe(201);
    const policy = await t.call('PUT', '/v1/policies/container-app', POLICY);
    expect(policy.status, policy.text).toBe(201);
  } catch (error) {
    await t.close();
    throw error;
  }
  const { port } = t.app.server.address() as AddressInfo;
  return { t, url: `http://127.0.0.1:${port}` };
}

describe('the container-app manifests', () => {
  it('mount a projected token of audience keyhold where the SDK reads it by default', () => {
    const volume = POD.volumes.find((v: { projected?: unknown }) => v.projected !== undefined);
    const source = volume.projected.sources[0].serviceAccountToken;
    expect(source).toEqual({ audience: 'keyhold', expirationSeconds: 3600, path: 'keyhold' });
    const mount = CONTAINER.volumeMounts.find((m: { name: string }) => m.name === volume.name);
    expect(mount).toMatchObject({ mountPath: '/var/run/secrets/tokens', readOnly: true });
    // DEFAULT_KUBERNETES_TOKEN_PATH of the SDK.
    expect(`${mount.mountPath}/${source.path}`).toBe('/var/run/secrets/tokens/keyhold');
    expect(ENV.get('KEYHOLD_TOKEN_PATH')).toBe('/var/run/secrets/tokens/keyhold');
  });

  it('name the service account and key that the shipped policy grants', () => {
    expect(SERVICE_ACCOUNT.metadata).toMatchObject({ name: POD.serviceAccountName, namespace: NAMESPACE });
    expect(SERVICE.metadata.namespace).toBe(NAMESPACE);
    expect(POLICY.statements.flatMap((s) => s.principals)).toContain(PRINCIPAL);
    expect(POLICY.statements.flatMap((s) => s.keys)).toContain(KEY_NAME);
  });

  it('run the container unprivileged, with no Kubernetes API token and no secret in the manifest', () => {
    expect(POD.automountServiceAccountToken).toBe(false);
    expect(POD.securityContext.runAsNonRoot).toBe(true);
    expect(CONTAINER.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
    expect(CONTAINER.env.find((e: { name: string }) => e.name === 'DATABASE_URL').valueFrom.secretKeyRef).toBeDefined();
    expect(ENV.has('KEYHOLD_TOKEN')).toBe(false);
  });
});

describe('the shipped Keyhold policy', () => {
  let t: TestApp;
  beforeEach(async () => {
    ({ t } = await keyholdForTheExample());
  });
  afterEach(async () => t.close());

  async function decision(body: Record<string, unknown>): Promise<string> {
    const response = await t.call('POST', '/v1/policies/simulate', {
      principal: { id: PRINCIPAL, type: 'kubernetes', attributes: { namespace: NAMESPACE, serviceAccount: POD.serviceAccountName } },
      key: KEY_NAME,
      ...body,
    });
    expect(response.status, response.text).toBe(200);
    return response.body.decision;
  }

  it('allows datakey and decrypt on the key under the app context', async () => {
    for (const action of ['datakey', 'decrypt']) {
      expect(await decision({ action, context: { app: 'container-app', record: 'r1' } })).toBe('allow');
    }
  });

  it('denies them under another context, or none', async () => {
    expect(await decision({ action: 'datakey', context: { app: 'billing', record: 'r1' } })).toBe('deny');
    expect(await decision({ action: 'decrypt' })).toBe('deny');
  });

  it('denies every other action and every other key', async () => {
    for (const action of ['encrypt', 'rewrap', 'keys:read', 'keys:rotate']) {
      expect(await decision({ action, context: { app: 'container-app' } })).toBe('deny');
    }
    expect(await decision({ action: 'datakey', key: 'orders', context: { app: 'container-app' } })).toBe('deny');
  });
});

for (const [storageKind, makeStorage] of STORAGES) {
  describe(`the container-app example, records in ${storageKind}`, () => {
    let t: TestApp;
    let storage: Storage;
    let app: ExampleProcess;
    let base: string;

    beforeEach(async () => {
      let url: string;
      ({ t, url } = await keyholdForTheExample());
      storage = makeStorage();
      const tokenFile = dir.write(`token-${randomBytes(4).toString('hex')}`, `${await projectedToken(issuer, t, NAMESPACE, POD.serviceAccountName)}\n`);
      app = new ExampleProcess({ KEYHOLD_URL: url, KEYHOLD_TOKEN_PATH: tokenFile, APP_KEY_NAME: KEY_NAME, ...storage.env });
      const listening = await app.listening();
      base = `http://127.0.0.1:${listening.port as number}`;
    });

    afterEach(async () => {
      await app.stop();
      await t.close();
      await storage.destroy();
    });

    const put = (id: string, body: string | Buffer): Promise<Response> => fetch(`${base}/records/${id}`, { method: 'PUT', body });
    const get = (id: string): Promise<Response> => fetch(`${base}/records/${id}`);

    it('starts as the Kubernetes workload of its manifests and says where it listens', async () => {
      const listening = app.lines().find((line) => line.msg === 'listening');
      expect(listening).toMatchObject({ level: 'info', principal: PRINCIPAL, key: KEY_NAME, store: storageKind });
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    });

    it('stores a record encrypted and gives its plaintext back', async () => {
      expect((await put('order-1', PLAINTEXT)).status).toBe(204);

      const stored = await storage.read('order-1');
      expect(stored).toBeDefined();
      expect(stored!.includes(Buffer.from(PLAINTEXT))).toBe(false);
      expect(stored!.subarray(0, 4).toString('latin1')).toBe('KHEM');

      const response = await get('order-1');
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/octet-stream');
      expect(await response.text()).toBe(PLAINTEXT);
    });

    it('keeps binary records byte for byte, across segments', async () => {
      const record = randomBytes(200_000);
      expect((await put('blob', record)).status).toBe(204);
      const response = await get('blob');
      expect(response.status).toBe(200);
      expect(Buffer.from(await response.arrayBuffer()).equals(record)).toBe(true);
    });

    it('replaces a record that is stored again', async () => {
      expect((await put('order-1', 'first')).status).toBe(204);
      expect((await put('order-1', 'second')).status).toBe(204);
      expect(await (await get('order-1')).text()).toBe('second');
    });

    it('refuses a stored record that was altered or cut short, alike, and releases no plaintext', async () => {
      expect((await put('order-1', PLAINTEXT)).status).toBe(204);
      const original = (await storage.read('order-1'))!;
      const flip = (at: number): Buffer => {
        const copy = Buffer.from(original);
        copy[at] = copy[at]! ^ 0x01;
        return copy;
      };
      const alterations: Array<[string, Buffer]> = [
        ['a bit of the last segment tag', flip(original.length - 1)],
        ['a bit of the segment ciphertext', flip(original.length - 20)],
        ['a bit of the header (message id)', flip(12)],
        ['the last byte cut off', original.subarray(0, original.length - 1)],
        ['only the header left', original.subarray(0, original.length - PLAINTEXT.length - 16)],
      ];
      for (const [what, altered] of alterations) {
        await storage.write('order-1', altered);
        const response = await get('order-1');
        const body = await response.text();
        expect(response.status, what).toBe(500);
        expect(JSON.parse(body), what).toMatchObject({ code: 'RECORD_UNREADABLE', title: 'The stored record could not be decrypted' });
        expect(body, what).not.toContain(PLAINTEXT.slice(0, 8));
      }
      // The original still reads: nothing was cached from the failed attempts.
      await storage.write('order-1', original);
      expect(await (await get('order-1')).text()).toBe(PLAINTEXT);
      expect(app.output()).not.toContain(PLAINTEXT.slice(0, 8));
    });

    it("refuses another record's ciphertext moved into a record's place", async () => {
      expect((await put('alice', 'alice: balance 1,000,000')).status).toBe(204);
      expect((await put('bob', 'bob: balance 10')).status).toBe(204);
      await storage.write('bob', (await storage.read('alice'))!);

      const moved = await get('bob');
      expect(moved.status).toBe(500);
      expect(await moved.text()).not.toContain('balance');
      expect(await (await get('alice')).text()).toBe('alice: balance 1,000,000');
    });

    it('answers 404 for a record never stored and 400 for an id that is not one', async () => {
      expect((await get('never-stored')).status).toBe(404);
      for (const id of ['..%2F..%2Fetc%2Fpasswd', '.startup-check', 'a%00b', 'x'.repeat(129)]) {
        expect((await get(id)).status, id).toBe(400);
        expect((await put(id, 'x')).status, id).toBe(400);
      }
      expect((await fetch(`${base}/records/x`, { method: 'DELETE' })).status).toBe(405);
    });

    it('refuses a record over 1 MiB with 413 and stores nothing', async () => {
      const response = await put('too-big', Buffer.alloc(1024 * 1024 + 1, 0x61));
      expect(response.status).toBe(413);
      expect(await storage.read('too-big')).toBeUndefined();
    });

    it('stops cleanly on SIGTERM', async () => {
      expect(await app.stop()).toBe(0);
      expect(app.lines().map((line) => line.msg)).toContain('shutting down');
    });
  });
}

describe('the container-app example at start-up', () => {
  let t: TestApp;
  let url: string;
  let storage: Storage;
  const apps: ExampleProcess[] = [];

  beforeEach(async () => {
    ({ t, url } = await keyholdForTheExample());
    storage = fileStorage();
  });
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.stop();
    await t.close();
    await storage.destroy();
  });

  async function failedStart(env: Record<string, string>): Promise<{ code: number | null; fatal: LogLine | undefined; output: string }> {
    const app = new ExampleProcess({ KEYHOLD_URL: url, APP_KEY_NAME: KEY_NAME, ...storage.env, ...env });
    apps.push(app);
    const code = await app.exited;
    return { code, fatal: app.lines().find((line) => line.level === 'fatal'), output: app.output() };
  }

  it('exits 1, naming the code, when Keyhold refuses the credential', async () => {
    const token = `kh_${'z'.repeat(40)}`;
    const { code, fatal, output } = await failedStart({ KEYHOLD_TOKEN: token });
    expect(code).toBe(1);
    expect(fatal).toMatchObject({ msg: 'start-up failed', code: 'KH_SDK_UNAUTHENTICATED' });
    expect(output).not.toContain(token);
  });

  it('exits 1 when the policy does not grant it the key', async () => {
    const tokenFile = dir.write('other-sa-token', await projectedToken(issuer, t, NAMESPACE, 'someone-else'));
    const { code, fatal } = await failedStart({ KEYHOLD_TOKEN_PATH: tokenFile });
    expect(code).toBe(1);
    expect(fatal).toMatchObject({ code: 'KH_SDK_ACCESS_DENIED' });
    expect(fatal?.hint).toContain('keyhold-policy.json');
  });

  it('exits 1 when the token file is not mounted', async () => {
    const { code, fatal } = await failedStart({ KEYHOLD_TOKEN_PATH: join(dir.path, 'not-mounted') });
    expect(code).toBe(1);
    expect(fatal).toMatchObject({ code: 'KH_SDK_CREDENTIALS' });
  });

  it('exits 1, naming every variable at fault, on a bad configuration', async () => {
    const { code, fatal } = await failedStart({ APP_KEY_NAME: '', PORT: 'eighty', DATA_DIR: '' });
    expect(code).toBe(1);
    expect(fatal?.error).toMatch(/APP_KEY_NAME/);
    expect(fatal?.error).toMatch(/PORT/);
    expect(fatal?.error).toMatch(/DATA_DIR/);
  });
});
