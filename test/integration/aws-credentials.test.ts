import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { auditRows } from '../helpers/audit.js';
import { buildReplicaPair, buildTestApp, describeEachDatabase, type ReplicaPair, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

const ACCESS_KEY_ID = /^KHAK[A-Z2-7]{16}$/;

describeEachDatabase('AWS access keys', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => t.close());

  async function issue(name: string, body: Record<string, unknown> = {}, token?: string): Promise<any> {
    const response = await t.call('POST', '/v1/aws-credentials', { name, ...body }, token);
    expect(response.status, response.text).toBe(201);
    return response.body;
  }

  /** An API token `token:NAME`, allowed the given actions on every key (AWS credential actions are not about one). */
  async function workload(name: string, actions: string[]): Promise<string> {
    const token = (await t.call('POST', '/v1/tokens', { name })).body.token as string;
    if (actions.length > 0) {
      const put = await t.call('PUT', `/v1/policies/${name}`, { statements: [{ effect: 'allow', principals: [`token:${name}`], actions, keys: ['*'] }] });
      expect(put.status, put.text).toBe(201);
    }
    return token;
  }

  describe('POST /v1/aws-credentials', () => {
    it('answers 201 with the access key id, its secret, and the caller as its principal', async () => {
      const response = await t.call('POST', '/v1/aws-credentials', { name: 'ci' });
      expect(response.status).toBe(201);
      expect(response.body).toEqual({
        accessKeyId: expect.stringMatching(ACCESS_KEY_ID),
        secretAccessKey: expect.stringMatching(/^[A-Za-z0-9+/]{40}$/),
        name: 'ci',
        principal: { id: 'token:bootstrap-admin', type: 'token' },
        createdAt: t.clock.now().toISOString(),
        expiresAt: null,
      });
    });

    it('binds another principal when an admin names it, and sets expiresAt from ttlSeconds', async () => {
      const issued = await issue('shop', { principal: 'k8s:shop:api', ttlSeconds: 600 });
      expect(issued.principal).toEqual({ id: 'k8s:shop:api', type: 'kubernetes' });
      expect(issued.expiresAt).toBe(new Date(t.clock.now().getTime() + 600_000).toISOString());
      const credential = await t.services.awsCredentials.signingCredential(issued.accessKeyId);
      expect(credential).toEqual({
        accessKeyId: issued.accessKeyId,
        secretAccessKey: issued.secretAccessKey,
        principal: {
          id: 'k8s:shop:api',
          type: 'kubernetes',
          admin: false,
          attributes: { namespace: 'shop', serviceAccount: 'api', accessKeyId: issued.accessKeyId },
        },
      });
    });

    it('keeps the key bound to an admin from acting as an admin', async () => {
      const issued = await issue('mine');
      expect((await t.services.awsCredentials.signingCredential(issued.accessKeyId))?.principal).toMatchObject({ id: 'token:bootstrap-admin', admin: false });
    });

    it('lets a workload allowed aws-credentials:write issue a key bound to itself', async () => {
      const token = await workload('ops', ['aws-credentials:write']);
      const issued = await issue('ops-key', {}, token);
      expect(issued.principal).toEqual({ id: 'token:ops', type: 'token' });
    });

    it('refuses a workload binding a key to another principal with 403 KH_ERR_FORBIDDEN', async () => {
      const token = await workload('ops', ['aws-credentials:write']);
      expectProblem(await t.call('POST', '/v1/aws-credentials', { name: 'x', principal: 'token:bootstrap-admin' }, token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('refuses a second live key of one name with 409 KH_ERR_AWS_CREDENTIAL_EXISTS', async () => {
      await issue('ci');
      expectProblem(await t.call('POST', '/v1/aws-credentials', { name: 'ci' }), 409, 'KH_ERR_AWS_CREDENTIAL_EXISTS');
    });

    it.each([
      ['an unknown principal form', { name: 'x', principal: 'user:alice' }],
      ['a namespace that is no Kubernetes name', { name: 'x', principal: 'k8s:Shop:api' }],
      ['a ttl under a minute', { name: 'x', ttlSeconds: 59 }],
      ['a bad name', { name: '-x' }],
      ['an unknown field', { name: 'x', admin: true }],
    ])('refuses %s with 400 KH_ERR_VALIDATION', async (_label, body) => {
      expectProblem(await t.call('POST', '/v1/aws-credentials', body), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('GET /v1/aws-credentials', () => {
    it('lists live keys by name without any secret, and follows nextCursor through every one exactly once', async () => {
      const issued = [];
      for (const name of ['k3', 'k1', 'k2']) issued.push(await issue(name));
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const response = await t.call('GET', `/v1/aws-credentials?limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`);
        expect(response.status).toBe(200);
        for (const credential of response.body.credentials) {
          expect(Object.keys(credential).sort()).toEqual(['accessKeyId', 'createdAt', 'expiresAt', 'name', 'principal']);
        }
        for (const { secretAccessKey } of issued) expect(response.text).not.toContain(secretAccessKey);
        expect(response.text).not.toMatch(/secret/i);
        seen.push(...response.body.credentials.map((c: { name: string }) => c.name));
        cursor = response.body.nextCursor;
      } while (cursor !== undefined);
      expect(seen).toEqual(['k1', 'k2', 'k3']);
    });

    it('leaves revoked keys out', async () => {
      const gone = await issue('gone');
      await issue('kept');
      expect((await t.call('DELETE', `/v1/aws-credentials/${gone.accessKeyId}`)).status).toBe(204);
      expect((await t.call('GET', '/v1/aws-credentials')).body.credentials.map((c: { name: string }) => c.name)).toEqual(['kept']);
    });

    it.each(['!!!', 'AAAA'])('refuses the cursor %j with 400 KH_ERR_VALIDATION', async (cursor) => {
      expectProblem(await t.call('GET', `/v1/aws-credentials?cursor=${encodeURIComponent(cursor)}`), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('DELETE /v1/aws-credentials/{accessKeyId}', () => {
    it('answers 204, after which the key no longer signs', async () => {
      const issued = await issue('ci');
      expect(await t.services.awsCredentials.signingCredential(issued.accessKeyId)).toBeDefined();
      const response = await t.call('DELETE', `/v1/aws-credentials/${issued.accessKeyId}`);
      expect(response.status).toBe(204);
      expect(response.text).toBe('');
      expect(await t.services.awsCredentials.signingCredential(issued.accessKeyId)).toBeUndefined();
    });

    it('answers 404 KH_ERR_AWS_CREDENTIAL_NOT_FOUND for a key revoked already, or unknown', async () => {
      const issued = await issue('ci');
      await t.call('DELETE', `/v1/aws-credentials/${issued.accessKeyId}`);
      expectProblem(await t.call('DELETE', `/v1/aws-credentials/${issued.accessKeyId}`), 404, 'KH_ERR_AWS_CREDENTIAL_NOT_FOUND');
      expectProblem(await t.call('DELETE', '/v1/aws-credentials/KHAKAAAAAAAAAAAAAAAA'), 404, 'KH_ERR_AWS_CREDENTIAL_NOT_FOUND');
    });

    it('refuses an id not of the KHAK shape with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('DELETE', '/v1/aws-credentials/AKIAIOSFODNN7EXAMPLE'), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('authorisation', () => {
    it.each([
      ['issue a key', 'POST', '/v1/aws-credentials', { name: 'x' }],
      ['list keys', 'GET', '/v1/aws-credentials', undefined],
      ['revoke a key', 'DELETE', '/v1/aws-credentials/KHAKAAAAAAAAAAAAAAAA', undefined],
    ])('a token without the aws-credentials actions is refused to %s with 403 KH_ERR_FORBIDDEN', async (_label, method, url, body) => {
      const token = await workload('plain', []);
      expectProblem(await t.call(method, url, body, token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('aws-credentials:read lists but does not issue or revoke', async () => {
      const issued = await issue('ci');
      const token = await workload('reader', ['aws-credentials:read']);
      expect((await t.call('GET', '/v1/aws-credentials', undefined, token)).status).toBe(200);
      expectProblem(await t.call('POST', '/v1/aws-credentials', { name: 'x' }, token), 403, 'KH_ERR_FORBIDDEN');
      expectProblem(await t.call('DELETE', `/v1/aws-credentials/${issued.accessKeyId}`, undefined, token), 403, 'KH_ERR_FORBIDDEN');
    });

    it('a grant on some keys does not reach the AWS credential actions', async () => {
      const token = (await t.call('POST', '/v1/tokens', { name: 'narrow' })).body.token as string;
      const statements = [{ effect: 'allow', principals: ['token:narrow'], actions: ['*'], keys: ['narrow.*'] }];
      expect((await t.call('PUT', '/v1/policies/narrow', { statements })).status).toBe(201);
      expectProblem(await t.call('GET', '/v1/aws-credentials', undefined, token), 403, 'KH_ERR_FORBIDDEN');
    });
  });

  describe('the secret', () => {
    it('appears in the create answer only: never in a list, the logs or the audit records', async () => {
      const issued = await issue('ci', { principal: 'k8s:shop:api' });
      await t.call('GET', '/v1/aws-credentials');
      await t.call('DELETE', `/v1/aws-credentials/${issued.accessKeyId}`);
      await t.services.auditWriter!.flush();
      const records = JSON.stringify(await auditRows(t));
      const logs = t.logs.text();
      // The haystacks are real: the records name the operations, the logs the requests.
      expect(records).toContain('aws-credentials:create');
      expect(records).toContain('aws-credentials:revoke');
      expect(logs).toContain('/v1/aws-credentials');
      const secret = issued.secretAccessKey as string;
      for (const form of [secret, Buffer.from(secret, 'base64').toString('hex'), Buffer.from(secret).toString('base64')]) {
        expect(records.includes(form), 'the secret in audit_records').toBe(false);
        expect(logs.includes(form), 'the secret in the logs').toBe(false);
      }
      const row = await t.db('aws_credentials').where({ access_key_id: issued.accessKeyId }).first();
      expect(Buffer.from(row.wrapped_secret).includes(Buffer.from(secret, 'base64'))).toBe(false);
      expect(JSON.stringify(row)).not.toContain(secret);
    });

    it('is redacted by the logger wherever an object carries it', async () => {
      t.app.log.error({ secretAccessKey: 'shh-1', nested: { secretAccessKey: 'shh-2' } }, 'redaction check');
      expect(t.logs.text()).toContain('redaction check');
      expect(t.logs.text()).not.toMatch(/shh-[12]/);
    });
  });
});

describeEachDatabase('AWS access keys across replicas', (kind) => {
  let pair: ReplicaPair;
  beforeEach(async () => {
    pair = await buildReplicaPair(kind);
  });
  afterEach(async () => pair.close());

  it('a key revoked through A stops signing on B, which had it cached', async () => {
    const { a, b } = pair;
    const issued = (await a.call('POST', '/v1/aws-credentials', { name: 'shared', principal: 'k8s:shop:api' })).body;
    expect((await b.services.awsCredentials.signingCredential(issued.accessKeyId))?.secretAccessKey).toBe(issued.secretAccessKey);
    expect((await a.call('DELETE', `/v1/aws-credentials/${issued.accessKeyId}`)).status).toBe(204);
    await b.services.changes.catchUp();
    expect(await b.services.awsCredentials.signingCredential(issued.accessKeyId)).toBeUndefined();
  });
});
