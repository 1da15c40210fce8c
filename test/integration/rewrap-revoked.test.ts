import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';
import { lastRecord } from '../helpers/audit.js';
import { expectProblem } from '../helpers/expect-problem.js';

const SECRET = Buffer.from('attack at dawn').toString('base64');
const CONTEXT = { tenant: 'acme' };
const DAY_MS = 86_400_000;

/**
 * `POST /v1/keys/{name}/rewrap-revoked`: how data under a revoked version (disabled, below the minimum, or of a
 * disabled key) moves to the primary version while every workload stays refused. The playbook of docs/keys.md, step by step,
 * is `sdk/test/integration/compromised-version-playbook.test.ts`.
 */
describeEachDatabase('rewrap-revoked', (kind) => {
  let t: TestApp;
  let ordersId: string;

  beforeEach(async () => {
    t = await buildTestApp(kind);
    const orders = await t.call('POST', '/v1/keys', { name: 'orders' });
    expect(orders.status).toBe(201);
    ordersId = orders.body.id;
  });
  afterEach(async () => t.close());

  async function admin(method: string, url: string, body?: unknown): Promise<any> {
    const response = await t.call(method, url, body);
    expect(response.status, response.text).toBeLessThan(300);
    return response.body;
  }

  async function encryptUnderV1(): Promise<string> {
    const encrypted = await admin('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET, context: CONTEXT });
    expect(encrypted.keyVersion).toBe(1);
    return encrypted.ciphertext as string;
  }

  /** A token whose only grant is one policy statement on `orders`. */
  async function tokenAllowed(name: string, actions: string[]): Promise<string> {
    const { token } = await admin('POST', '/v1/tokens', { name });
    await admin('PUT', `/v1/policies/${name}`, {
      statements: [{ effect: 'allow', principals: [`token:${name}`], actions, keys: ['orders'] }],
    });
    return token as string;
  }

  async function expectDecryptsUnderV2(ciphertext: string): Promise<void> {
    const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext, context: CONTEXT });
    expect(decrypted.status, decrypted.text).toBe(200);
    expect(decrypted.body).toEqual({ keyId: ordersId, keyName: 'orders', keyVersion: 2, plaintext: SECRET });
  }

  describe('what it reads', () => {
    it('moves a ciphertext under a disabled version to the primary version, with the same context', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/versions/1/disable');
      await admin('POST', '/v1/keys/orders/rotate');
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext, context: CONTEXT }), 409, 'KH_ERR_KEY_VERSION_DISABLED');

      const moved = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT });
      expect(moved.status, moved.text).toBe(200);
      expect(moved.body).toEqual({ keyId: ordersId, keyName: 'orders', keyVersion: 2, ciphertext: expect.stringMatching(/^kh1:/) });
      await expectDecryptsUnderV2(moved.body.ciphertext);
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext: moved.body.ciphertext }), 400, 'KH_ERR_DECRYPTION_FAILED');
      // The version stays revoked for everything else.
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext, context: CONTEXT }), 409, 'KH_ERR_KEY_VERSION_DISABLED');
    });

    it('moves a ciphertext under a version below minDecryptionVersion', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/rotate');
      await admin('PATCH', '/v1/keys/orders', { minDecryptionVersion: 2 });
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext, context: CONTEXT }), 409, 'KH_ERR_KEY_VERSION_BELOW_MINIMUM');

      const moved = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT });
      expect(moved.status, moved.text).toBe(200);
      await expectDecryptsUnderV2(moved.body.ciphertext);
    });

    it('moves a ciphertext of a disabled key, which stays refused to everything else until it is enabled', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/disable');
      await admin('POST', '/v1/keys/orders/rotate');

      const moved = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT });
      expect(moved.status, moved.text).toBe(200);
      expect(moved.body.keyVersion).toBe(2);
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext: moved.body.ciphertext, context: CONTEXT }), 409, 'KH_ERR_KEY_DISABLED');
      await admin('POST', '/v1/keys/orders/enable');
      await expectDecryptsUnderV2(moved.body.ciphertext);
    });

    it('refuses a key pending deletion with 409 KH_ERR_KEY_PENDING_DELETION', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/schedule-deletion', { pendingWindowDays: 7 });
      const response = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT });
      expectProblem(response, 409, 'KH_ERR_KEY_PENDING_DELETION');
    });

    it('refuses a key whose deletion date has passed with 409 KH_ERR_KEY_DESTROYED', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/schedule-deletion', { pendingWindowDays: 7 });
      t.clock.advance(7 * DAY_MS + 1);
      const response = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT });
      expectProblem(response, 409, 'KH_ERR_KEY_DESTROYED');
    });

    it('refuses while the primary version is itself disabled: rotate first', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/versions/1/disable');
      const response = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT });
      expectProblem(response, 409, 'KH_ERR_KEY_VERSION_DISABLED');
    });

    it('a wrong context fails with the same body as a tampered ciphertext', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/versions/1/disable');
      await admin('POST', '/v1/keys/orders/rotate');
      const wrongContext = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: { tenant: 'evil' } });
      const tampered = await t.call('POST', '/v1/keys/orders/rewrap-revoked', {
        ciphertext: `${ciphertext.slice(0, -2)}${ciphertext.endsWith('AA') ? 'AB' : 'AA'}`,
        context: CONTEXT,
      });
      expectProblem(wrongContext, 400, 'KH_ERR_DECRYPTION_FAILED');
      expectProblem(tampered, 400, 'KH_ERR_DECRYPTION_FAILED');
      expect({ ...wrongContext.body, requestId: '' }).toEqual({ ...tampered.body, requestId: '' });
    });

    it('refuses a ciphertext of another key with 400 KH_ERR_DECRYPTION_FAILED: it moves data within one key', async () => {
      await admin('POST', '/v1/keys', { name: 'archive' });
      const { ciphertext } = await admin('POST', '/v1/keys/archive/encrypt', { plaintext: SECRET });
      expectProblem(await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext }), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('refuses destinationContext with 400 KH_ERR_VALIDATION: the context is kept', async () => {
      const ciphertext = await encryptUnderV1();
      const response = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT, destinationContext: {} });
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('who may', () => {
    it('a workload granted "*" on the key is refused with 403: "*" never grants rewrap-revoked', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/versions/1/disable');
      await admin('POST', '/v1/keys/orders/rotate');
      const workload = await tokenAllowed('workload', ['*']);
      const response = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT }, workload);
      expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
      expect(response.body.detail).toBe('Not allowed to rewrap-revoked on key "orders"');
    });

    it('a token granted only rewrap-revoked migrates, and can neither decrypt the result nor use the key otherwise', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/versions/1/disable');
      await admin('POST', '/v1/keys/orders/rotate');
      const migrator = await tokenAllowed('migrator', ['rewrap-revoked']);

      const moved = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT }, migrator);
      expect(moved.status, moved.text).toBe(200);
      await expectDecryptsUnderV2(moved.body.ciphertext);
      const decrypt = await t.call('POST', '/v1/decrypt', { ciphertext: moved.body.ciphertext, context: CONTEXT }, migrator);
      expectProblem(decrypt, 403, 'KH_ERR_FORBIDDEN');
      expectProblem(await t.call('POST', '/v1/keys/orders/rewrap', { ciphertext, context: CONTEXT }, migrator), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a caller without the grant is refused before the ciphertext is looked at', async () => {
      const workload = await tokenAllowed('workload', ['*']);
      const response = await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext: 'kh1:not-a-ciphertext' }, workload);
      expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
    });
  });

  describe('the audit record', () => {
    it('names the action rewrap-revoked and the revoked version that was read', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/versions/1/disable');
      await admin('POST', '/v1/keys/orders/rotate');
      expect((await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT })).status).toBe(200);
      expect(await lastRecord(t)).toMatchObject({
        route: '/v1/keys/:name/rewrap-revoked',
        action: 'rewrap-revoked',
        keyName: 'orders',
        keyId: ordersId,
        keyVersion: 1,
        contextKeys: ['tenant'],
        decision: 'allow',
        outcome: 'ok',
      });
    });

    it('names the version of a refused attempt too', async () => {
      const ciphertext = await encryptUnderV1();
      await admin('POST', '/v1/keys/orders/versions/1/disable');
      expect((await t.call('POST', '/v1/keys/orders/rewrap-revoked', { ciphertext, context: CONTEXT })).status).toBe(409);
      expect(await lastRecord(t)).toMatchObject({ action: 'rewrap-revoked', keyVersion: 1, outcome: 'KH_ERR_KEY_VERSION_DISABLED' });
    });
  });
});
