import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';
import { AUDIENCE, ISSUER, issuerKey, keySet, serviceAccountClaims, signToken, TempDir, type IssuerKey } from '../helpers/kubernetes.js';

/**
 * Two Kubernetes workloads, `k8s:team-a:api` and `k8s:team-b:api`, each with its own key and one key they share.
 * The specification: a workload can never use another's key, and under a namespace-bound key it can never read
 * the other's ciphertexts, even when a policy lets both use the key.
 */

let issuer: IssuerKey;
const dir = new TempDir();
let authConfig: string;

beforeAll(async () => {
  issuer = await issuerKey('RS256', 'k1');
  const jwks = dir.write('jwks.json', keySet(issuer));
  authConfig = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['RS256'], jwksFile: jwks }]);
});
afterAll(() => dir.remove());

const ISOLATION_POLICY = {
  statements: [
    {
      sid: 'own-keys',
      effect: 'allow',
      principals: ['k8s:*'],
      actions: ['datakey', 'encrypt', 'decrypt', 'rewrap', 'keys:read'],
      keys: ['${principal.namespace}-*'],
    },
    // Deliberately too broad: both namespaces may use the shared key. Binding still keeps their data apart.
    { sid: 'shared', effect: 'allow', principals: ['k8s:team-a:*', 'k8s:team-b:*'], actions: ['datakey', 'encrypt', 'decrypt', 'rewrap'], keys: ['shared'] },
  ],
};

