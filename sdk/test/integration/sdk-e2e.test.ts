import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, changesApplied, describeEachDatabase, TEST_ADMIN_TOKEN, type TestApp } from '../../../test/helpers/app.js';
import { AUDIENCE, ISSUER, issuerKey, keySet, serviceAccountClaims, signToken, TempDir, type IssuerKey } from '../../../test/helpers/kubernetes.js';
import { decodeHeader } from '../../src/format/header.js';
import {
  apiToken,
  createClient,
  DecryptionError,
  kubernetesServiceAccount,
  ServiceError,
  type AuthProvider,
  type ClientOptions,
  type KeyholdClient,
} from '../../src/index.js';
import { pipeThrough } from '../helpers/envelope.js';

/**
 * The SDK against the real service: the app listens on 127.0.0.1, and clients reach it through the SDK's own HTTP
 * transport. Keys and policies are made with the admin API; workloads authenticate with an API token or a
 * Kubernetes service-account token. Every request the service receives is recorded, so the tests can tell when the
 * data-key cache saved one.
 */

const MiB = 1024 * 1024;
const CONTEXT = { tenant: 'acme', purpose: 'invoices' };

let issuer: IssuerKey;
const dir = new TempDir();
let authConfig: string;

beforeAll(async () => {
  issuer = await issuerKey('RS256', 'k1');
  const jwks = dir.write('jwks.json', keySet(issuer));
  authConfig = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['RS256'], jwksFile: jwks }]);
});
afterAll(() => dir.remove());

/** A request the service received. */
interface Served {
  readonly method: string;
  readonly path: string;
  /** The answer's status: set before its headers go out, so known by the time the client has the answer. */
  readonly status: () => number;
}

