import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type ApiResponse, type TestApp } from '../helpers/app.js';
import { expectProblem, PROBLEM_FIELDS } from '../helpers/expect-problem.js';

const SECRET = Buffer.from('attack at dawn').toString('base64');

describeEachDatabase('HTTP edge cases', (kind) => {
  // One app for the file, but for 'database down', which takes the database away: requests refused here change
  // nothing, and each test that creates a key names a key of its own.
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp(kind);
  });
  afterAll(async () => t?.close());

  /** A request whose headers and raw body the test controls completely. */
  async function raw(options: {
    method?: 'GET' | 'POST';
    url: string;
    headers?: Record<string, string>;
    payload?: string | Buffer;
    token?: string | null;
  }): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token === undefined ? TEST_ADMIN_TOKEN : options.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const response = await t.app.inject({
      method: options.method ?? 'POST',
      url: options.url,
      headers,
      ...(options.payload === undefined ? {} : { payload: options.payload }),
    });
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch {
      body = undefined;
    }
    return { status: response.statusCode, headers: response.headers as ApiResponse['headers'], body, text: response.body };
  }

  const postJson = (url: string, payload: string): Promise<ApiResponse> =>
    raw({ url, payload, headers: { 'content-type': 'application/json' } });

  describe('authentication', () => {
    it('answers a request without Authorization with 401 KH_ERR_UNAUTHENTICATED and a WWW-Authenticate challenge', async () => {
      const response = await t.call('GET', '/v1/keys', undefined, null);
      expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
      expect(response.headers['www-authenticate']).toMatch(/^Bearer\b/);
    });

    it.each([
      ['a Basic credential', 'Basic dXNlcjpwYXNz'],
      ['a bearer without a token', 'Bearer '],
      ['a bearer with a space inside the token', 'Bearer kh_a b'],
      ['a lower-case scheme with nothing after it', 'bearer'],
      ['an oversized bearer', `Bearer ${'a'.repeat(9000)}`],
    ])('answers %s with 401 KH_ERR_UNAUTHENTICATED', async (_label, authorization) => {
      const response = await raw({ method: 'GET', url: '/v1/keys', headers: { authorization }, token: null });
      expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
      expect(response.headers['www-authenticate']).toMatch(/^Bearer\b/);
    });

    it('answers an unknown bearer token with 401 KH_ERR_UNAUTHENTICATED', async () => {
      const response = await t.call('GET', '/v1/keys', undefined, `kh_${'z'.repeat(43)}`);
      expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
      expect(response.headers['www-authenticate']).toMatch(/^Bearer\b/);
    });

    it('checks credentials before the body: an unauthenticated invalid body is answered 401', async () => {
      const response = await raw({ url: '/v1/keys', payload: '{not json', headers: { 'content-type': 'application/json' }, token: null });
      expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
    });

    it.each(['/healthz', '/readyz', '/openapi.yaml'])('%s needs no credentials', async (url) => {
      const response = await t.call('GET', url, undefined, null);
      expect(response.status).toBe(200);
    });

    it('/healthz answers ok', async () => {
      expect((await t.call('GET', '/healthz', undefined, null)).body).toEqual({ status: 'ok' });
    });

    it('/readyz reports every check true', async () => {
      expect((await t.call('GET', '/readyz', undefined, null)).body).toEqual({
        status: 'ready',
        checks: { database: true, rootKey: true, migrations: true },
      });
    });

    it('/openapi.yaml is YAML describing the API', async () => {
      const response = await t.call('GET', '/openapi.yaml', undefined, null);
      expect(response.headers['content-type']).toMatch(/^application\/yaml/);
      expect(response.text).toMatch(/^openapi: 3\.1\.0$/m);
      expect(response.text).toContain('/v1/keys/{name}/rotate');
    });
  });

  describe('request bodies', () => {
    it('refuses a body over 1 MiB with 413 KH_ERR_PAYLOAD_TOO_LARGE', async () => {
      const payload = JSON.stringify({ name: 'big', description: 'x'.repeat(1024 * 1024) });
      expectProblem(await postJson('/v1/keys', payload), 413, 'KH_ERR_PAYLOAD_TOO_LARGE');
    });

    it('refuses a text/plain body with 415 KH_ERR_UNSUPPORTED_MEDIA_TYPE', async () => {
      const response = await raw({ url: '/v1/keys', payload: '{"name":"orders"}', headers: { 'content-type': 'text/plain' } });
      expectProblem(response, 415, 'KH_ERR_UNSUPPORTED_MEDIA_TYPE');
    });

    it('refuses a form-encoded body with 415 KH_ERR_UNSUPPORTED_MEDIA_TYPE', async () => {
      const response = await raw({ url: '/v1/keys', payload: 'name=orders', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      expectProblem(response, 415, 'KH_ERR_UNSUPPORTED_MEDIA_TYPE');
    });

    it('accepts application/json with a charset parameter', async () => {
      const response = await raw({ url: '/v1/keys', payload: '{"name":"charset"}', headers: { 'content-type': 'application/json; charset=utf-8' } });
      expect(response.status).toBe(201);
    });

    it.each([
      ['truncated', '{"name":'],
      ['a trailing comma', '{"name":"orders",}'],
      ['single quotes', "{'name':'orders'}"],
      ['an empty body', ''],
    ])('refuses invalid JSON (%s) with 400 KH_ERR_VALIDATION', async (_label, payload) => {
      expectProblem(await postJson('/v1/keys', payload), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses unknown fields with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys', { name: 'orders', colour: 'red' }), 400, 'KH_ERR_VALIDATION');
      expectProblem(await t.call('GET', '/v1/keys/orders'), 404, 'KH_ERR_KEY_NOT_FOUND');
    });

    it('refuses a __proto__ key with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await postJson('/v1/keys', '{"__proto__":{}}'), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses a __proto__ key next to valid fields with 400 KH_ERR_VALIDATION and creates nothing', async () => {
      expectProblem(await postJson('/v1/keys', '{"name":"orders","__proto__":{"admin":true}}'), 400, 'KH_ERR_VALIDATION');
      expectProblem(await t.call('GET', '/v1/keys/orders'), 404, 'KH_ERR_KEY_NOT_FOUND');
    });

    it('refuses constructor.prototype with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await postJson('/v1/keys', '{"constructor":{"prototype":{}}}'), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses JSON nested 100 levels deep with 400 KH_ERR_VALIDATION', async () => {
      const payload = `{"name":"orders","labels":${'['.repeat(99)}${']'.repeat(99)}}`;
      expectProblem(await postJson('/v1/keys', payload), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses deeply nested JSON in a batch with 400 KH_ERR_VALIDATION', async () => {
      const payload = `{"items":[${'{"a":'.repeat(100)}1${'}'.repeat(100)}]}`;
      expectProblem(await postJson('/v1/batch', payload), 400, 'KH_ERR_VALIDATION');
    });

    describe('plaintexts', () => {
      beforeAll(async () => {
        expect((await t.call('POST', '/v1/keys', { name: 'plain' })).status).toBe(201);
      });

      it.each([
        ['non-alphabet characters', 'not base64!'],
        ['missing padding', 'QQ'],
        ['base64url instead of base64', '-_8='],
      ])('refuses a plaintext with %s with 400 KH_ERR_VALIDATION', async (_label, plaintext) => {
        expectProblem(await t.call('POST', '/v1/keys/plain/encrypt', { plaintext }), 400, 'KH_ERR_VALIDATION');
      });
    });

    it('refuses a number where a string is expected, without coercion, with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys', { name: 12345 }), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('ciphertexts that are not kh1', () => {
    beforeAll(async () => {
      expect((await t.call('POST', '/v1/keys', { name: 'sealing' })).status).toBe(201);
    });

    // Observed: a string without the "kh1:" prefix fails the request schema, so it is a validation error, not a
    // decryption failure. That reveals only that the text is not in the public format, which is no oracle.
    it.each([
      ['another prefix', 'kh2:AAAA'],
      ['no prefix', 'AAAAAAAAAAAAAAAA'],
      ['padding', 'kh1:AAAA=='],
      ['standard base64 characters', 'kh1:AA+/'],
      ['nothing after the prefix', 'kh1:'],
    ])('refuses a ciphertext with %s with 400 KH_ERR_VALIDATION', async (_label, ciphertext) => {
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext }), 400, 'KH_ERR_VALIDATION');
    });

    it.each([
      ['too short', 'kh1:AAAA'],
      ['a dangling sextet', `kh1:${'A'.repeat(117)}`],
      ['format byte 2', `kh1:${Buffer.alloc(100, 2).toString('base64url')}`],
    ])('refuses a kh1 ciphertext that is %s with 400 KH_ERR_DECRYPTION_FAILED', async (_label, ciphertext) => {
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext }), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('refuses a well-formed ciphertext of a key that does not exist with 400 KH_ERR_DECRYPTION_FAILED', async () => {
      const { ciphertext } = (await t.call('POST', '/v1/keys/sealing/encrypt', { plaintext: SECRET })).body as { ciphertext: string };
      const bytes = Buffer.from(ciphertext.slice(4), 'base64url');
      bytes[1] = (bytes[1] ?? 0) ^ 0xff;
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext: `kh1:${bytes.toString('base64url')}` }), 400, 'KH_ERR_DECRYPTION_FAILED');
    });
  });

  describe('routes', () => {
    it('answers an unknown route with a 404 KH_ERR_ROUTE_NOT_FOUND problem', async () => {
      expectProblem(await t.call('GET', '/v1/nothing-here'), 404, 'KH_ERR_ROUTE_NOT_FOUND');
    });

    it('answers an unknown route without credentials with 404 KH_ERR_ROUTE_NOT_FOUND', async () => {
      expectProblem(await t.call('GET', '/v2/keys', undefined, null), 404, 'KH_ERR_ROUTE_NOT_FOUND');
    });

    it('answers a known path with an unknown method with 404 KH_ERR_ROUTE_NOT_FOUND', async () => {
      expectProblem(await t.call('DELETE', '/v1/keys/orders'), 404, 'KH_ERR_ROUTE_NOT_FOUND');
    });
  });

  describe('problem bodies', () => {
    const CASES: ReadonlyArray<readonly [string, () => Promise<ApiResponse>]> = [
      ['401 no credentials', () => t.call('GET', '/v1/keys', undefined, null)],
      ['400 schema validation', () => t.call('POST', '/v1/keys', { name: '' })],
      ['400 invalid JSON', () => postJson('/v1/keys', '{')],
      ['400 decryption failed', () => t.call('POST', '/v1/decrypt', { ciphertext: 'kh1:AAAA' })],
      ['404 unknown key', () => t.call('GET', '/v1/keys/missing')],
      ['404 unknown route', () => t.call('GET', '/nope')],
      ['409 illegal transition', async () => {
        // Made by the first of the two tests that send it; the second finds it.
        await t.call('POST', '/v1/keys', { name: 'transitions' });
        return t.call('POST', '/v1/keys/transitions/cancel-deletion');
      }],
      ['413 too large', () => postJson('/v1/keys', JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }))],
      ['415 wrong media type', () => raw({ url: '/v1/keys', payload: 'x', headers: { 'content-type': 'text/plain' } })],
    ];

    it.each(CASES)('%s has exactly type, title, status, detail, code and requestId', async (_label, request) => {
      const response = await request();
      expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json(;|$)/);
      expect(Object.keys(response.body).sort()).toEqual(PROBLEM_FIELDS);
      expect(response.body.status).toBe(response.status);
      expect(response.body.type).toMatch(/^https:\/\//);
    });

    it.each(CASES)('%s carries the x-request-id response header as requestId', async (_label, request) => {
      const response = await request();
      expect(response.headers['x-request-id']).toEqual(expect.any(String));
      expect(response.body.requestId).toBe(response.headers['x-request-id']);
    });

    it('uses a well-formed incoming x-request-id', async () => {
      const response = await raw({ method: 'GET', url: '/v1/keys/missing', headers: { 'x-request-id': 'trace-123.abc' } });
      expect(response.headers['x-request-id']).toBe('trace-123.abc');
      expect(response.body.requestId).toBe('trace-123.abc');
    });

    it('replaces a malformed incoming x-request-id', async () => {
      const response = await raw({ method: 'GET', url: '/v1/keys/missing', headers: { 'x-request-id': 'bad id <script>' } });
      expect(response.headers['x-request-id']).not.toBe('bad id <script>');
      expect(response.body.requestId).toBe(response.headers['x-request-id']);
    });
  });

  describe('database down', () => {
    // An app of its own per test, whose database is destroyed.
    let down: TestApp;
    beforeEach(async () => {
      down = await buildTestApp(kind);
      // Authenticate once so the admin token is cached and the failure comes from the route, not the hook.
      expect((await down.call('GET', '/v1/whoami')).status).toBe(200);
      await down.db.destroy();
    });
    afterEach(async () => down.close());

    it('GET /v1/keys/{name} answers 503 KH_ERR_UNAVAILABLE with Retry-After and a masked detail', async () => {
      const response = await down.call('GET', '/v1/keys/orders');
      expectProblem(response, 503, 'KH_ERR_UNAVAILABLE');
      expect(response.headers['retry-after']).toMatch(/^\d+$/);
      expect(response.body.detail).toBe(response.body.title);
    });

    it('POST /v1/keys answers 503 KH_ERR_UNAVAILABLE with Retry-After and a masked detail', async () => {
      const response = await down.call('POST', '/v1/keys', { name: 'orders' });
      expectProblem(response, 503, 'KH_ERR_UNAVAILABLE');
      expect(response.headers['retry-after']).toMatch(/^\d+$/);
      expect(response.body.detail).toBe(response.body.title);
    });

    it('never shows the driver error to the caller', async () => {
      const response = await down.call('GET', '/v1/keys/orders');
      expect(response.status).toBeGreaterThanOrEqual(500);
      expect(response.text).not.toMatch(/acquire|connection|knex|sqlite|pg/i);
    });

    it('/readyz answers 503 with the database check false', async () => {
      const response = await down.call('GET', '/readyz', undefined, null);
      expect(response.status).toBe(503);
      expect(response.body).toMatchObject({ status: 'unavailable', checks: { database: false } });
    });

    it('/healthz still answers 200', async () => {
      expect((await down.call('GET', '/healthz', undefined, null)).status).toBe(200);
    });
  });
});