describeEachDatabase('workload isolation', (kind) => {
  let t: TestApp;
  let a: string;
  let b: string;

  async function tokenFor(namespace: string): Promise<string> {
    return signToken(
      issuer,
      serviceAccountClaims(t.clock, {
        sub: `system:serviceaccount:${namespace}:api`,
        'kubernetes.io': { namespace, serviceaccount: { name: 'api', uid: 'u' } },
      }),
    );
  }

  beforeEach(async () => {
    t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: authConfig } });
    for (const name of ['team-a-orders', 'team-b-orders']) expect((await t.call('POST', '/v1/keys', { name })).status).toBe(201);
    expect((await t.call('POST', '/v1/keys', { name: 'shared', boundContext: ['namespace'] })).status).toBe(201);
    expect((await t.call('PUT', '/v1/policies/isolation', ISOLATION_POLICY)).status).toBe(201);
    a = await tokenFor('team-a');
    b = await tokenFor('team-b');
  });
  afterEach(async () => t.close());

  it('shows each workload its own principal and attributes', async () => {
    const response = await t.call('GET', '/v1/whoami', undefined, a);
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      id: 'k8s:team-a:api',
      type: 'kubernetes',
      admin: false,
      attributes: { namespace: 'team-a', serviceAccount: 'api', issuer: ISSUER },
    });
  });

  it('lets a workload use its own key', async () => {
    const dataKey = await t.call('POST', '/v1/keys/team-a-orders/datakey', { context: { order: '1' } }, a);
    expect(dataKey.status).toBe(200);
    const opened = await t.call('POST', '/v1/decrypt', { ciphertext: dataKey.body.ciphertext, context: { order: '1' } }, a);
    expect(opened.status).toBe(200);
    expect(opened.body.plaintext).toBe(dataKey.body.plaintext);
  });

  it.each([
    ['datakey', '/v1/keys/team-b-orders/datakey', {}],
    ['encrypt', '/v1/keys/team-b-orders/encrypt', { plaintext: Buffer.from('x').toString('base64') }],
  ])("refuses workload A %s on workload B's key with 403 naming the action and the key", async (action, url, body) => {
    const response = await t.call('POST', url, body, a);
    expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
    expect(response.body.detail).toBe(`Not allowed to ${action} on key "team-b-orders"`);
  });

  it("refuses workload A decrypt and rewrap of workload B's ciphertext as if the key did not exist, whatever the URL names", async () => {
    const ciphertext = (await t.call('POST', '/v1/keys/team-b-orders/datakey', {}, b)).body.ciphertext as string;
    // The same ciphertext with another key id: what a caller sees for a key that does not exist.
    const bytes = Buffer.from(ciphertext.slice('kh1:'.length), 'base64url');
    bytes.fill(0x5a, 1, 17);
    const unknownKey = await t.call('POST', '/v1/decrypt', { ciphertext: `kh1:${bytes.toString('base64url')}` }, a);
    expectProblem(unknownKey, 400, 'KH_ERR_DECRYPTION_FAILED');
    for (const [url, body] of [
      ['/v1/decrypt', { ciphertext }],
      ['/v1/keys/team-b-orders/decrypt', { ciphertext }],
      ['/v1/keys/team-a-orders/rewrap', { ciphertext }],
    ] as const) {
      const response = await t.call('POST', url, body, a);
      expectProblem(response, 400, 'KH_ERR_DECRYPTION_FAILED');
      expect({ ...response.body, requestId: undefined }).toEqual({ ...unknownKey.body, requestId: undefined });
      expect(response.text).not.toContain('team-b');
    }
    const batch = await t.call('POST', '/v1/batch', { items: [{ op: 'decrypt', ciphertext }] }, a);
    expect(batch.body.results[0].problem).toMatchObject({ status: 400, code: 'KH_ERR_DECRYPTION_FAILED' });
    expect(batch.text).not.toContain('team-b');
    // The audit log, for those who may read it, still says what happened: a denial on B's key.
    const audit = await t.call('GET', '/v1/audit?key=team-b-orders&outcome=KH_ERR_DECRYPTION_FAILED');
    expect(audit.body.records.length).toBeGreaterThanOrEqual(3);
    for (const record of audit.body.records) expect(record).toMatchObject({ principalId: 'k8s:team-a:api', action: 'decrypt', decision: 'deny' });
  });

  it('still answers 403 naming the key to a workload that may use it in another context', async () => {
    expect((await t.call('PUT', '/v1/policies/team-a-tenant', {
      statements: [{ effect: 'allow', principals: ['k8s:team-a:*'], actions: ['decrypt'], keys: ['team-b-orders'], conditions: { context: { tenant: 'a' } } }],
    })).status).toBe(201);
    const ciphertext = (await t.call('POST', '/v1/keys/team-b-orders/datakey', { context: { tenant: 'b' } }, b)).body.ciphertext as string;
    const response = await t.call('POST', '/v1/decrypt', { ciphertext, context: { tenant: 'b' } }, a);
    expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
    expect(response.body.detail).toBe('Not allowed to decrypt on key "team-b-orders"');
  });

  it("refuses workload A rewrap into workload B's key", async () => {
    const ciphertext = (await t.call('POST', '/v1/keys/team-a-orders/datakey', {}, a)).body.ciphertext as string;
    const response = await t.call('POST', '/v1/keys/team-b-orders/rewrap', { ciphertext }, a);
    expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
    expect(response.body.detail).toBe('Not allowed to rewrap on key "team-b-orders"');
  });

  it("does not decrypt B's ciphertext under the shared namespace-bound key for A, though a policy allows both", async () => {
    const made = await t.call('POST', '/v1/keys/shared/datakey', { context: { record: '7' } }, b);
    expect(made.status).toBe(200);
    const forA = await t.call('POST', '/v1/decrypt', { ciphertext: made.body.ciphertext, context: { record: '7' } }, a);
    expectProblem(forA, 400, 'KH_ERR_DECRYPTION_FAILED');
    const forB = await t.call('POST', '/v1/decrypt', { ciphertext: made.body.ciphertext, context: { record: '7' } }, b);
    expect(forB.status).toBe(200);
    expect(forB.body.plaintext).toBe(made.body.plaintext);
  });

  it("does not let A rewrap B's bound ciphertext into A's own key", async () => {
    const made = await t.call('POST', '/v1/keys/shared/encrypt', { plaintext: Buffer.from('b-secret').toString('base64') }, b);
    const response = await t.call('POST', '/v1/keys/team-a-orders/rewrap', { ciphertext: made.body.ciphertext }, a);
    // A may decrypt under the shared key by policy, so the refusal comes from the binding: a decryption failure.
    expectProblem(response, 400, 'KH_ERR_DECRYPTION_FAILED');
  });

  it('binds the namespace even for an admin: an admin token has none, so it is refused', async () => {
    expectProblem(await t.call('POST', '/v1/keys/shared/datakey', {}), 403, 'KH_ERR_FORBIDDEN');
  });

  it('refuses a client that sets the bound entry itself', async () => {
    const response = await t.call('POST', '/v1/keys/shared/datakey', { context: { 'kh.namespace': 'team-b' } }, a);
    expectProblem(response, 400, 'KH_ERR_VALIDATION');
  });

  it('lists to each workload only the keys it may read', async () => {
    const response = await t.call('GET', '/v1/keys', undefined, a);
    expect(response.status).toBe(200);
    expect(response.body.keys.map((key: { name: string }) => key.name)).toEqual(['team-a-orders']);
  });

  it('refuses key administration to workloads without grants', async () => {
    for (const [method, url, body] of [
      ['POST', '/v1/keys', { name: 'team-a-new' }],
      ['POST', '/v1/keys/team-a-orders/rotate', undefined],
      ['POST', '/v1/keys/team-a-orders/disable', undefined],
      ['POST', '/v1/keys/team-a-orders/schedule-deletion', undefined],
      ['PUT', '/v1/policies/mine', ISOLATION_POLICY],
      ['GET', '/v1/tokens', undefined],
    ] as const) {
      expectProblem(await t.call(method, url, body, a), 403, 'KH_ERR_FORBIDDEN');
    }
  });
});
