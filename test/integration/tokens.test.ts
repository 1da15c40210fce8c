import { createHash, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

const SECRET = Buffer.from('attack at dawn').toString('base64');
const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

describeEachDatabase('API tokens', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => t.close());

  async function issue(name: string, body: Record<string, unknown> = {}): Promise<any> {
    const response = await t.call('POST', '/v1/tokens', { name, ...body });
    expect(response.status).toBe(201);
    return response.body;
  }

  describe('POST /v1/tokens', () => {
    it('answers 201 with the token record and its secret, which starts with kh_', async () => {
      const response = await t.call('POST', '/v1/tokens', { name: 'ci' });
      expect(response.status).toBe(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        name: 'ci',
        admin: false,
        createdAt: t.clock.now().toISOString(),
        expiresAt: null,
        token: expect.stringMatching(/^kh_[A-Za-z0-9_-]{43}$/),
      });
    });

    it('issues a different secret every time', async () => {
      const first = await issue('one');
      const second = await issue('two');
      expect(first.token).not.toBe(second.token);
    });

    it('sets expiresAt to now plus ttlSeconds', async () => {
      const token = await issue('short', { ttlSeconds: 600 });
      expect(token.expiresAt).toBe(new Date(t.clock.now().getTime() + 600_000).toISOString());
    });

    it.each([59, 0, -1])('refuses ttlSeconds %i with 400 KH_ERR_VALIDATION', async (ttlSeconds) => {
      expectProblem(await t.call('POST', '/v1/tokens', { name: 'x', ttlSeconds }), 400, 'KH_ERR_VALIDATION');
    });

    it.each(['', '-x', 'a b', 'ä'])('refuses the name %j with 400 KH_ERR_VALIDATION', async (name) => {
      expectProblem(await t.call('POST', '/v1/tokens', { name }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses a second active token with the same name with 409 KH_ERR_TOKEN_EXISTS', async () => {
      await issue('ci');
      expectProblem(await t.call('POST', '/v1/tokens', { name: 'ci' }), 409, 'KH_ERR_TOKEN_EXISTS');
    });

    it('lets a name be issued again once its token is revoked', async () => {
      const first = await issue('ci');
      expect((await t.call('DELETE', `/v1/tokens/${first.id}`)).status).toBe(204);
      const second = await t.call('POST', '/v1/tokens', { name: 'ci' });
      expect(second.status).toBe(201);
      expect(second.body.id).not.toBe(first.id);
    });

    it('issues an admin token when an admin asks', async () => {
      const token = await issue('ops', { admin: true });
      expect(token.admin).toBe(true);
      expect((await t.call('GET', '/v1/keys', undefined, token.token)).status).toBe(200);
    });
  });

  describe('GET /v1/tokens', () => {
    it('lists live tokens without any secret or secret hash', async () => {
      const issued = [await issue('alpha'), await issue('beta', { admin: true })];
      const response = await t.call('GET', '/v1/tokens');
      expect(response.status).toBe(200);
      for (const token of response.body.tokens) {
        expect(Object.keys(token).sort()).toEqual(['admin', 'createdAt', 'expiresAt', 'id', 'name']);
      }
      for (const secret of [...issued.map((token) => token.token as string), TEST_ADMIN_TOKEN]) {
        expect(response.text).not.toContain(secret);
        expect(response.text).not.toContain(sha256Hex(secret));
        expect(response.text.toLowerCase()).not.toContain(sha256Hex(secret).toLowerCase());
      }
      expect(response.text).not.toMatch(/hash|secret|"token"/i);
    });

    it('lists tokens by name, the bootstrap admin included', async () => {
      await issue('zeta');
      await issue('alpha');
      const response = await t.call('GET', '/v1/tokens');
      expect(response.body.tokens.map((token: { name: string }) => token.name)).toEqual(['alpha', 'bootstrap-admin', 'zeta']);
      expect(response.body).not.toHaveProperty('nextCursor');
    });

    it('follows nextCursor through every live token exactly once', async () => {
      const names = ['t5', 't1', 't4', 't2', 't3'];
      for (const name of names) await issue(name);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const response = await t.call('GET', `/v1/tokens?limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`);
        expect(response.status).toBe(200);
        expect(response.body.tokens.length).toBeLessThanOrEqual(2);
        seen.push(...response.body.tokens.map((token: { name: string }) => token.name));
        cursor = response.body.nextCursor;
        pages += 1;
        expect(pages).toBeLessThan(10);
      } while (cursor !== undefined);
      expect(seen).toEqual(['bootstrap-admin', 't1', 't2', 't3', 't4', 't5']);
      expect(pages).toBe(3);
    });

    it('leaves revoked tokens out', async () => {
      const revoked = await issue('gone');
      await issue('kept');
      await t.call('DELETE', `/v1/tokens/${revoked.id}`);
      const response = await t.call('GET', '/v1/tokens');
      expect(response.body.tokens.map((token: { name: string }) => token.name)).toEqual(['bootstrap-admin', 'kept']);
    });

    it.each(['!!!', 'AAAA'])('refuses the cursor %j with 400 KH_ERR_VALIDATION', async (cursor) => {
      expectProblem(await t.call('GET', `/v1/tokens?cursor=${encodeURIComponent(cursor)}`), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('a non-admin token', () => {
    let worker: { id: string; token: string };
    let ciphertext: string;
    beforeEach(async () => {
      worker = await issue('worker');
      expect((await t.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
      ciphertext = (await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET })).body.ciphertext;
    });

    it('authenticates: whoami answers 200 with id token:NAME and admin false', async () => {
      const response = await t.call('GET', '/v1/whoami', undefined, worker.token);
      expect(response.status).toBe(200);
      expect(response.body).toEqual({
        id: 'token:worker',
        type: 'token',
        admin: false,
        attributes: { tokenId: worker.id, tokenName: 'worker' },
      });
    });

    it.each([
      ['create a key', 'POST', '/v1/keys', { name: 'mine' }],
      ['read a key', 'GET', '/v1/keys/orders', undefined],
      ['update a key', 'PATCH', '/v1/keys/orders', { description: 'x' }],
      ['rotate a key', 'POST', '/v1/keys/orders/rotate', undefined],
      ['disable a key', 'POST', '/v1/keys/orders/disable', undefined],
      ['enable a key', 'POST', '/v1/keys/orders/enable', undefined],
      ['schedule deletion', 'POST', '/v1/keys/orders/schedule-deletion', undefined],
      ['disable a key version', 'POST', '/v1/keys/orders/versions/1/disable', undefined],
      ['issue a data key', 'POST', '/v1/keys/orders/datakey', {}],
      ['encrypt', 'POST', '/v1/keys/orders/encrypt', { plaintext: SECRET }],
      ['list tokens', 'GET', '/v1/tokens', undefined],
      ['issue a token', 'POST', '/v1/tokens', { name: 'other' }],
    ])('is refused to %s with 403 KH_ERR_FORBIDDEN', async (_label, method, url, body) => {
      expectProblem(await t.call(method, url, body, worker.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('lists no keys: a workload sees only the keys it may read', async () => {
      const response = await t.call('GET', '/v1/keys', undefined, worker.token);
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ keys: [] });
    });

    it.each([
      ['decrypt', '/v1/decrypt'],
      ['decrypt with a key', '/v1/keys/orders/decrypt'],
      ['rewrap', '/v1/keys/orders/rewrap'],
    ])('is refused to %s with 403 KH_ERR_FORBIDDEN', async (_label, url) => {
      expectProblem(await t.call('POST', url, { ciphertext }, worker.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('is refused to revoke a token with 403 KH_ERR_FORBIDDEN', async () => {
      expectProblem(await t.call('DELETE', `/v1/tokens/${worker.id}`, undefined, worker.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('has each batch item refused with 403 KH_ERR_FORBIDDEN', async () => {
      const response = await t.call('POST', '/v1/batch', { items: [{ op: 'decrypt', ciphertext }] }, worker.token);
      expect(response.status).toBe(207);
      expect(response.body.results[0]).toMatchObject({ status: 403, problem: { code: 'KH_ERR_FORBIDDEN' } });
    });

    it('changes nothing when refused', async () => {
      await t.call('POST', '/v1/keys/orders/rotate', undefined, worker.token);
      expect((await t.call('GET', '/v1/keys/orders')).body.primaryVersion).toBe(1);
    });
  });

  describe('expiry', () => {
    it('a token works until its ttl runs out', async () => {
      const token = await issue('short', { ttlSeconds: 60 });
      t.clock.advance(59_999);
      expect((await t.call('GET', '/v1/whoami', undefined, token.token)).status).toBe(200);
    });

    it('a token is refused with 401 KH_ERR_UNAUTHENTICATED once its ttl has passed', async () => {
      const token = await issue('short', { ttlSeconds: 60 });
      expect((await t.call('GET', '/v1/whoami', undefined, token.token)).status).toBe(200);
      t.clock.advance(60_000);
      expectProblem(await t.call('GET', '/v1/whoami', undefined, token.token), 401, 'KH_ERR_UNAUTHENTICATED');
    });
  });

  describe('DELETE /v1/tokens/{id}', () => {
    it('answers 204 with no body', async () => {
      const token = await issue('ci');
      const response = await t.call('DELETE', `/v1/tokens/${token.id}`);
      expect(response.status).toBe(204);
      expect(response.text).toBe('');
    });

    it('a revoked token is refused at once with 401 KH_ERR_UNAUTHENTICATED', async () => {
      const token = await issue('ci');
      // Used once first, so the token is in the authentication cache when it is revoked.
      expect((await t.call('GET', '/v1/whoami', undefined, token.token)).status).toBe(200);
      await t.call('DELETE', `/v1/tokens/${token.id}`);
      expectProblem(await t.call('GET', '/v1/whoami', undefined, token.token), 401, 'KH_ERR_UNAUTHENTICATED');
    });

    it('revoking the same token twice answers 404 KH_ERR_TOKEN_NOT_FOUND', async () => {
      const token = await issue('ci');
      expect((await t.call('DELETE', `/v1/tokens/${token.id}`)).status).toBe(204);
      expectProblem(await t.call('DELETE', `/v1/tokens/${token.id}`), 404, 'KH_ERR_TOKEN_NOT_FOUND');
    });

    it('answers 404 KH_ERR_TOKEN_NOT_FOUND for an unknown id', async () => {
      expectProblem(await t.call('DELETE', `/v1/tokens/${randomUUID()}`), 404, 'KH_ERR_TOKEN_NOT_FOUND');
    });

    it('refuses an id that is not a UUID with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('DELETE', '/v1/tokens/not-a-uuid'), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('GET /v1/whoami', () => {
    it('names the bootstrap admin token', async () => {
      const response = await t.call('GET', '/v1/whoami');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({
        id: 'token:bootstrap-admin',
        type: 'token',
        admin: true,
        attributes: { tokenId: expect.any(String), tokenName: 'bootstrap-admin' },
      });
    });
  });
});
