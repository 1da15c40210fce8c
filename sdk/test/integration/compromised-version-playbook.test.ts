import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type TestApp } from '../../../test/helpers/app.js';
import { auditRecords } from '../../../test/helpers/audit.js';
import { apiToken, createClient, inspectMessage, type ClientOptions, type KeyholdClient } from '../../src/index.js';

/**
 * The playbook "Responding to a compromised version" of docs/keys.md, step by step, against a real server through the real
 * SDK: for a `kh1` ciphertext the workload got from the service, and for an SDK message.
 */

const SECRET = 'card 4111 1111 1111 1111';
const CONTEXT = { tenant: 'acme' };

function asError(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => undefined, (error: unknown) => error);
}

/** The key version a `kh1:` ciphertext names: bytes 17 to 20 of its binary form (docs/ciphertext-format.md). */
function kh1Version(ciphertext: string): number {
  return Buffer.from(ciphertext.slice('kh1:'.length), 'base64url').readUInt32BE(17);
}

describeEachDatabase('the compromised-version playbook', (kind) => {
  let t: TestApp;
  let url: string;
  let ordersId: string;
  let workloadToken: string;
  let migratorToken: string;
  const clients: KeyholdClient[] = [];

  async function admin(method: string, path: string, body?: unknown): Promise<any> {
    const response = await t.call(method, path, body);
    expect(response.status, response.text).toBeLessThan(300);
    return response.body;
  }

  function client(token: string, options: Partial<ClientOptions> = {}): KeyholdClient {
    // No data-key cache: every message asks the service, so each step shows what the service allows at that moment.
    const made = createClient({ url, auth: apiToken(token), retries: 0, cache: false, ...options });
    clients.push(made);
    return made;
  }

  beforeEach(async () => {
    t = await buildTestApp(kind);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    ordersId = (await admin('POST', '/v1/keys', { name: 'orders' })).id as string;
    // The workload may do everything with its key: "*".
    workloadToken = (await admin('POST', '/v1/tokens', { name: 'workload' })).token as string;
    await admin('PUT', '/v1/policies/workload', {
      statements: [{ effect: 'allow', principals: ['token:workload'], actions: ['*'], keys: ['orders'] }],
    });
    // The migration job is granted rewrap-revoked, listed explicitly, and nothing else.
    migratorToken = (await admin('POST', '/v1/tokens', { name: 'migrator' })).token as string;
    await admin('PUT', '/v1/policies/migrator', {
      statements: [{ effect: 'allow', principals: ['token:migrator'], actions: ['rewrap-revoked'], keys: ['orders'] }],
    });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((made) => made.close()));
    await t.close();
  });

  it('a kh1 ciphertext and an SDK message under version 1 are migrated to version 2, and the workload reads them again', async () => {
    const workload = client(workloadToken);

    // Before: the workload's data is under version 1.
    const plaintext = Buffer.from(SECRET).toString('base64');
    const encrypted = await t.call('POST', '/v1/keys/orders/encrypt', { plaintext, context: CONTEXT }, workloadToken);
    expect(encrypted.status, encrypted.text).toBe(200);
    const kh1 = encrypted.body.ciphertext as string;
    const message = await workload.encrypt('orders', SECRET, { context: CONTEXT });
    expect(kh1Version(kh1)).toBe(1);
    expect(inspectMessage(message).keyVersion).toBe(1);

    // 1. Disable the version: every workload is refused at once.
    await admin('POST', '/v1/keys/orders/versions/1/disable');
    const refusedKh1 = await t.call('POST', '/v1/decrypt', { ciphertext: kh1, context: CONTEXT }, workloadToken);
    expect({ status: refusedKh1.status, code: refusedKh1.body.code }).toEqual({ status: 409, code: 'KH_ERR_KEY_VERSION_DISABLED' });
    expect(await asError(workload.decrypt(message))).toMatchObject({ code: 'KH_SDK_KEY_STATE', serviceCode: 'KH_ERR_KEY_VERSION_DISABLED' });
    expect(await asError(workload.encrypt('orders', 'new data'))).toMatchObject({ code: 'KH_SDK_KEY_STATE' });

    // 2. Rotate: the workload encrypts again, under version 2, and is still refused version 1.
    await admin('POST', '/v1/keys/orders/rotate');
    expect(inspectMessage(await workload.encrypt('orders', 'new data')).keyVersion).toBe(2);
    expect(await asError(workload.decrypt(message))).toMatchObject({ code: 'KH_SDK_KEY_STATE' });

    // 3. Find what version 1 protected, without decrypting.
    expect(kh1Version(kh1)).toBe(1);
    expect(inspectMessage(message)).toMatchObject({ keyId: ordersId, keyVersion: 1, context: CONTEXT });
    expect(workload.inspect(message)).toEqual(inspectMessage(message));

    // The workload's "*" does not reach rewrap-revoked, through the API or the SDK.
    const workloadAttempt = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext: kh1, context: CONTEXT }, workloadToken);
    expect({ status: workloadAttempt.status, code: workloadAttempt.body.code }).toEqual({ status: 403, code: 'KH_ERR_FORBIDDEN' });
    expect(await asError(workload.rewrapRevoked('orders', message))).toMatchObject({ code: 'KH_SDK_ACCESS_DENIED', status: 403 });

    // 4a. Migrate the kh1 ciphertext, with the token granted only rewrap-revoked.
    const migrated = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext: kh1, context: CONTEXT }, migratorToken);
    expect(migrated.status, migrated.text).toBe(200);
    expect(migrated.body).toMatchObject({ keyId: ordersId, keyName: 'orders', keyVersion: 2 });
    expect(kh1Version(migrated.body.ciphertext)).toBe(2);

    // 4b. Migrate the SDK message, as an admin through the SDK.
    const operator = client(TEST_ADMIN_TOKEN);
    const migratedMessage = await operator.rewrapRevoked('orders', message);
    expect(inspectMessage(migratedMessage)).toMatchObject({ keyId: ordersId, keyVersion: 2, context: CONTEXT });

    // 5. The workload reads the migrated data under version 2.
    const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: migrated.body.ciphertext, context: CONTEXT }, workloadToken);
    expect(decrypted.status, decrypted.text).toBe(200);
    expect(decrypted.body).toMatchObject({ keyVersion: 2, plaintext });
    expect((await workload.decrypt(migratedMessage, { expectedContext: CONTEXT })).toString()).toBe(SECRET);

    // Each migration's audit record names the action and the revoked version that was read.
    const migrations = (await auditRecords(t)).filter((record) => record.action === 'rewrap-revoked');
    expect(migrations.map(({ principalId, keyId, keyVersion, outcome }) => ({ principalId, keyId, keyVersion, outcome }))).toEqual([
      { principalId: 'token:workload', keyId: null, keyVersion: null, outcome: 'KH_ERR_FORBIDDEN' },
      { principalId: 'token:workload', keyId: null, keyVersion: null, outcome: 'KH_ERR_FORBIDDEN' },
      { principalId: 'token:migrator', keyId: ordersId, keyVersion: 1, outcome: 'ok' },
      { principalId: 'token:bootstrap-admin', keyId: ordersId, keyVersion: 1, outcome: 'ok' },
    ]);
  });

  it('a large SDK message migrates as a stream, to a message the workload decrypts', async () => {
    const workload = client(workloadToken, { segmentSize: 1024 });
    const data = Buffer.alloc(64 * 1024 + 7, 'x');
    const message = await workload.encrypt('orders', data, { context: CONTEXT });
    await admin('POST', '/v1/keys/orders/versions/1/disable');
    await admin('POST', '/v1/keys/orders/rotate');

    const chunks: Buffer[] = [];
    await pipeline(
      Readable.from([message.subarray(0, 1000), message.subarray(1000)]),
      client(TEST_ADMIN_TOKEN).rewrapRevokedNodeStream('orders'),
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          chunks.push(chunk);
          done();
        },
      }),
    );
    const migrated = Buffer.concat(chunks);
    expect(inspectMessage(migrated)).toMatchObject({ keyVersion: 2, segmentSize: 1024 });
    expect((await workload.decrypt(migrated, { expectedContext: CONTEXT })).equals(data)).toBe(true);
  });
});
