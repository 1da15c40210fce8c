import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type ApiResponse, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

const SECRET = Buffer.from('attack at dawn').toString('base64');
const CONTEXT = { tenant: 'acme', purpose: 'orders' };

/** The problem body without the one field that must differ between requests. */
function withoutRequestId(response: ApiResponse): Record<string, unknown> {
  const { requestId: _requestId, ...rest } = response.body as Record<string, unknown>;
  return rest;
}

describeEachDatabase('cryptographic operations', (kind) => {
  // One app for the file: these tests only use 'orders' and 'archive' and never change their state. A test that
  // rotates or disables a key makes a key of its own for it.
  let t: TestApp;
  let ordersId: string;
  beforeAll(async () => {
    t = await buildTestApp(kind);
    const orders = await t.call('POST', '/v1/keys', { name: 'orders' });
    expect(orders.status).toBe(201);
    ordersId = orders.body.id;
    expect((await t.call('POST', '/v1/keys', { name: 'archive' })).status).toBe(201);
  });
  afterAll(async () => t?.close());

  async function encrypt(key: string, body: Record<string, unknown>): Promise<any> {
    const response = await t.call('POST', `/v1/keys/${key}/encrypt`, body);
    expect(response.status).toBe(200);
    return response.body;
  }

  describe('POST /v1/keys/{name}/datakey', () => {
    it('returns a 32-byte data key, its ciphertext and the key version that wrapped it', async () => {
      const response = await t.call('POST', '/v1/keys/orders/datakey', {});
      expect(response.status).toBe(200);
      expect(response.body).toEqual({
        keyId: ordersId,
        keyName: 'orders',
        keyVersion: 1,
        ciphertext: expect.stringMatching(/^kh1:[A-Za-z0-9_-]+$/),
        plaintext: expect.any(String),
      });
      expect(Buffer.from(response.body.plaintext, 'base64')).toHaveLength(32);
    });

    it('issues a different data key every time', async () => {
      const first = await t.call('POST', '/v1/keys/orders/datakey', {});
      const second = await t.call('POST', '/v1/keys/orders/datakey', {});
      expect(first.body.plaintext).not.toBe(second.body.plaintext);
      expect(first.body.ciphertext).not.toBe(second.body.ciphertext);
    });

    it('omits the plaintext property entirely when includePlaintext is false', async () => {
      const response = await t.call('POST', '/v1/keys/orders/datakey', { includePlaintext: false });
      expect(response.status).toBe(200);
      expect(response.body).not.toHaveProperty('plaintext');
      expect(Object.keys(response.body).sort()).toEqual(['ciphertext', 'keyId', 'keyName', 'keyVersion']);
      expect(response.text).not.toContain('plaintext');
    });

    it('the wrapped-only data key decrypts to a key of the requested size', async () => {
      const response = await t.call('POST', '/v1/keys/orders/datakey', { includePlaintext: false, bytes: 16, context: CONTEXT });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: response.body.ciphertext, context: CONTEXT });
      expect(decrypted.status).toBe(200);
      expect(Buffer.from(decrypted.body.plaintext, 'base64')).toHaveLength(16);
    });

    it.each([16, 64])('issues a data key of %i bytes', async (bytes) => {
      const response = await t.call('POST', '/v1/keys/orders/datakey', { bytes });
      expect(response.status).toBe(200);
      expect(Buffer.from(response.body.plaintext, 'base64')).toHaveLength(bytes);
    });

    it.each([15, 65, 0, 32.5])('refuses bytes %j with 400 KH_ERR_VALIDATION', async (bytes) => {
      expectProblem(await t.call('POST', '/v1/keys/orders/datakey', { bytes }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses bytes given as a string with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/datakey', { bytes: '32' }), 400, 'KH_ERR_VALIDATION');
    });

    it('decrypts to the data key it returned, with the same context', async () => {
      const dataKey = await t.call('POST', '/v1/keys/orders/datakey', { context: CONTEXT });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: dataKey.body.ciphertext, context: CONTEXT });
      expect(decrypted.body).toEqual({ keyId: ordersId, keyName: 'orders', keyVersion: 1, plaintext: dataKey.body.plaintext });
    });

    it('answers 404 KH_ERR_KEY_NOT_FOUND for an unknown key', async () => {
      expectProblem(await t.call('POST', '/v1/keys/missing/datakey', {}), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('encrypt and decrypt', () => {
    it('round-trips a plaintext', async () => {
      const encrypted = await encrypt('orders', { plaintext: SECRET });
      expect(encrypted).toEqual({ keyId: ordersId, keyName: 'orders', keyVersion: 1, ciphertext: expect.stringMatching(/^kh1:/) });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.ciphertext });
      expect(decrypted.status).toBe(200);
      expect(decrypted.body).toEqual({ keyId: ordersId, keyName: 'orders', keyVersion: 1, plaintext: SECRET });
    });

    it('round-trips a plaintext of exactly 4096 bytes', async () => {
      const plaintext = randomBytes(4096).toString('base64');
      const encrypted = await encrypt('orders', { plaintext });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.ciphertext });
      expect(decrypted.body.plaintext).toBe(plaintext);
    });

    it('refuses a plaintext of 4097 bytes with 400 KH_ERR_VALIDATION', async () => {
      const plaintext = randomBytes(4097).toString('base64');
      expectProblem(await t.call('POST', '/v1/keys/orders/encrypt', { plaintext }), 400, 'KH_ERR_VALIDATION');
    });

    it('round-trips an empty plaintext', async () => {
      const encrypted = await encrypt('orders', { plaintext: '' });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.ciphertext });
      expect(decrypted.status).toBe(200);
      expect(decrypted.body.plaintext).toBe('');
    });

    it('encrypting the same plaintext twice gives different ciphertexts', async () => {
      const first = await encrypt('orders', { plaintext: SECRET });
      const second = await encrypt('orders', { plaintext: SECRET });
      expect(first.ciphertext).not.toBe(second.ciphertext);
    });

    it('refuses a missing plaintext with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/encrypt', {}), 400, 'KH_ERR_VALIDATION');
    });

    it('decrypts with the context pairs in any order', async () => {
      const encrypted = await encrypt('orders', { plaintext: SECRET, context: { a: '1', b: '2' } });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.ciphertext, context: { b: '2', a: '1' } });
      expect(decrypted.status).toBe(200);
    });

    it('treats an empty context the same as no context', async () => {
      const encrypted = await encrypt('orders', { plaintext: SECRET });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.ciphertext, context: {} });
      expect(decrypted.status).toBe(200);
    });

    describe('the context must match exactly', () => {
      let ciphertext: string;
      let reference: ApiResponse;
      beforeEach(async () => {
        ciphertext = (await encrypt('orders', { plaintext: SECRET, context: CONTEXT })).ciphertext;
        // The failure every mismatch must be indistinguishable from.
        reference = await t.call('POST', '/v1/decrypt', { ciphertext, context: { tenant: 'other', purpose: 'orders' } });
      });

      it.each([
        ['missing', undefined],
        ['empty', {}],
        ['missing one pair', { tenant: 'acme' }],
        ['with an extra pair', { ...CONTEXT, extra: 'x' }],
        ['with a changed value', { ...CONTEXT, tenant: 'ACME' }],
        ['with a renamed key', { Tenant: 'acme', purpose: 'orders' }],
      ])('a context %s fails with 400 KH_ERR_DECRYPTION_FAILED', async (_label, context) => {
        const response = await t.call('POST', '/v1/decrypt', context === undefined ? { ciphertext } : { ciphertext, context });
        expectProblem(response, 400, 'KH_ERR_DECRYPTION_FAILED');
      });

      it.each([
        ['missing', undefined],
        ['with an extra pair', { ...CONTEXT, extra: 'x' }],
        ['with a changed value', { ...CONTEXT, purpose: 'billing' }],
      ])('a context %s fails with a body identical to any other mismatch except requestId', async (_label, context) => {
        const response = await t.call('POST', '/v1/decrypt', context === undefined ? { ciphertext } : { ciphertext, context });
        expect(reference.status).toBe(400);
        expect(withoutRequestId(response)).toEqual(withoutRequestId(reference));
        expect(response.body.requestId).not.toBe(reference.body.requestId);
      });

      it('a tampered ciphertext fails with the same body as a wrong context', async () => {
        const last = ciphertext.at(-1) === 'A' ? 'B' : 'A';
        const tampered = `${ciphertext.slice(0, -1)}${last}`;
        const response = await t.call('POST', '/v1/decrypt', { ciphertext: tampered, context: CONTEXT });
        expect(withoutRequestId(response)).toEqual(withoutRequestId(reference));
      });
    });

    it.each([
      ['encrypt', '/v1/keys/orders/encrypt', { plaintext: SECRET }],
      ['datakey', '/v1/keys/orders/datakey', {}],
    ])('%s refuses the reserved context key "kh.x" with 400 KH_ERR_VALIDATION', async (_op, url, body) => {
      expectProblem(await t.call('POST', url, { ...body, context: { 'kh.x': 'spoofed' } }), 400, 'KH_ERR_VALIDATION');
    });

    it('rewrap refuses a reserved destination context key with 400 KH_ERR_VALIDATION', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET });
      const response = await t.call('POST', '/v1/keys/orders/rewrap', { ciphertext, destinationContext: { 'kh.principal': 'x' } });
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
    });

    it('refuses a context with an empty key with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET, context: { '': 'x' } }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses a context with a non-string value with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET, context: { n: 1 } }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses a context of 65 pairs with 400 KH_ERR_VALIDATION', async () => {
      const context = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
      expectProblem(await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET, context }), 400, 'KH_ERR_VALIDATION');
    });

    it('/v1/keys/{name}/decrypt decrypts a ciphertext of that key', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET });
      const response = await t.call('POST', '/v1/keys/orders/decrypt', { ciphertext });
      expect(response.status).toBe(200);
      expect(response.body.plaintext).toBe(SECRET);
    });

    it('/v1/keys/{name}/decrypt refuses another key’s ciphertext with the same KH_ERR_DECRYPTION_FAILED as a bad context', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET, context: CONTEXT });
      const wrongKey = await t.call('POST', '/v1/keys/archive/decrypt', { ciphertext, context: CONTEXT });
      expectProblem(wrongKey, 400, 'KH_ERR_DECRYPTION_FAILED');
      const wrongContext = await t.call('POST', '/v1/keys/orders/decrypt', { ciphertext, context: { tenant: 'x' } });
      expect(withoutRequestId(wrongKey)).toEqual(withoutRequestId(wrongContext));
    });

    it('/v1/keys/{name}/decrypt refuses a ciphertext of an unknown key name with KH_ERR_DECRYPTION_FAILED', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET });
      expectProblem(await t.call('POST', '/v1/keys/missing/decrypt', { ciphertext }), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('encrypt answers 404 KH_ERR_KEY_NOT_FOUND for an unknown key', async () => {
      expectProblem(await t.call('POST', '/v1/keys/missing/encrypt', { plaintext: SECRET }), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('POST /v1/keys/{name}/rewrap', () => {
    it('rewraps to the new primary version of the same key after a rotation', async () => {
      const created = await t.call('POST', '/v1/keys', { name: 'rotated' });
      expect(created.status).toBe(201);
      const { ciphertext } = await encrypt('rotated', { plaintext: SECRET, context: CONTEXT });
      expect((await t.call('POST', '/v1/keys/rotated/rotate')).status).toBe(200);
      const rewrapped = await t.call('POST', '/v1/keys/rotated/rewrap', { ciphertext, context: CONTEXT });
      expect(rewrapped.status).toBe(200);
      expect(rewrapped.body).toEqual({ keyId: created.body.id, keyName: 'rotated', keyVersion: 2, ciphertext: expect.stringMatching(/^kh1:/) });
      expect(rewrapped.body.ciphertext).not.toBe(ciphertext);
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: rewrapped.body.ciphertext, context: CONTEXT });
      expect(decrypted.body).toMatchObject({ keyVersion: 2, plaintext: SECRET });
    });

    it('rewraps to another key', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET });
      const rewrapped = await t.call('POST', '/v1/keys/archive/rewrap', { ciphertext });
      expect(rewrapped.status).toBe(200);
      expect(rewrapped.body).toMatchObject({ keyName: 'archive', keyVersion: 1 });
      const decrypted = await t.call('POST', '/v1/keys/archive/decrypt', { ciphertext: rewrapped.body.ciphertext });
      expect(decrypted.body).toMatchObject({ keyName: 'archive', plaintext: SECRET });
    });

    it('binds the new ciphertext to destinationContext instead of the source context', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET, context: CONTEXT });
      const destinationContext = { tenant: 'acme', purpose: 'archive' };
      const rewrapped = await t.call('POST', '/v1/keys/archive/rewrap', { ciphertext, context: CONTEXT, destinationContext });
      expect(rewrapped.status).toBe(200);
      const withNew = await t.call('POST', '/v1/decrypt', { ciphertext: rewrapped.body.ciphertext, context: destinationContext });
      expect(withNew.body.plaintext).toBe(SECRET);
      const withOld = await t.call('POST', '/v1/decrypt', { ciphertext: rewrapped.body.ciphertext, context: CONTEXT });
      expectProblem(withOld, 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('keeps the source context when no destinationContext is given', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET, context: CONTEXT });
      const rewrapped = await t.call('POST', '/v1/keys/archive/rewrap', { ciphertext, context: CONTEXT });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: rewrapped.body.ciphertext, context: CONTEXT });
      expect(decrypted.body.plaintext).toBe(SECRET);
    });

    it('a wrong source context fails with 400 KH_ERR_DECRYPTION_FAILED', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET, context: CONTEXT });
      const response = await t.call('POST', '/v1/keys/archive/rewrap', { ciphertext, context: { tenant: 'evil' } });
      expectProblem(response, 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('answers 404 KH_ERR_KEY_NOT_FOUND for an unknown destination key', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET });
      expectProblem(await t.call('POST', '/v1/keys/missing/rewrap', { ciphertext }), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('POST /v1/batch', () => {
    it('answers 200 with every result in item order when every item succeeds', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET, context: CONTEXT });
      const response = await t.call('POST', '/v1/batch', {
        items: [
          { op: 'datakey', key: 'orders', bytes: 16 },
          { op: 'encrypt', key: 'archive', plaintext: SECRET },
          { op: 'decrypt', ciphertext, context: CONTEXT },
          { op: 'decrypt', key: 'orders', ciphertext, context: CONTEXT },
          { op: 'rewrap', key: 'archive', ciphertext, context: CONTEXT },
          { op: 'datakey', key: 'archive', includePlaintext: false },
        ],
      });
      expect(response.status).toBe(200);
      const results = response.body.results as Array<{ status: number; result: Record<string, unknown> }>;
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
      expect(results.every((r) => !('problem' in r))).toBe(true);
      expect(Buffer.from(String(results[0]?.result.plaintext), 'base64')).toHaveLength(16);
      expect(results[0]?.result).toMatchObject({ keyName: 'orders', ciphertext: expect.stringMatching(/^kh1:/) });
      expect(results[1]?.result).toEqual({ keyId: expect.any(String), keyName: 'archive', keyVersion: 1, ciphertext: expect.stringMatching(/^kh1:/) });
      expect(results[2]?.result).toEqual({ keyId: ordersId, keyName: 'orders', keyVersion: 1, plaintext: SECRET });
      expect(results[3]?.result).toEqual({ keyId: ordersId, keyName: 'orders', keyVersion: 1, plaintext: SECRET });
      expect(results[4]?.result).toMatchObject({ keyName: 'archive', ciphertext: expect.stringMatching(/^kh1:/) });
      expect(results[5]?.result).not.toHaveProperty('plaintext');
    });

    it('the results of a batch are usable outside it', async () => {
      const response = await t.call('POST', '/v1/batch', { items: [{ op: 'encrypt', key: 'orders', plaintext: SECRET }] });
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: response.body.results[0].result.ciphertext });
      expect(decrypted.body.plaintext).toBe(SECRET);
    });

    it('answers 207 when one item fails, with that item’s status and problem and the others succeeding', async () => {
      const response = await t.call('POST', '/v1/batch', {
        items: [
          { op: 'encrypt', key: 'orders', plaintext: SECRET },
          { op: 'encrypt', key: 'missing', plaintext: SECRET },
          { op: 'datakey', key: 'orders' },
        ],
      });
      expect(response.status).toBe(207);
      const [first, failed, last] = response.body.results;
      expect(first.status).toBe(200);
      expect(last.status).toBe(200);
      expect(failed).toEqual({
        status: 404,
        problem: {
          type: expect.any(String),
          title: expect.any(String),
          status: 404,
          detail: expect.any(String),
          code: 'KH_ERR_KEY_NOT_FOUND',
          requestId: response.headers['x-request-id'],
        },
      });
    });

    it('a decrypt item naming a key other than the ciphertext’s fails with item status 400 KH_ERR_DECRYPTION_FAILED', async () => {
      const { ciphertext } = await encrypt('orders', { plaintext: SECRET });
      const response = await t.call('POST', '/v1/batch', { items: [{ op: 'decrypt', key: 'archive', ciphertext }] });
      expect(response.status).toBe(207);
      expect(response.body.results[0]).toMatchObject({ status: 400, problem: { status: 400, code: 'KH_ERR_DECRYPTION_FAILED' } });
      expect(response.body.results[0]).not.toHaveProperty('result');
    });

    it('an item refused by the key state fails alone with its 409 problem', async () => {
      expect((await t.call('POST', '/v1/keys', { name: 'retired' })).status).toBe(201);
      expect((await t.call('POST', '/v1/keys/retired/disable')).status).toBe(200);
      const response = await t.call('POST', '/v1/batch', {
        items: [
          { op: 'datakey', key: 'retired' },
          { op: 'datakey', key: 'orders' },
        ],
      });
      expect(response.status).toBe(207);
      expect(response.body.results.map((r: { status: number; problem?: { code: string } }) => [r.status, r.problem?.code])).toEqual([
        [409, 'KH_ERR_KEY_DISABLED'],
        [200, undefined],
      ]);
    });

    it('an item with a reserved context key fails alone with 400 KH_ERR_VALIDATION', async () => {
      const response = await t.call('POST', '/v1/batch', {
        items: [{ op: 'encrypt', key: 'orders', plaintext: SECRET, context: { 'kh.x': '1' } }],
      });
      expect(response.status).toBe(207);
      expect(response.body.results[0]).toMatchObject({ status: 400, problem: { code: 'KH_ERR_VALIDATION' } });
    });

    it('accepts 1000 items', async () => {
      const items = Array.from({ length: 1000 }, () => ({ op: 'datakey', key: 'orders', includePlaintext: false }));
      const response = await t.call('POST', '/v1/batch', { items });
      expect(response.status).toBe(200);
      expect(response.body.results).toHaveLength(1000);
    });

    it('refuses 1001 items with 400 KH_ERR_VALIDATION', async () => {
      const items = Array.from({ length: 1001 }, () => ({ op: 'datakey', key: 'orders' }));
      expectProblem(await t.call('POST', '/v1/batch', { items }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses an empty batch with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/batch', { items: [] }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses an item with an unknown op with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/batch', { items: [{ op: 'sign', key: 'orders' }] }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses an item with an unknown field with 400 KH_ERR_VALIDATION', async () => {
      const items = [{ op: 'encrypt', key: 'orders', plaintext: SECRET, colour: 'red' }];
      expectProblem(await t.call('POST', '/v1/batch', { items }), 400, 'KH_ERR_VALIDATION');
    });
  });
});