function asError(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

async function expectDecryptionError(promise: Promise<unknown>): Promise<void> {
  const error = await asError(promise);
  expect(error).toBeInstanceOf(DecryptionError);
  expect((error as DecryptionError).code).toBe('KH_SDK_DECRYPTION_FAILED');
}

async function expectServiceError(promise: Promise<unknown>, code: string, status: number, serviceCode: string): Promise<void> {
  const error = await asError(promise);
  expect(error).toBeInstanceOf(ServiceError);
  expect(error).toMatchObject({ code, status, serviceCode });
}

describeEachDatabase('the SDK against the service over HTTP', (kind) => {
  let t: TestApp;
  let url: string;
  let served: Served[];
  let clients: KeyholdClient[];

  function client(auth: AuthProvider = apiToken(TEST_ADMIN_TOKEN), options: Partial<ClientOptions> = {}): KeyholdClient {
    const made = createClient({ url, auth, retries: 0, ...options });
    clients.push(made);
    return made;
  }

  /** Requests the service received for `path` (and method POST), so far. */
  function requestsTo(path: string): number {
    return served.filter((request) => request.method === 'POST' && request.path === path).length;
  }

  async function admin(method: string, path: string, body?: unknown): Promise<any> {
    const response = await t.call(method, path, body);
    expect(response.status, response.text).toBeLessThan(300);
    return response.body;
  }

  /** An API-token workload allowed `datakey` and `decrypt` on `orders` only. */
  async function apiTokenWorkload(): Promise<AuthProvider> {
    const issued = await admin('POST', '/v1/tokens', { name: 'worker' });
    await admin('PUT', '/v1/policies/worker', {
      statements: [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey', 'decrypt'], keys: ['orders'] }],
    });
    return apiToken(issued.token as string);
  }

  /** A Kubernetes workload (`k8s:payments:api`) allowed `datakey` and `decrypt` on `orders` only. */
  async function kubernetesWorkload(): Promise<AuthProvider> {
    await admin('PUT', '/v1/policies/payments', {
      statements: [{ effect: 'allow', principals: ['k8s:payments:api'], actions: ['datakey', 'decrypt'], keys: ['orders'] }],
    });
    const tokenPath = dir.write(`token-${kind}`, `${await signToken(issuer, serviceAccountClaims(t.clock))}\n`);
    return kubernetesServiceAccount({ tokenPath });
  }

  beforeEach(async () => {
    t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: authConfig } });
    served = [];
    clients = [];
    t.app.server.on('request', (request, response) => {
      const path = (request.url ?? '').split('?')[0]!;
      // The clients' revocation-event streams open in the background; these tests count the calls that do the work.
      if (path === '/v1/events') return;
      served.push({ method: request.method ?? '', path, status: () => response.statusCode });
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    for (const name of ['orders', 'billing']) await admin('POST', '/v1/keys', { name });
    // A client's stream opened before the feed applied these would get their events and purge what the tests count.
    await changesApplied(t);
  });

  afterEach(async () => {
    await Promise.all(clients.map((made) => made.close()));
    await t.close();
  });

  describe('round trips', () => {
    // One app for all sizes: building one per size would cost more than the round trips.
    it('one-shot: messages of 0, 1, 65,535, 65,536, 65,537 bytes and 10 MiB with a context decrypt to themselves', async () => {
      const sdk = client();
      for (const size of [0, 1, 65_535, 65_536, 65_537, 10 * MiB]) {
        const plaintext = randomBytes(size);
        const message = await sdk.encrypt('orders', plaintext, { context: CONTEXT });
        expect(decodeHeader(message).context.pairs).toEqual([['purpose', 'invoices'], ['tenant', 'acme']]);
        expect((await sdk.decrypt(message)).equals(plaintext), `${size} bytes`).toBe(true);
      }
    });

    it('streamed: messages of 0, 65,537 bytes and 10 MiB with a context decrypt to themselves, as a stream and in one shot', async () => {
      const sdk = client();
      for (const size of [0, 65_537, 10 * MiB]) {
        const plaintext = randomBytes(size);
        const sealed = await pipeThrough(sdk.encryptStream('orders', { context: CONTEXT }), plaintext, 100_003);
        expect(sealed.error).toBeUndefined();
        const opened = await pipeThrough(sdk.decryptStream({ expectedContext: CONTEXT }), sealed.output, 65_521);
        expect(opened.error).toBeUndefined();
        expect(Buffer.from(opened.output).equals(plaintext), `${size} bytes as a stream`).toBe(true);
        expect((await sdk.decrypt(sealed.output)).equals(plaintext), `${size} bytes in one shot`).toBe(true);
      }
    });

    it('a string encrypts as its UTF-8 bytes', async () => {
      const sdk = client();
      expect((await sdk.decrypt(await sdk.encrypt('orders', 'grüße, 世界'))).toString('utf8')).toBe('grüße, 世界');
    });

    it('Node.js streams: a pipeline through encryptNodeStream and decryptNodeStream round-trips', async () => {
      const sdk = client();
      const plaintext = randomBytes(MiB + 17);
      const collect = (into: Buffer[]) => new Writable({ write: (chunk: Buffer, _encoding, done) => { into.push(chunk); done(); } });
      const sealed: Buffer[] = [];
      await pipeline(Readable.from([plaintext.subarray(0, 1000), plaintext.subarray(1000)]), sdk.encryptNodeStream('orders', { context: CONTEXT }), collect(sealed));
      const opened: Buffer[] = [];
      await pipeline(Readable.from([Buffer.concat(sealed)]), sdk.decryptNodeStream(), collect(opened));
      expect(Buffer.concat(opened).equals(plaintext)).toBe(true);
    });
  });

  describe('encryption context', () => {
    it('decrypts when every expected pair is in the message', async () => {
      const sdk = client();
      const message = await sdk.encrypt('orders', 'paid', { context: CONTEXT });
      expect((await sdk.decrypt(message, { expectedContext: { tenant: 'acme' } })).toString()).toBe('paid');
      expect((await sdk.decrypt(message, { expectedContext: CONTEXT })).toString()).toBe('paid');
    });

    it('refuses with DecryptionError when an expected pair differs or is missing', async () => {
      const sdk = client();
      const message = await sdk.encrypt('orders', 'paid', { context: CONTEXT });
      await expectDecryptionError(sdk.decrypt(message, { expectedContext: { tenant: 'globex' } }));
      await expectDecryptionError(sdk.decrypt(message, { expectedContext: { ...CONTEXT, region: 'eu' } }));
      const stream = await pipeThrough(sdk.decryptStream({ expectedContext: { tenant: 'globex' } }), message, 1024);
      expect(stream.error).toBeInstanceOf(DecryptionError);
      expect(stream.output.length).toBe(0);
    });

    it('refuses with DecryptionError a message whose header context was changed: the service will not unwrap its key', async () => {
      const sdk = client();
      const message = await sdk.encrypt('orders', 'paid', { context: CONTEXT });
      const header = decodeHeader(message);
      // After the context's key name: four random bytes of the wrapped key could spell `acme` too.
      const at = Buffer.from(header.bytes).indexOf('acme', Buffer.from(header.bytes).indexOf('tenant'));
      expect(at).toBeGreaterThan(0);
      const changed = Buffer.from(message);
      changed.write('acmf', at);
      const before = served.length;
      await expectDecryptionError(sdk.decrypt(changed, { expectedContext: { tenant: 'acmf' } }));
      await expectDecryptionError(client().decrypt(changed));
      expect(served.slice(before).map(({ method, path, status }) => [method, path, status()])).toEqual([
        ['POST', '/v1/decrypt', 400],
        ['POST', '/v1/decrypt', 400],
      ]);
    });

    it('a message encrypted under another context is not served a cached key of this one', async () => {
      const sdk = client();
      await sdk.encrypt('orders', 'a', { context: { tenant: 'acme' } });
      await sdk.encrypt('orders', 'b', { context: { tenant: 'globex' } });
      expect(requestsTo('/v1/keys/orders/datakey')).toBe(2);
    });
  });

  describe('data-key cache', () => {
    it('a second encrypt under the same key and context makes no request to the service', async () => {
      const sdk = client();
      await sdk.encrypt('orders', 'one', { context: CONTEXT });
      expect(requestsTo('/v1/keys/orders/datakey')).toBe(1);
      const before = served.length;
      await sdk.encrypt('orders', 'two', { context: CONTEXT });
      expect(served.length).toBe(before);
      expect(sdk.cache.stats()).toMatchObject({ encryptEntries: 1, hits: 1, misses: 1 });
    });

    it('a second decrypt of a message makes no request to the service', async () => {
      const sdk = client();
      const message = await sdk.encrypt('orders', 'one', { context: CONTEXT });
      await sdk.decrypt(message);
      expect(requestsTo('/v1/decrypt')).toBe(1);
      const before = served.length;
      await sdk.decrypt(message);
      expect(served.length).toBe(before);
    });

    it('another client instance, with a cold cache, decrypts the message by asking the service', async () => {
      const message = await client().encrypt('orders', 'handed over', { context: CONTEXT });
      const other = client();
      expect(other.cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
      expect((await other.decrypt(message)).toString()).toBe('handed over');
      expect(requestsTo('/v1/decrypt')).toBe(1);
    });

    it('with the cache off, every message asks the service for a data key', async () => {
      const sdk = client(undefined, { cache: false });
      for (let i = 0; i < 3; i++) await sdk.encrypt('orders', 'x', { context: CONTEXT });
      expect(requestsTo('/v1/keys/orders/datakey')).toBe(3);
    });

    it('close() zeroes the cache and refuses further calls', async () => {
      const sdk = client();
      await sdk.encrypt('orders', 'x');
      await sdk.close();
      expect(sdk.cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
      await expect(sdk.encrypt('orders', 'x')).rejects.toMatchObject({ code: 'KH_SDK_CLIENT_CLOSED' });
    });
  });

  describe('ready()', () => {
    it('resolves with the principal the service sees', async () => {
      await expect(client().ready()).resolves.toMatchObject({ type: 'token', admin: true });
      await expect(client(await apiTokenWorkload()).ready()).resolves.toMatchObject({
        id: 'token:worker',
        type: 'token',
        attributes: { tokenName: 'worker' },
      });
      await expect(client(await kubernetesWorkload()).ready()).resolves.toMatchObject({
        id: 'k8s:payments:api',
        type: 'kubernetes',
        attributes: { namespace: 'payments', serviceAccount: 'api' },
      });
    });

    it('rejects with KH_SDK_UNAUTHENTICATED for a token the service does not know', async () => {
      await expectServiceError(client(apiToken(`kh_${'A'.repeat(43)}`)).ready(), 'KH_SDK_UNAUTHENTICATED', 401, 'KH_ERR_UNAUTHENTICATED');
    });

    it('an encrypt with a token the service does not know fails with KH_SDK_UNAUTHENTICATED', async () => {
      await expect(client(apiToken(`kh_${'A'.repeat(43)}`)).encrypt('orders', 'x')).rejects.toMatchObject({ code: 'KH_SDK_UNAUTHENTICATED' });
    });
  });

  describe('a workload allowed datakey and decrypt on one key only', () => {
    for (const [principal, workload] of [
      ['an API token', () => apiTokenWorkload()],
      ['a Kubernetes service account', () => kubernetesWorkload()],
    ] as const) {
      it(`${principal}: encrypts and decrypts under its key`, async () => {
        const auth = await workload();
        const message = await client(auth).encrypt('orders', 'mine', { context: CONTEXT });
        expect((await client(auth).decrypt(message)).toString()).toBe('mine');
      });

      it(`${principal}: encrypt under another key fails with ServiceError KH_SDK_ACCESS_DENIED`, async () => {
        const sdk = client(await workload());
        await expectServiceError(sdk.encrypt('billing', 'not mine', { context: CONTEXT }), 'KH_SDK_ACCESS_DENIED', 403, 'KH_ERR_FORBIDDEN');
      });
    }

    it("decrypting the message of a key the workload may not use fails as a message of no key: it learns nothing of the key", async () => {
      const message = await client().encrypt('billing', 'not yours', { context: CONTEXT });
      const error = await client(await apiTokenWorkload()).decrypt(message).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ code: 'KH_SDK_DECRYPTION_FAILED' });
      expect(String((error as Error).message)).not.toContain('billing');
    });

    // Without revocation events, so these show what maxAgeMs alone bounds; revocation.test.ts covers the events.
    describe('once an admin disables the key, with events off', () => {
      let clock: { time: number };
      let worker: AuthProvider;
      let sdk: KeyholdClient;
      let message: Buffer;

      beforeEach(async () => {
        clock = { time: Date.parse('2026-01-01T00:00:00Z') };
        worker = await apiTokenWorkload();
        sdk = client(worker, { cache: { maxAgeMs: 60_000 }, now: () => clock.time, events: false });
        message = await sdk.encrypt('orders', 'before', { context: CONTEXT });
        expect((await sdk.decrypt(message)).toString()).toBe('before');
        expect(sdk.cache.stats()).toMatchObject({ encryptEntries: 1, decryptEntries: 1 });
        await admin('POST', '/v1/keys/orders/disable');
      });

      it('a cached data key goes on encrypting until it is maxAgeMs old, without asking the service', async () => {
        clock.time += 59_999;
        await sdk.encrypt('orders', 'still cached', { context: CONTEXT });
        expect(requestsTo('/v1/keys/orders/datakey')).toBe(1);
      });

      it("the next encrypt after the cached key expires fails with KH_SDK_KEY_STATE and purges the key's entries", async () => {
        clock.time += 60_000;
        await expectServiceError(sdk.encrypt('orders', 'after', { context: CONTEXT }), 'KH_SDK_KEY_STATE', 409, 'KH_ERR_KEY_DISABLED');
        expect(sdk.cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
      });

      it("the next encrypt after cache.purge fails with KH_SDK_KEY_STATE", async () => {
        sdk.cache.purge('orders');
        expect(sdk.cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
        await expectServiceError(sdk.encrypt('orders', 'after', { context: CONTEXT }), 'KH_SDK_KEY_STATE', 409, 'KH_ERR_KEY_DISABLED');
      });

      it('a refusal under another context purges the entries of every context of the key', async () => {
        await expectServiceError(sdk.encrypt('orders', 'after', { context: { tenant: 'globex' } }), 'KH_SDK_KEY_STATE', 409, 'KH_ERR_KEY_DISABLED');
        expect(sdk.cache.stats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
      });

      it('decrypting an old message with a cold cache fails with KH_SDK_KEY_STATE', async () => {
        await expectServiceError(client(worker).decrypt(message), 'KH_SDK_KEY_STATE', 409, 'KH_ERR_KEY_DISABLED');
      });
    });
  });

  describe('a tampered wrapped data key', () => {
    it('flipping any byte of the wrapped-key region gives DecryptionError; the service answers 400 or 404', async () => {
      const sdk = client();
      const message = await sdk.encrypt('orders', 'small', { context: CONTEXT });
      const header = decodeHeader(message);
      const start = Buffer.from(message).indexOf(Buffer.from(header.wrappedKey));
      // Format v2: magic, version, suite, length (9), segment size (4) and the wrapped key's length (2) come first.
      expect(start).toBe(9 + 6);
      const before = served.length;
      for (let i = start; i < start + header.wrappedKey.length; i++) {
        const tampered = Buffer.from(message);
        tampered[i]! ^= 0xff;
        await expectDecryptionError(sdk.decrypt(tampered));
      }
      const answers = served.slice(before);
      expect(answers).toHaveLength(header.wrappedKey.length);
      for (const answer of answers) {
        expect(answer.path).toBe('/v1/decrypt');
        expect([400, 404]).toContain(answer.status());
      }
      expect((await sdk.decrypt(message)).toString()).toBe('small');
    });
  });
});

