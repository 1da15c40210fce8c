import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type ApiResponse, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

const SECRET = Buffer.from('attack at dawn').toString('base64');

type Statement = {
  sid?: string;
  effect?: 'allow' | 'deny';
  principals?: string[];
  actions?: string[];
  keys?: string[];
  conditions?: { context?: Record<string, string> };
};

/** A statement that defaults to allowing token:a every crypto action on every key. */
function statement(overrides: Statement = {}): Required<Omit<Statement, 'sid' | 'conditions'>> & Statement {
  return { effect: 'allow', principals: ['token:a'], actions: ['datakey', 'encrypt', 'decrypt', 'rewrap'], keys: ['*'], ...overrides };
}

describeEachDatabase('access policies', (kind) => {
  let t: TestApp;
  const cleanups: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => {
    await t.close();
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  /** Like `t.call` as the admin, with request headers (If-Match, If-None-Match). */
  async function send(method: string, url: string, headers: Record<string, string>, body?: unknown): Promise<ApiResponse> {
    const response = await t.app.inject({
      method: method as 'PUT',
      url,
      headers: { ...headers, authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      ...(body === undefined ? {} : { payload: body as object }),
    });
    let parsed: unknown;
    try {
      parsed = response.body === '' ? undefined : JSON.parse(response.body);
    } catch {
      parsed = undefined;
    }
    return { status: response.statusCode, headers: response.headers as ApiResponse['headers'], body: parsed, text: response.body };
  }

  /** An API token; its principal is token:NAME. */
  async function issue(name: string): Promise<{ id: string; token: string }> {
    const response = await t.call('POST', '/v1/tokens', { name });
    expect(response.status).toBe(201);
    return response.body;
  }

  async function putPolicy(name: string, statements: Statement[]): Promise<ApiResponse> {
    return t.call('PUT', `/v1/policies/${name}`, { statements });
  }

  async function conditionalPut(name: string, statements: Statement[], headers: Record<string, string>): Promise<ApiResponse> {
    return send('PUT', `/v1/policies/${name}`, headers, { statements });
  }

  async function grant(name: string, ...statements: Statement[]): Promise<void> {
    const response = await putPolicy(name, statements.map((s) => statement(s)));
    expect(response.status, response.text).toBeLessThan(300);
  }

  async function createKey(name: string, body: Record<string, unknown> = {}): Promise<void> {
    const response = await t.call('POST', '/v1/keys', { name, ...body });
    expect(response.status, response.text).toBe(201);
  }

  async function encrypt(key: string, token?: string): Promise<string> {
    const response = await t.call('POST', `/v1/keys/${key}/encrypt`, { plaintext: SECRET }, token);
    expect(response.status, response.text).toBe(200);
    return response.body.ciphertext;
  }

  describe('PUT /v1/policies/{name}', () => {
    it('creates a policy: 201, ETag "1" and the stored document at revision 1', async () => {
      const statements = [statement({ sid: 'a-crypto', keys: ['a-*'] })];
      const response = await t.call('PUT', '/v1/policies/workload-a', { description: 'A\'s keys', statements });
      expect(response.status).toBe(201);
      expect(response.headers.etag).toBe('"1"');
      expect(response.body).toEqual({
        name: 'workload-a',
        description: 'A\'s keys',
        statements,
        revision: 1,
        createdAt: t.clock.now().toISOString(),
        updatedAt: t.clock.now().toISOString(),
      });
    });

    it('omits the description when none was given', async () => {
      const response = await putPolicy('p', [statement()]);
      expect(response.body).not.toHaveProperty('description');
    });

    it('replaces a policy: 200, ETag "2", revision 2, the new document and the original createdAt', async () => {
      const created = await putPolicy('p', [statement()]);
      t.clock.advance(60_000);
      const replacement = [statement({ effect: 'deny', keys: ['b-*'] })];
      const response = await putPolicy('p', replacement);
      expect(response.status).toBe(200);
      expect(response.headers.etag).toBe('"2"');
      expect(response.body).toMatchObject({ revision: 2, statements: replacement, createdAt: created.body.createdAt });
      expect(response.body.updatedAt).toBe(t.clock.now().toISOString());
    });

    it('replaces with If-Match naming the current revision', async () => {
      await putPolicy('p', [statement()]);
      const response = await conditionalPut('p', [statement()], { 'if-match': '"1"' });
      expect(response.status).toBe(200);
      expect(response.headers.etag).toBe('"2"');
    });

    it('refuses If-Match naming another revision with 412 KH_ERR_POLICY_REVISION_MISMATCH and keeps the policy', async () => {
      await putPolicy('p', [statement()]);
      await putPolicy('p', [statement({ sid: 'second' })]);
      const response = await conditionalPut('p', [statement({ sid: 'lost' })], { 'if-match': '"1"' });
      expectProblem(response, 412, 'KH_ERR_POLICY_REVISION_MISMATCH');
      expect((await t.call('GET', '/v1/policies/p')).body).toMatchObject({ revision: 2, statements: [{ sid: 'second' }] });
    });

    it('refuses If-Match on a policy that does not exist with 412 KH_ERR_POLICY_REVISION_MISMATCH', async () => {
      const response = await conditionalPut('p', [statement()], { 'if-match': '"1"' });
      expectProblem(response, 412, 'KH_ERR_POLICY_REVISION_MISMATCH');
      expectProblem(await t.call('GET', '/v1/policies/p'), 404, 'KH_ERR_POLICY_NOT_FOUND');
    });

    it('creates with If-None-Match: * when the policy does not exist', async () => {
      const response = await conditionalPut('p', [statement()], { 'if-none-match': '*' });
      expect(response.status).toBe(201);
    });

    it('refuses If-None-Match: * on an existing policy with 412 KH_ERR_POLICY_REVISION_MISMATCH', async () => {
      await putPolicy('p', [statement()]);
      const response = await conditionalPut('p', [statement({ sid: 'x' })], { 'if-none-match': '*' });
      expectProblem(response, 412, 'KH_ERR_POLICY_REVISION_MISMATCH');
      expect((await t.call('GET', '/v1/policies/p')).body.revision).toBe(1);
    });

    it('refuses If-Match together with If-None-Match with 400 KH_ERR_VALIDATION', async () => {
      const response = await conditionalPut('p', [statement()], { 'if-match': '"1"', 'if-none-match': '*' });
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
    });

    it.each(['1', 'W/"1"', '"0"', '*'])('refuses If-Match %j with 400 KH_ERR_VALIDATION', async (ifMatch) => {
      const response = await conditionalPut('p', [statement()], { 'if-match': ifMatch });
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
    });

    it.each<[string, Record<string, unknown>, RegExp]>([
      ['an unknown action', { statements: [statement({ actions: ['encrypt', 'keys:destroy'] })] }, /statements\/0\/actions\/1/],
      ['a "**" key glob', { statements: [statement(), statement({ keys: ['a-*', 'a**'] })] }, /\/statements\/1\/keys\/1: "a\*\*"/],
      ['a key glob with a space', { statements: [statement({ keys: ['a key'] })] }, /\/statements\/0\/keys\/0: "a key"/],
      ['a "**" principal glob', { statements: [statement({ principals: ['token:**'] })] }, /\/statements\/0\/principals\/0: "token:\*\*"/],
      [
        'an unknown variable',
        { statements: [statement({ keys: ['${principal.nope}-*'] })] },
        /\/statements\/0\/keys\/0: .*unknown variable \$\{principal\.nope\}/,
      ],
      [
        'a variable in a principal glob',
        { statements: [statement({ principals: ['token:${principal.tokenName}'] })] },
        /\/statements\/0\/principals\/0: .*variables are not allowed/,
      ],
      [
        'a reserved context key',
        { statements: [statement({ conditions: { context: { 'kh.tokenName': 'a' } } })] },
        /\/statements\/0\/conditions\/context\/kh\.tokenName: .*reserved/,
      ],
      [
        'a "*" in a context value',
        { statements: [statement({ conditions: { context: { env: 'prod*' } } })] },
        /\/statements\/0\/conditions\/context\/env: .*"\*" is not allowed/,
      ],
      [
        'an unknown field in a statement',
        { statements: [{ ...statement(), resources: ['*'] }] },
        /statements\/0 must NOT have additional properties/,
      ],
      ['an unknown top-level field', { statements: [statement()], version: '2012-10-17' }, /^body must NOT have additional properties/],
      ['a bad effect', { statements: [statement({ effect: 'permit' as 'allow' })] }, /statements\/0\/effect/],
      ['no statements', { statements: [] }, /statements must NOT have fewer than 1 items/],
      [
        'a statement without principals',
        { statements: [statement({ principals: [] })] },
        /statements\/0\/principals must NOT have fewer than 1 items/,
      ],
    ])('refuses %s with 400 KH_ERR_VALIDATION whose detail names the place', async (_label, body, detail) => {
      const response = await t.call('PUT', '/v1/policies/p', body);
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
      expect(response.body.detail).toMatch(detail);
    });

    it('reports every problem in a document together', async () => {
      const response = await putPolicy('p', [statement({ keys: ['a**'] }), statement({ principals: ['${principal.id}'] })]);
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
      expect(response.body.detail).toMatch(/\/statements\/0\/keys\/0: .*; \/statements\/1\/principals\/0: /);
    });

    it('stores nothing when the document is refused', async () => {
      await putPolicy('p', [statement({ keys: ['a**'] })]);
      expectProblem(await t.call('GET', '/v1/policies/p'), 404, 'KH_ERR_POLICY_NOT_FOUND');
    });

    it('leaves the stored policy as it was when a replacement is refused', async () => {
      await putPolicy('p', [statement({ sid: 'kept' })]);
      await putPolicy('p', [statement({ keys: ['a**'] })]);
      expect((await t.call('GET', '/v1/policies/p')).body).toMatchObject({ revision: 1, statements: [{ sid: 'kept' }] });
    });

    it.each(['-p', 'a b', 'ä'])('refuses the policy name %j with 400 KH_ERR_VALIDATION', async (name) => {
      expectProblem(await t.call('PUT', `/v1/policies/${encodeURIComponent(name)}`, { statements: [statement()] }), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('GET /v1/policies/{name}', () => {
    it('answers the stored policy with its revision as the ETag', async () => {
      await putPolicy('p', [statement({ sid: 'one' })]);
      await putPolicy('p', [statement({ sid: 'two' })]);
      const response = await t.call('GET', '/v1/policies/p');
      expect(response.status).toBe(200);
      expect(response.headers.etag).toBe('"2"');
      expect(response.body).toMatchObject({ name: 'p', revision: 2, statements: [statement({ sid: 'two' })] });
    });

    it('answers 404 KH_ERR_POLICY_NOT_FOUND for an unknown name', async () => {
      expectProblem(await t.call('GET', '/v1/policies/nope'), 404, 'KH_ERR_POLICY_NOT_FOUND');
    });
  });

  describe('GET /v1/policies', () => {
    it('answers an empty list when there are no policies', async () => {
      const response = await t.call('GET', '/v1/policies');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ policies: [] });
    });

    it('lists every policy by name, with its document', async () => {
      for (const name of ['zeta', 'alpha', 'mid']) await putPolicy(name, [statement({ sid: name })]);
      const response = await t.call('GET', '/v1/policies');
      expect(response.body.policies.map((p: { name: string }) => p.name)).toEqual(['alpha', 'mid', 'zeta']);
      expect(response.body.policies[0]).toMatchObject({ revision: 1, statements: [{ sid: 'alpha' }] });
      expect(response.body).not.toHaveProperty('nextCursor');
    });

    it('follows nextCursor through every policy exactly once', async () => {
      for (const name of ['p5', 'p1', 'p4', 'p2', 'p3']) await putPolicy(name, [statement()]);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const response = await t.call('GET', `/v1/policies?limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`);
        expect(response.status).toBe(200);
        expect(response.body.policies.length).toBeLessThanOrEqual(2);
        seen.push(...response.body.policies.map((p: { name: string }) => p.name));
        cursor = response.body.nextCursor;
        pages += 1;
        expect(pages).toBeLessThan(10);
      } while (cursor !== undefined);
      expect(seen).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
      expect(pages).toBe(3);
    });

    it('lists names in byte order on every database: upper case before lower case', async () => {
      for (const name of ['beta', 'Zeta', 'alpha', 'Alpha', '0-first', 'a.b', 'a-b', 'a_b']) await putPolicy(name, [statement()]);
      const response = await t.call('GET', '/v1/policies');
      expect(response.body.policies.map((p: { name: string }) => p.name)).toEqual([
        '0-first', 'Alpha', 'Zeta', 'a-b', 'a.b', 'a_b', 'alpha', 'beta',
      ]);
    });

    it('lists only the names that start with the prefix', async () => {
      for (const name of ['team-a', 'team-b', 'teams', 'other', 'tea']) await putPolicy(name, [statement()]);
      const response = await t.call('GET', '/v1/policies?prefix=team-');
      expect(response.body.policies.map((p: { name: string }) => p.name)).toEqual(['team-a', 'team-b']);
    });

    it('pages through a prefix', async () => {
      for (const name of ['team-a', 'team-b', 'team-c', 'other']) await putPolicy(name, [statement()]);
      const first = await t.call('GET', '/v1/policies?prefix=team-&limit=2');
      expect(first.body.policies.map((p: { name: string }) => p.name)).toEqual(['team-a', 'team-b']);
      const second = await t.call('GET', `/v1/policies?prefix=team-&limit=2&cursor=${first.body.nextCursor}`);
      expect(second.body).toMatchObject({ policies: [{ name: 'team-c' }] });
      expect(second.body).not.toHaveProperty('nextCursor');
    });

    it.each(['!!!', 'AAAA'])('refuses the cursor %j with 400 KH_ERR_VALIDATION', async (cursor) => {
      expectProblem(await t.call('GET', `/v1/policies?cursor=${encodeURIComponent(cursor)}`), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('DELETE /v1/policies/{name}', () => {
    it('answers 204 with no body, and the policy is gone: GET answers 404 KH_ERR_POLICY_NOT_FOUND', async () => {
      await putPolicy('p', [statement()]);
      const response = await t.call('DELETE', '/v1/policies/p');
      expect(response.status).toBe(204);
      expect(response.text).toBe('');
      expectProblem(await t.call('GET', '/v1/policies/p'), 404, 'KH_ERR_POLICY_NOT_FOUND');
    });

    it('answers 404 KH_ERR_POLICY_NOT_FOUND for a policy that does not exist', async () => {
      expectProblem(await t.call('DELETE', '/v1/policies/p'), 404, 'KH_ERR_POLICY_NOT_FOUND');
    });

    it('answers 404 KH_ERR_POLICY_NOT_FOUND when deleting twice', async () => {
      await putPolicy('p', [statement()]);
      await t.call('DELETE', '/v1/policies/p');
      expectProblem(await t.call('DELETE', '/v1/policies/p'), 404, 'KH_ERR_POLICY_NOT_FOUND');
    });

    it('deletes with If-Match naming the current revision', async () => {
      await putPolicy('p', [statement()]);
      await putPolicy('p', [statement()]);
      expect((await send('DELETE', '/v1/policies/p', { 'if-match': '"2"' })).status).toBe(204);
    });

    it('refuses If-Match naming another revision with 412 KH_ERR_POLICY_REVISION_MISMATCH and keeps the policy', async () => {
      await putPolicy('p', [statement()]);
      await putPolicy('p', [statement()]);
      expectProblem(await send('DELETE', '/v1/policies/p', { 'if-match': '"1"' }), 412, 'KH_ERR_POLICY_REVISION_MISMATCH');
      expect((await t.call('GET', '/v1/policies/p')).status).toBe(200);
    });

    it('a deleted policy can be created again: 201', async () => {
      await putPolicy('p', [statement()]);
      await t.call('DELETE', '/v1/policies/p');
      expect((await putPolicy('p', [statement()])).status).toBe(201);
    });

    it('an ETag from before a delete does not match the policy created again under the same name', async () => {
      const stale = (await putPolicy('p', [statement({ sid: 'old' })])).headers.etag as string;
      await t.call('DELETE', '/v1/policies/p');
      await putPolicy('p', [statement({ sid: 'new', effect: 'deny' })]);
      const response = await conditionalPut('p', [statement({ sid: 'old-edit' })], { 'if-match': stale });
      expectProblem(response, 412, 'KH_ERR_POLICY_REVISION_MISMATCH');
    });

    it('DELETE with If-None-Match: "5" on revision 1 deletes', async () => {
      await putPolicy('p', [statement()]);
      expect((await send('DELETE', '/v1/policies/p', { 'if-none-match': '"5"' })).status).toBe(204);
    });
  });

  describe('enforcement', () => {
    let a: { id: string; token: string };
    let b: { id: string; token: string };
    beforeEach(async () => {
      a = await issue('a');
      b = await issue('b');
      await createKey('a-key');
      await createKey('b-key');
    });

    it('denies a workload by default', async () => {
      expectProblem(await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a grant takes effect on the next request', async () => {
      await grant('a', { keys: ['a-*'] });
      expect((await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token)).status).toBe(200);
    });

    it('a revocation by DELETE takes effect on the next request', async () => {
      await grant('a', { keys: ['a-*'] });
      expect((await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token)).status).toBe(200);
      expect((await t.call('DELETE', '/v1/policies/a')).status).toBe(204);
      expectProblem(await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a narrowing replacement takes effect on the next request', async () => {
      await grant('a', { keys: ['a-*'] });
      expect((await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token)).status).toBe(200);
      await grant('a', { actions: ['decrypt'], keys: ['a-*'] });
      expectProblem(await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('an explicit deny in another policy wins over an allow', async () => {
      await grant('allow-all', { principals: ['token:*'] });
      await grant('deny-a', { effect: 'deny', actions: ['encrypt'], keys: ['a-key'] });
      expectProblem(await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token), 403, 'KH_ERR_FORBIDDEN');
      expect((await t.call('POST', '/v1/keys/b-key/encrypt', { plaintext: SECRET }, a.token)).status).toBe(200);
      expect((await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, b.token)).status).toBe(200);
    });

    it('an explicit deny within one policy wins over an allow', async () => {
      await grant('p', { principals: ['token:*'] }, { effect: 'deny', principals: ['token:a'], actions: ['*'], keys: ['*'] });
      expectProblem(await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a deny does not stop an admin', async () => {
      await grant('deny-all', { effect: 'deny', principals: ['*'], actions: ['*'], keys: ['*'] });
      expect((await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET })).status).toBe(200);
    });

    it('a context condition with a variable needs the caller\'s own value in the context', async () => {
      await grant('p', {
        principals: ['token:*'],
        actions: ['encrypt'],
        keys: ['*'],
        conditions: { context: { tenant: '${principal.tokenName}' } },
      });
      expect((await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET, context: { tenant: 'a' } }, a.token)).status).toBe(200);
      expectProblem(
        await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET, context: { tenant: 'b' } }, a.token),
        403,
        'KH_ERR_FORBIDDEN',
      );
      expectProblem(await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a key glob with ${principal.tokenName} scopes each token to its own keys', async () => {
      await grant('own-keys', { principals: ['token:*'], actions: ['encrypt'], keys: ['${principal.tokenName}-*'] });
      expect((await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token)).status).toBe(200);
      expect((await t.call('POST', '/v1/keys/b-key/encrypt', { plaintext: SECRET }, b.token)).status).toBe(200);
      expectProblem(await t.call('POST', '/v1/keys/b-key/encrypt', { plaintext: SECRET }, a.token), 403, 'KH_ERR_FORBIDDEN');
    });

    describe('workload A, granted every crypto action on a-*, and B\'s key', () => {
      let bCiphertext: string;
      let aCiphertext: string;
      beforeEach(async () => {
        await grant('workload-a', { sid: 'a-crypto', principals: ['token:a'], keys: ['a-*'] });
        await grant('workload-b', { sid: 'b-crypto', principals: ['token:b'], keys: ['b-*'] });
        bCiphertext = await encrypt('b-key', b.token);
        aCiphertext = await encrypt('a-key', a.token);
      });

      it.each<[string, string, string, () => Record<string, unknown>]>([
        ['datakey', 'datakey', '/v1/keys/b-key/datakey', () => ({})],
        ['encrypt', 'encrypt', '/v1/keys/b-key/encrypt', () => ({ plaintext: SECRET })],
        ['rewrap its own ciphertext into b-key', 'rewrap', '/v1/keys/b-key/rewrap', () => ({ ciphertext: aCiphertext })],
      ])('A is refused %s on b-key with 403 KH_ERR_FORBIDDEN naming %s and b-key', async (_label, action, url, body) => {
        const response = await t.call('POST', url, body(), a.token);
        expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
        expect(response.body.detail).toBe(`Not allowed to ${action} on key "b-key"`);
      });

      // A ciphertext names its key: a caller that may not use that key learns neither its name nor its existence.
      it.each<[string, string, () => Record<string, unknown>]>([
        ['decrypt with the key named', '/v1/keys/b-key/decrypt', () => ({ ciphertext: bCiphertext })],
        ['decrypt with no key named', '/v1/decrypt', () => ({ ciphertext: bCiphertext })],
        ['rewrap B\'s ciphertext into its own key', '/v1/keys/a-key/rewrap', () => ({ ciphertext: bCiphertext })],
      ])('A is refused %s as a ciphertext of no key: 400 KH_ERR_DECRYPTION_FAILED', async (_label, url, body) => {
        const response = await t.call('POST', url, body(), a.token);
        expectProblem(response, 400, 'KH_ERR_DECRYPTION_FAILED');
        expect(response.text).not.toContain('b-key');
      });

      it.each<[string, string, () => Record<string, unknown>]>([
        ['datakey', '/v1/keys/a-key/datakey', () => ({})],
        ['encrypt', '/v1/keys/a-key/encrypt', () => ({ plaintext: SECRET })],
        ['decrypt', '/v1/decrypt', () => ({ ciphertext: aCiphertext })],
        ['rewrap', '/v1/keys/a-key/rewrap', () => ({ ciphertext: aCiphertext })],
      ])('A may %s on its own key', async (_label, url, body) => {
        expect((await t.call('POST', url, body(), a.token)).status).toBe(200);
      });

      it('naming A\'s own key in the URL lends no authority over B\'s ciphertext: it fails to decrypt', async () => {
        const response = await t.call('POST', '/v1/keys/a-key/decrypt', { ciphertext: bCiphertext }, a.token);
        expectProblem(response, 400, 'KH_ERR_DECRYPTION_FAILED');
        expect(response.text).not.toContain(SECRET);
      });

      it('a batch decrypt of B\'s ciphertext fails for that item as a ciphertext of no key', async () => {
        const items = [{ op: 'decrypt', ciphertext: aCiphertext }, { op: 'decrypt', ciphertext: bCiphertext }];
        const response = await t.call('POST', '/v1/batch', { items }, a.token);
        expect(response.status).toBe(207);
        expect(response.body.results[0].status).toBe(200);
        expect(response.body.results[1]).toMatchObject({ status: 400, problem: { code: 'KH_ERR_DECRYPTION_FAILED' } });
        expect(response.text).not.toContain('b-key');
      });

      it('a 403 names neither the policies nor their statements', async () => {
        const response = await t.call('POST', '/v1/keys/b-key/datakey', {}, a.token);
        expect(response.status).toBe(403);
        expect(response.text).not.toMatch(/workload-a|workload-b|a-crypto|b-crypto|a-\*|b-\*|token:b|statement|policy/i);
      });

      it('a 403 by explicit deny names neither the denying policy nor its text', async () => {
        await grant('secret-deny', { sid: 'no-a-today', effect: 'deny', principals: ['token:a'], actions: ['encrypt'], keys: ['a-key'] });
        const response = await t.call('POST', '/v1/keys/a-key/encrypt', { plaintext: SECRET }, a.token);
        expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
        expect(response.body.detail).toBe('Not allowed to encrypt on key "a-key"');
        expect(response.text).not.toMatch(/secret-deny|no-a-today|deny|token:a/);
      });
    });

    describe('rewrap needs decrypt on the source key and rewrap on the destination', () => {
      let source: string;
      beforeEach(async () => {
        await createKey('src');
        await createKey('dst');
        source = await encrypt('src');
      });

      it('succeeds with both', async () => {
        await grant('p', { actions: ['decrypt'], keys: ['src'] }, { actions: ['rewrap'], keys: ['dst'] });
        const response = await t.call('POST', '/v1/keys/dst/rewrap', { ciphertext: source }, a.token);
        expect(response.status).toBe(200);
        expect(response.body.keyName).toBe('dst');
        expect((await t.call('POST', '/v1/decrypt', { ciphertext: response.body.ciphertext })).body.plaintext).toBe(SECRET);
      });

      it('is refused 403 naming decrypt on the source without decrypt on the source', async () => {
        // With decrypt on no key at all, the refusal comes before the source is looked up, and names no key.
        await grant('p', { actions: ['rewrap'], keys: ['src', 'dst'] }, { actions: ['decrypt'], keys: ['other'] });
        const response = await t.call('POST', '/v1/keys/dst/rewrap', { ciphertext: source }, a.token);
        expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
        expect(response.body.detail).toBe('Not allowed to decrypt on key "src"');
      });

      it('is refused 403 naming rewrap on the destination without rewrap on the destination', async () => {
        await grant('p', { actions: ['decrypt', 'encrypt'], keys: ['src', 'dst'] }, { actions: ['rewrap'], keys: ['src'] });
        const response = await t.call('POST', '/v1/keys/dst/rewrap', { ciphertext: source }, a.token);
        expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
        expect(response.body.detail).toBe('Not allowed to rewrap on key "dst"');
      });
    });
  });

  describe('administrative actions', () => {
    let worker: { id: string; token: string };
    let victim: { id: string; token: string };
    beforeEach(async () => {
      worker = await issue('worker');
      victim = await issue('victim');
      await createKey('orders');
      await createKey('paused');
      expect((await t.call('POST', '/v1/keys/paused/disable')).status).toBe(200);
      await putPolicy('existing', [statement()]);
    });

    // [label, action, keys granted, method, url, body, success status]
    const CASES: Array<[string, string, string, string, () => string, unknown, number]> = [
      ['create a key', 'keys:create', 'mine', 'POST', () => '/v1/keys', { name: 'mine' }, 201],
      ['read a key', 'keys:read', 'orders', 'GET', () => '/v1/keys/orders', undefined, 200],
      ['update a key', 'keys:update', 'orders', 'PATCH', () => '/v1/keys/orders', { description: 'x' }, 200],
      ['rotate a key', 'keys:rotate', 'orders', 'POST', () => '/v1/keys/orders/rotate', undefined, 200],
      ['disable a key', 'keys:disable', 'orders', 'POST', () => '/v1/keys/orders/disable', undefined, 200],
      ['enable a key', 'keys:enable', 'paused', 'POST', () => '/v1/keys/paused/enable', undefined, 200],
      ['schedule a key\'s deletion', 'keys:delete', 'orders', 'POST', () => '/v1/keys/orders/schedule-deletion', {}, 200],
      ['disable a key version', 'keys:disable', 'orders', 'POST', () => '/v1/keys/orders/versions/1/disable', undefined, 200],
      ['list tokens', 'tokens:read', '*', 'GET', () => '/v1/tokens', undefined, 200],
      ['issue a token', 'tokens:write', '*', 'POST', () => '/v1/tokens', { name: 'other' }, 201],
      ['revoke a token', 'tokens:write', '*', 'DELETE', () => `/v1/tokens/${victim.id}`, undefined, 204],
      ['list policies', 'policies:read', '*', 'GET', () => '/v1/policies', undefined, 200],
      ['read a policy', 'policies:read', '*', 'GET', () => '/v1/policies/existing', undefined, 200],
      ['simulate', 'policies:read', '*', 'POST', () => '/v1/policies/simulate', { principal: { id: 'token:x' }, action: 'encrypt' }, 200],
      ['write a policy', 'policies:write', '*', 'PUT', () => '/v1/policies/new', { statements: [statement()] }, 201],
      ['delete a policy', 'policies:write', '*', 'DELETE', () => '/v1/policies/existing', undefined, 204],
    ];

    it.each(CASES)(
      'a workload without a grant is refused to %s with 403 KH_ERR_FORBIDDEN naming %s',
      async (_label, action, _keys, method, url, body) => {
        const response = await t.call(method, url(), body, worker.token);
        expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
        expect(response.body.detail).toContain(`Not allowed to ${action}`);
      },
    );

    it.each(CASES)('a workload may %s once granted %s', async (_label, action, keys, method, url, body, status) => {
      await grant('worker-grant', { principals: ['token:worker'], actions: [action], keys: [keys] });
      const response = await t.call(method, url(), body, worker.token);
      expect(response.status, response.text).toBe(status);
    });

    it.each(['tokens:read', 'tokens:write', 'policies:read', 'policies:write'])(
      'a grant of every action on some keys does not reach %s',
      async (action) => {
        await grant('worker-grant', { principals: ['token:worker'], actions: ['*'], keys: ['orders', 'paused-*'] });
        const [method, url, body] = {
          'tokens:read': ['GET', '/v1/tokens', undefined],
          'tokens:write': ['POST', '/v1/tokens', { name: 'other' }],
          'policies:read': ['GET', '/v1/policies', undefined],
          'policies:write': ['PUT', '/v1/policies/escalate', { statements: [statement({ principals: ['token:worker'], actions: ['*'] })] }],
        }[action] as [string, string, unknown];
        expectProblem(await t.call(method, url, body, worker.token), 403, 'KH_ERR_FORBIDDEN');
      },
    );

    it('a grant of keys:create on some names does not let a workload create others', async () => {
      await grant('worker-grant', { principals: ['token:worker'], actions: ['keys:create'], keys: ['worker-*'] });
      expect((await t.call('POST', '/v1/keys', { name: 'worker-1' }, worker.token)).status).toBe(201);
      expectProblem(await t.call('POST', '/v1/keys', { name: 'other-1' }, worker.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a workload allowed tokens:write still may not issue an admin token', async () => {
      await grant('worker-grant', { principals: ['token:worker'], actions: ['tokens:write'], keys: ['*'] });
      expectProblem(await t.call('POST', '/v1/tokens', { name: 'root2', admin: true }, worker.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a workload allowed tokens:write still may not revoke an admin token', async () => {
      await grant('worker-grant', { principals: ['token:worker'], actions: ['tokens:write'], keys: ['*'] });
      const admin = (await t.call('GET', '/v1/whoami')).body.attributes.tokenId as string;
      expectProblem(await t.call('DELETE', `/v1/tokens/${admin}`, undefined, worker.token), 403, 'KH_ERR_FORBIDDEN');
      expect((await t.call('GET', '/v1/whoami')).status).toBe(200);
    });

    it('a refused change changes nothing', async () => {
      await t.call('PUT', '/v1/policies/existing', { statements: [statement({ sid: 'changed' })] }, worker.token);
      expect((await t.call('GET', '/v1/policies/existing')).body.revision).toBe(1);
    });
  });

  describe('decrypt by a caller that no statement allows to decrypt', () => {
    /** A well-formed ciphertext under a key id that names no key: the bytes after the format byte are the id. */
    function underUnknownKeyId(ciphertext: string, index: number): string {
      const bytes = Buffer.from(ciphertext.slice('kh1:'.length), 'base64url');
      Buffer.from(`0000000000004000800000000000${String(index).padStart(4, '0')}`, 'hex').copy(bytes, 1);
      return `kh1:${bytes.toString('base64url')}`;
    }

    it('is refused with a 403 naming no key, before any key is looked up, however many made-up key ids it sends', async () => {
      const worker = await issue('worker');
      await grant('p', { principals: ['token:worker'], actions: ['encrypt'], keys: ['*'] });
      await createKey('k');
      const ciphertext = await encrypt('k');
      const items = Array.from({ length: 50 }, (_, i) => ({ op: 'decrypt', ciphertext: underUnknownKeyId(ciphertext, i) }));
      const keyQueries: string[] = [];
      const onQuery = (query: { sql: string }) => {
        if (/\bfrom "keys"|\bfrom `keys`/i.test(query.sql)) keyQueries.push(query.sql);
      };
      t.db.on('query', onQuery);
      try {
        const batch = await t.call('POST', '/v1/batch', { items }, worker.token);
        expect(batch.status).toBe(207);
        expect(batch.body.results).toHaveLength(50);
        for (const result of batch.body.results) {
          expect(result).toMatchObject({ status: 403, problem: { code: 'KH_ERR_FORBIDDEN', detail: 'Not allowed to decrypt' } });
        }
        // The same answer for a ciphertext under a key that exists: nothing tells the two apart.
        const real = await t.call('POST', '/v1/decrypt', { ciphertext }, worker.token);
        expectProblem(real, 403, 'KH_ERR_FORBIDDEN');
        expect(real.body.detail).toBe('Not allowed to decrypt');
      } finally {
        t.db.off('query', onQuery);
      }
      expect(keyQueries).toEqual([]);
    });
  });

  describe('GET /v1/keys as a workload', () => {
    let worker: { id: string; token: string };
    beforeEach(async () => {
      worker = await issue('worker');
      for (const name of ['a-1', 'b-1', 'a-2', 'c-1', 'a-3']) await createKey(name);
    });

    it('lists no keys without a grant', async () => {
      expect((await t.call('GET', '/v1/keys', undefined, worker.token)).body).toEqual({ keys: [] });
    });

    it('reads no key rows to list nothing for a caller without a keys:read grant', async () => {
      await grant('p', { principals: ['token:worker'], actions: ['encrypt'], keys: ['*'] });
      const keyQueries: string[] = [];
      const onQuery = (query: { sql: string }) => {
        if (/\bfrom "keys"|\bfrom `keys`/i.test(query.sql)) keyQueries.push(query.sql);
      };
      t.db.on('query', onQuery);
      try {
        expect((await t.call('GET', '/v1/keys?limit=1', undefined, worker.token)).body).toEqual({ keys: [] });
      } finally {
        t.db.off('query', onQuery);
      }
      expect(keyQueries).toEqual([]);
    });

    it('refuses a made-up cursor that names a key by id: a cursor cannot ask whether a key exists', async () => {
      await grant('p', { principals: ['token:worker'], actions: ['keys:read'], keys: ['a-*'] });
      const id = (await t.call('GET', '/v1/keys/b-1')).body.id as string;
      for (const cursor of [Buffer.from(`~${id}`).toString('base64url'), Buffer.from('~00000000-0000-4000-8000-000000000000').toString('base64url')]) {
        const response = await t.call('GET', `/v1/keys?cursor=${cursor}`, undefined, worker.token);
        expectProblem(response, 400, 'KH_ERR_VALIDATION');
        expect(response.body.detail).toBe('cursor is not valid');
      }
    });

    it('lists only the keys it may read', async () => {
      await grant('p', { principals: ['token:worker'], actions: ['keys:read'], keys: ['a-*', 'c-1'] });
      const response = await t.call('GET', '/v1/keys', undefined, worker.token);
      expect(response.status).toBe(200);
      expect(response.body.keys.map((key: { name: string }) => key.name)).toEqual(['a-1', 'a-2', 'a-3', 'c-1']);
    });

    it('does not list a key that a deny takes away', async () => {
      await grant(
        'p',
        { principals: ['token:worker'], actions: ['keys:read'], keys: ['a-*'] },
        { effect: 'deny', principals: ['token:worker'], actions: ['keys:read'], keys: ['a-2'] },
      );
      const response = await t.call('GET', '/v1/keys', undefined, worker.token);
      expect(response.body.keys.map((key: { name: string }) => key.name)).toEqual(['a-1', 'a-3']);
    });

    it('does not list keys for grants of other actions', async () => {
      await grant('p', { principals: ['token:worker'], actions: ['encrypt', 'decrypt'], keys: ['*'] });
      expect((await t.call('GET', '/v1/keys', undefined, worker.token)).body).toEqual({ keys: [] });
    });

    it('following nextCursor yields every readable key exactly once', async () => {
      await grant('p', { principals: ['token:worker'], actions: ['keys:read'], keys: ['a-*'] });
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const response = await t.call('GET', `/v1/keys?limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`, undefined, worker.token);
        expect(response.status).toBe(200);
        expect(response.body.keys.length).toBeLessThanOrEqual(2);
        seen.push(...response.body.keys.map((key: { name: string }) => key.name));
        cursor = response.body.nextCursor;
        pages += 1;
        expect(pages).toBeLessThan(10);
      } while (cursor !== undefined);
      expect(seen).toEqual(['a-1', 'a-2', 'a-3']);
    });
  });

  describe('POST /v1/policies/simulate', () => {
    beforeEach(async () => {
      await putPolicy('grants', [
        statement({ sid: 'a-crypto', principals: ['token:a'], keys: ['a-*'] }),
        statement({ principals: ['token:*'], actions: ['encrypt'], keys: ['shared'] }),
      ]);
      await putPolicy('guards', [statement({ sid: 'no-root', effect: 'deny', principals: ['*'], actions: ['*'], keys: ['*-root'] })]);
      await putPolicy('namespaces', [statement({ principals: ['k8s:*'], actions: ['decrypt'], keys: ['${principal.namespace}-*'] })]);
    });

    async function simulate(body: Record<string, unknown>, token?: string): Promise<ApiResponse> {
      return t.call('POST', '/v1/policies/simulate', body, token);
    }

    it('answers allow with the allowing statement and a reason naming it', async () => {
      const response = await simulate({ principal: { id: 'token:a' }, action: 'encrypt', key: 'a-db' });
      expect(response.status).toBe(200);
      expect(response.body).toEqual({
        decision: 'allow',
        matched: [{ policy: 'grants', statement: 0, sid: 'a-crypto', effect: 'allow' }],
        reason: 'encrypt on key "a-db" is allowed by policy "grants" statement 0',
      });
    });

    it('lists every allow that matched', async () => {
      await putPolicy('more', [statement({ principals: ['token:a'], actions: ['encrypt'], keys: ['a-db'] })]);
      const response = await simulate({ principal: { id: 'token:a' }, action: 'encrypt', key: 'a-db' });
      expect(response.body.matched).toEqual([
        { policy: 'grants', statement: 0, sid: 'a-crypto', effect: 'allow' },
        { policy: 'more', statement: 0, effect: 'allow' },
      ]);
    });

    it('answers an explicit deny with the denying statement and a reason naming it', async () => {
      const response = await simulate({ principal: { id: 'token:a' }, action: 'encrypt', key: 'a-root' });
      expect(response.body).toEqual({
        decision: 'deny',
        matched: [{ policy: 'guards', statement: 0, sid: 'no-root', effect: 'deny' }],
        reason: 'encrypt on key "a-root" is denied explicitly by policy "guards" statement 0',
      });
    });

    it('answers a default deny with no statements', async () => {
      const response = await simulate({ principal: { id: 'token:b' }, action: 'decrypt', key: 'a-db' });
      expect(response.body).toEqual({ decision: 'deny', matched: [], reason: 'no statement allows decrypt on key "a-db"; denied by default' });
    });

    it('substitutes the principal attributes it is given into variables', async () => {
      const payments = { id: 'k8s:payments:api', attributes: { namespace: 'payments' } };
      expect((await simulate({ principal: payments, action: 'decrypt', key: 'payments-db' })).body.decision).toBe('allow');
      expect((await simulate({ principal: payments, action: 'decrypt', key: 'payroll-db' })).body.decision).toBe('deny');
    });

    it('resolves a variable to nothing when the attribute is not given', async () => {
      expect((await simulate({ principal: { id: 'k8s:payments:api' }, action: 'decrypt', key: 'payments-db' })).body.decision).toBe('deny');
    });

    it('checks context conditions against the context it is given', async () => {
      await grant('conditional', { principals: ['token:c'], actions: ['encrypt'], conditions: { context: { env: 'prod' } } });
      const request = { principal: { id: 'token:c' }, action: 'encrypt', key: 'k' };
      expect((await simulate({ ...request, context: { env: 'prod' } })).body.decision).toBe('allow');
      expect((await simulate({ ...request, context: { env: 'dev' } })).body.decision).toBe('deny');
    });

    it('simulates as a workload: the admin\'s own id gets no bypass', async () => {
      const response = await simulate({ principal: { id: 'token:bootstrap-admin' }, action: 'policies:write' });
      expect(response.body.decision).toBe('deny');
    });

    it('refuses a workload without policies:read with 403 KH_ERR_FORBIDDEN', async () => {
      const worker = await issue('worker');
      expectProblem(await simulate({ principal: { id: 'token:a' }, action: 'encrypt', key: 'a-db' }, worker.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('answers a workload granted policies:read', async () => {
      const worker = await issue('worker');
      await putPolicy('auditor', [statement({ principals: ['token:worker'], actions: ['policies:read'], keys: ['*'] })]);
      const response = await simulate({ principal: { id: 'token:a' }, action: 'encrypt', key: 'a-db' }, worker.token);
      expect(response.status).toBe(200);
      expect(response.body.decision).toBe('allow');
    });

    it.each<[string, Record<string, unknown>]>([
      ['an unknown action', { principal: { id: 'token:a' }, action: 'keys:destroy', key: 'a-db' }],
      ['"*" as the action', { principal: { id: 'token:a' }, action: '*', key: 'a-db' }],
      ['no principal', { action: 'encrypt', key: 'a-db' }],
      ['an unknown field', { principal: { id: 'token:a' }, action: 'encrypt', key: 'a-db', admin: true }],
      ['an admin flag on the principal', { principal: { id: 'token:a', admin: true }, action: 'encrypt', key: 'a-db' }],
    ])('refuses %s with 400 KH_ERR_VALIDATION', async (_label, body) => {
      expectProblem(await simulate(body), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('GET /v1/whoami', () => {
    it('answers an API token\'s principal: token:NAME, not admin, with its id and name as attributes', async () => {
      const worker = await issue('worker');
      const response = await t.call('GET', '/v1/whoami', undefined, worker.token);
      expect(response.status).toBe(200);
      expect(response.body).toEqual({
        id: 'token:worker',
        type: 'token',
        admin: false,
        attributes: { tokenId: worker.id, tokenName: 'worker' },
      });
    });
  });

  describe('durability', () => {
    it('policies survive a restart, and still apply', async () => {
      const worker = await issue('worker');
      await createKey('orders');
      await grant('p', { principals: ['token:worker'], actions: ['encrypt'], keys: ['orders'] });
      await grant('p', { principals: ['token:worker'], actions: ['encrypt', 'keys:read'], keys: ['orders'] }); // revision 2
      const original = t;
      t = await original.restart();
      cleanups.push(() => original.store.destroy());
      expect((await t.call('GET', '/v1/policies/p')).body).toMatchObject({ name: 'p', revision: 2 });
      expect((await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET }, worker.token)).status).toBe(200);
      expectProblem(await t.call('POST', '/v1/keys/orders/rotate', undefined, worker.token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a policy written on another replica applies here once the change feed has brought it', async () => {
      const worker = await issue('worker');
      await createKey('orders');
      expectProblem(await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET }, worker.token), 403, 'KH_ERR_FORBIDDEN');
      const other = await buildTestApp(kind, { store: t.store, clock: t.clock });
      try {
        const written = await other.call('PUT', '/v1/policies/p', { statements: [statement({ principals: ['token:worker'] })] });
        expect(written.status).toBe(201);
      } finally {
        await other.close();
      }
      // A notification (PostgreSQL) or the next poll brings it; this reads the feed now rather than wait for either.
      await t.services.changes.catchUp();
      expect((await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET }, worker.token)).status).toBe(200);
    });
  });

  describe('keys bound to the caller\'s identity (boundContext)', () => {
    let a: { id: string; token: string };
    let b: { id: string; token: string };
    beforeEach(async () => {
      a = await issue('a');
      b = await issue('b');
      await createKey('shared', { boundContext: ['tokenName'] });
      await grant('shared', { principals: ['token:a', 'token:b'], keys: ['shared', 'plain'] });
    });

    it('a ciphertext decrypts for the token that made it', async () => {
      const ciphertext = await encrypt('shared', a.token);
      const response = await t.call('POST', '/v1/decrypt', { ciphertext }, a.token);
      expect(response.status).toBe(200);
      expect(response.body.plaintext).toBe(SECRET);
    });

    it('a ciphertext made by token:a fails to decrypt for token:b, although both are allowed, with 400 KH_ERR_DECRYPTION_FAILED', async () => {
      const ciphertext = await encrypt('shared', a.token);
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext }, b.token), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('a data key made by token:a fails to decrypt for token:b', async () => {
      const dataKey = await t.call('POST', '/v1/keys/shared/datakey', {}, a.token);
      expect(dataKey.status).toBe(200);
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext: dataKey.body.ciphertext }, b.token), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('token:b cannot claim token:a\'s binding by sending kh.tokenName itself', async () => {
      const ciphertext = await encrypt('shared', a.token);
      const response = await t.call('POST', '/v1/decrypt', { ciphertext, context: { 'kh.tokenName': 'a' } }, b.token);
      expect(response.status).toBe(400);
      expect(response.text).not.toContain(SECRET);
    });

    it('token:b cannot rewrap token:a\'s ciphertext into a key it may read', async () => {
      await createKey('plain');
      const ciphertext = await encrypt('shared', a.token);
      expectProblem(await t.call('POST', '/v1/keys/plain/rewrap', { ciphertext }, b.token), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('the admin is bound too: its tokenName is "bootstrap-admin"', async () => {
      expect((await t.call('GET', '/v1/whoami')).body.attributes).toMatchObject({ tokenName: 'bootstrap-admin' });
    });

    it('a ciphertext made by the admin decrypts for the admin and not for token:a', async () => {
      const ciphertext = await encrypt('shared');
      expect((await t.call('POST', '/v1/decrypt', { ciphertext })).status).toBe(200);
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext }, a.token), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('an admin bypasses policies but not the binding: token:a\'s ciphertext fails to decrypt for the admin', async () => {
      const ciphertext = await encrypt('shared', a.token);
      expectProblem(await t.call('POST', '/v1/decrypt', { ciphertext }), 400, 'KH_ERR_DECRYPTION_FAILED');
    });

    it('a key bound to namespace refuses an API token, which has no namespace, with 403 KH_ERR_FORBIDDEN', async () => {
      await createKey('by-namespace', { boundContext: ['namespace'] });
      await grant('ns', { principals: ['token:a'], actions: ['encrypt'], keys: ['by-namespace'] });
      const response = await t.call('POST', '/v1/keys/by-namespace/encrypt', { plaintext: SECRET }, a.token);
      expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
      expect(response.body.detail).toMatch(/encrypt on key "by-namespace".*namespace/);
    });

    it('a key bound to namespace refuses the admin token too, which has no namespace either', async () => {
      await createKey('by-namespace', { boundContext: ['namespace'] });
      expectProblem(await t.call('POST', '/v1/keys/by-namespace/encrypt', { plaintext: SECRET }), 403, 'KH_ERR_FORBIDDEN');
    });

    it('shows the binding on the key', async () => {
      expect((await t.call('GET', '/v1/keys/shared')).body.boundContext).toEqual(['tokenName']);
    });

    it.each([[[]], [['namespace']]])('refuses to change boundContext to %j by PATCH with 400 KH_ERR_VALIDATION', async (boundContext) => {
      expectProblem(await t.call('PATCH', '/v1/keys/shared', { boundContext }), 400, 'KH_ERR_VALIDATION');
      expect((await t.call('GET', '/v1/keys/shared')).body.boundContext).toEqual(['tokenName']);
    });

    it.each<[string, string, (ciphertext: string) => Record<string, unknown>]>([
      ['encrypt', '/v1/keys/shared/encrypt', () => ({ plaintext: SECRET, context: { 'kh.tokenName': 'b' } })],
      ['datakey', '/v1/keys/shared/datakey', () => ({ context: { 'kh.tokenName': 'b' } })],
      ['rewrap (destinationContext)', '/v1/keys/shared/rewrap', (ciphertext) => ({ ciphertext, destinationContext: { 'kh.tokenName': 'b' } })],
      ['encrypt with an unbound kh. key', '/v1/keys/shared/encrypt', () => ({ plaintext: SECRET, context: { 'kh.anything': 'x' } })],
    ])('refuses a client-sent kh. context key on %s with 400 KH_ERR_VALIDATION', async (_label, url, body) => {
      const ciphertext = await encrypt('shared', a.token);
      const response = await t.call('POST', url, body(ciphertext), a.token);
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
      expect(response.body.detail).toMatch(/"kh\." are reserved/);
    });
  });
});
