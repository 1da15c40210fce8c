import { afterEach, describe, expect, it } from 'vitest';
import { backfillKeyUsage } from '../../migrations/20261207000000_key_usage.js';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';
import { ADMIN_PRINCIPAL, createKey, issueToken, putPolicy } from '../helpers/audit.js';
import { expectProblem } from '../helpers/expect-problem.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The test clock's start (test/helpers/clock.ts), on an hour boundary. */
const T0 = Date.parse('2026-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

describeEachDatabase('GET /v1/keys/{name}/usage', (kind) => {
  let t: TestApp;
  afterEach(async () => {
    await t?.close();
  });

  async function open(): Promise<TestApp> {
    t = await buildTestApp(kind);
    return t;
  }

  /** A workload token, allowed `actions` on `keys`. */
  async function workload(name: string, actions: string[], keys: string[] = ['*']): Promise<string> {
    const { token } = await issueToken(t, name);
    await putPolicy(t, name, [{ effect: 'allow', principals: [`token:${name}`], actions, keys }]);
    return token;
  }

  async function call(method: string, url: string, body: unknown, token?: string): Promise<any> {
    const response = await t.call(method, url, body, token);
    expect(response.status, response.text).toBeLessThan(300);
    return response.body;
  }

  async function usage(key: string, query = '', token?: string): Promise<any> {
    const response = await t.call('GET', `/v1/keys/${key}/usage${query}`, undefined, token);
    expect(response.status, response.text).toBe(200);
    return response.body;
  }

  describe('what is counted', () => {
    it('each successful use, by principal, version and action, with its count and first and last seen, newest first', async () => {
      await open();
      const orders = await createKey(t, 'orders');
      await createKey(t, 'billing');
      const worker = await workload('worker', ['datakey', 'encrypt', 'decrypt']);
      await call('POST', '/v1/keys/orders/datakey', {}, worker);
      t.clock.advance(60_000);
      await call('POST', '/v1/keys/orders/datakey', {}, worker);
      const { ciphertext } = await call('POST', '/v1/keys/orders/encrypt', { plaintext: 'AAAA' }, worker);
      // Another key's uses are its own.
      await call('POST', '/v1/keys/billing/datakey', {}, worker);
      t.clock.advance(2 * HOUR_MS);
      await call('POST', '/v1/keys/orders/rotate', {});
      await call('POST', '/v1/keys/orders/decrypt', { ciphertext }, worker);
      await call('POST', '/v1/keys/orders/datakey', {});

      const body = await usage('orders');
      expect(body).toEqual({
        keyName: 'orders',
        keyId: orders.id,
        since: iso(T0 + 2 * HOUR_MS - 30 * DAY_MS),
        until: iso(T0 + 3 * HOUR_MS),
        usage: [
          // Same last seen: by principal, then version, then action.
          { principal: ADMIN_PRINCIPAL, keyVersion: 2, action: 'datakey', count: 1, firstSeen: iso(T0 + 2 * HOUR_MS + 60_000), lastSeen: iso(T0 + 2 * HOUR_MS + 60_000) },
          { principal: 'token:worker', keyVersion: 1, action: 'decrypt', count: 1, firstSeen: iso(T0 + 2 * HOUR_MS + 60_000), lastSeen: iso(T0 + 2 * HOUR_MS + 60_000) },
          { principal: 'token:worker', keyVersion: 1, action: 'datakey', count: 2, firstSeen: iso(T0), lastSeen: iso(T0 + 60_000) },
          { principal: 'token:worker', keyVersion: 1, action: 'encrypt', count: 1, firstSeen: iso(T0 + 60_000), lastSeen: iso(T0 + 60_000) },
        ],
      });
    });

    it('a batch counts each item that succeeded under its own key, version and action, and none that was refused or failed', async () => {
      await open();
      await createKey(t, 'orders');
      await createKey(t, 'billing');
      await createKey(t, 'secret');
      const { ciphertext: billed } = await call('POST', '/v1/keys/billing/encrypt', { plaintext: 'AAAA' });
      const worker = await workload('worker', ['datakey', 'decrypt'], ['orders', 'billing']);
      t.clock.advance(60_000);
      const items = [
        ...Array.from({ length: 3 }, () => ({ op: 'datakey', key: 'orders' })),
        { op: 'decrypt', ciphertext: billed },
        { op: 'decrypt', ciphertext: billed, context: { tenant: 'wrong' } },
        { op: 'datakey', key: 'secret' },
        { op: 'encrypt', key: 'orders', plaintext: 'AAAA' },
      ];
      const response = await t.call('POST', '/v1/batch', { items }, worker);
      expect(response.status, response.text).toBe(207);

      const at = iso(T0 + 60_000);
      expect((await usage('orders')).usage).toEqual([
        { principal: 'token:worker', keyVersion: 1, action: 'datakey', count: 3, firstSeen: at, lastSeen: at },
      ]);
      expect((await usage('billing')).usage).toEqual([
        { principal: 'token:worker', keyVersion: 1, action: 'decrypt', count: 1, firstSeen: at, lastSeen: at },
        { principal: ADMIN_PRINCIPAL, keyVersion: 1, action: 'encrypt', count: 1, firstSeen: iso(T0), lastSeen: iso(T0) },
      ]);
      expect((await usage('secret')).usage).toEqual([]);
    });

    it('denials and failures are not uses', async () => {
      await open();
      await createKey(t, 'orders');
      const worker = await workload('worker', ['decrypt']);
      expect((await t.call('POST', '/v1/keys/orders/datakey', {}, worker)).status).toBe(403);
      expect((await t.call('POST', '/v1/keys/orders/decrypt', { ciphertext: 'kh1:AAAA' }, worker)).status).toBe(400);
      await call('POST', '/v1/keys/orders/disable', {});
      expect((await t.call('POST', '/v1/keys/orders/datakey', {})).status).toBeGreaterThanOrEqual(400);
      // Administration names the key and a version, but is not a use of its material.
      await call('POST', '/v1/keys/orders/enable', {});
      await call('POST', '/v1/keys/orders/rotate', {});
      expect((await usage('orders')).usage).toEqual([]);
    });

    it('a rewrap is counted under the destination key at the version it wrote', async () => {
      await open();
      await createKey(t, 'orders');
      const { ciphertext } = await call('POST', '/v1/keys/orders/encrypt', { plaintext: 'AAAA' });
      await call('POST', '/v1/keys/orders/rotate', {});
      const worker = await workload('worker', ['decrypt', 'rewrap']);
      await call('POST', '/v1/keys/orders/rewrap', { ciphertext }, worker);
      expect((await usage('orders', '?version=2')).usage).toEqual([
        { principal: 'token:worker', keyVersion: 2, action: 'rewrap', count: 1, firstSeen: iso(T0), lastSeen: iso(T0) },
      ]);
    });
  });

  describe('filters', () => {
    it('?version= answers that version only', async () => {
      await open();
      await createKey(t, 'orders');
      await call('POST', '/v1/keys/orders/datakey', {});
      await call('POST', '/v1/keys/orders/rotate', {});
      await call('POST', '/v1/keys/orders/datakey', {});
      await call('POST', '/v1/keys/orders/datakey', {});
      expect((await usage('orders', '?version=1')).usage).toMatchObject([{ keyVersion: 1, count: 1 }]);
      expect((await usage('orders', '?version=2')).usage).toMatchObject([{ keyVersion: 2, count: 2 }]);
      expect((await usage('orders', '?version=3')).usage).toEqual([]);
    });

    it('the window is since (inclusive) to until (exclusive), widened to whole hours, and answered as such', async () => {
      await open();
      await createKey(t, 'orders');
      for (const _ of [0, 1, 2]) {
        await call('POST', '/v1/keys/orders/datakey', {});
        t.clock.advance(DAY_MS);
      }
      const body = await usage('orders', `?since=${iso(T0 + DAY_MS + 1000)}&until=${iso(T0 + 2 * DAY_MS)}`);
      expect(body).toMatchObject({ since: iso(T0 + DAY_MS), until: iso(T0 + 2 * DAY_MS) });
      expect(body.usage).toEqual([
        { principal: ADMIN_PRINCIPAL, keyVersion: 1, action: 'datakey', count: 1, firstSeen: iso(T0 + DAY_MS), lastSeen: iso(T0 + DAY_MS) },
      ]);
      expect((await usage('orders', `?since=${iso(T0)}`)).usage).toMatchObject([{ count: 3, firstSeen: iso(T0), lastSeen: iso(T0 + 2 * DAY_MS) }]);
      expect((await usage('orders', `?until=${iso(T0 + DAY_MS)}`)).usage).toMatchObject([{ count: 1 }]);
    });

    it('by default, the last 30 days', async () => {
      await open();
      await createKey(t, 'orders');
      await call('POST', '/v1/keys/orders/datakey', {});
      t.clock.advance(31 * DAY_MS);
      await call('POST', '/v1/keys/orders/datakey', {});
      expect((await usage('orders')).usage).toMatchObject([{ count: 1, firstSeen: iso(T0 + 31 * DAY_MS) }]);
    });

    it('since at or after until is 400 KH_ERR_VALIDATION', async () => {
      await open();
      await createKey(t, 'orders');
      for (const query of [`?since=${iso(T0)}&until=${iso(T0)}`, `?since=${iso(T0 + 1)}&until=${iso(T0)}`, `?since=${iso(T0 + DAY_MS)}`]) {
        expectProblem(await t.call('GET', `/v1/keys/orders/usage${query}`), 400, 'KH_ERR_VALIDATION');
      }
      expectProblem(await t.call('GET', '/v1/keys/orders/usage?version=0'), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('authorisation', () => {
    it('a caller allowed audit:read reads it', async () => {
      await open();
      await createKey(t, 'orders');
      await call('POST', '/v1/keys/orders/datakey', {});
      const auditor = await workload('auditor', ['audit:read']);
      expect((await usage('orders', '', auditor)).usage).toMatchObject([{ principal: ADMIN_PRINCIPAL, count: 1 }]);
    });

    it('a caller without audit:read is refused with 403, for a key that exists or not, even one it may use', async () => {
      await open();
      await createKey(t, 'orders');
      const worker = await workload('worker', ['datakey', 'encrypt', 'decrypt', 'keys:read']);
      expectProblem(await t.call('GET', '/v1/keys/orders/usage', undefined, worker), 403, 'KH_ERR_FORBIDDEN');
      expectProblem(await t.call('GET', '/v1/keys/nothing/usage', undefined, worker), 403, 'KH_ERR_FORBIDDEN');
    });

    it('an unknown key is 404 KH_ERR_KEY_NOT_FOUND', async () => {
      await open();
      expectProblem(await t.call('GET', '/v1/keys/nothing/usage'), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('the rollup', () => {
    it('counted again from the audit records (the migration\'s backfill), it is what the commits maintained', async () => {
      await open();
      await createKey(t, 'orders');
      const { ciphertext } = await call('POST', '/v1/keys/orders/encrypt', { plaintext: 'AAAA' });
      const worker = await workload('worker', ['datakey', 'decrypt']);
      t.clock.advance(HOUR_MS + 5);
      await call('POST', '/v1/keys/orders/decrypt', { ciphertext }, worker);
      await call('POST', '/v1/batch', { items: [{ op: 'datakey', key: 'orders' }, { op: 'decrypt', ciphertext }] }, worker);
      expect((await t.call('POST', '/v1/keys/orders/datakey', {}, (await issueToken(t, 'nobody')).token)).status).toBe(403);
      const live = await usage('orders');
      const rows = await t.db('key_usage').orderBy(['key_id', 'hour', 'key_version', 'principal_id', 'action', 'replica_id']);
      expect(rows.length).toBeGreaterThan(0);

      await t.db('key_usage').delete();
      await backfillKeyUsage(t.db);
      expect(await t.db('key_usage').orderBy(['key_id', 'hour', 'key_version', 'principal_id', 'action', 'replica_id'])).toEqual(rows);
      expect(await usage('orders')).toEqual(live);
    });
  });
});
