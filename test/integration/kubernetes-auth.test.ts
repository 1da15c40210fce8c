import type { AddressInfo } from 'node:net';
import { exportSPKI, SignJWT } from 'jose';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StartupError } from '../../src/errors.js';
import type { KubernetesIssuerConfig } from '../../src/identity/auth-config.js';
import type { Credentials } from '../../src/identity/authenticator.js';
import { boundedFetch, DISCOVERY_RETRY_MS, MAX_FETCH_BYTES } from '../../src/identity/jwks.js';
import { createKubernetesAuthenticator, type KubernetesAuthenticator } from '../../src/identity/kubernetes.js';
import type { Principal } from '../../src/context/principal.js';
import { buildTestApp, describeEachDatabase, TestStore, type ApiResponse, type TestApp } from '../helpers/app.js';
import { ManualClock } from '../helpers/clock.js';
import { expectProblem } from '../helpers/expect-problem.js';
import {
  AUDIENCE,
  base64url,
  ISSUER,
  issuerKey,
  JsonServer,
  keySet,
  serviceAccountClaims,
  signToken,
  TempDir,
  TEST_TLS_CERT,
  TEST_TLS_KEY,
  type IssuerKey,
} from '../helpers/kubernetes.js';

let rsa: IssuerKey;
let ec: IssuerKey;
let attacker: IssuerKey;
const dir = new TempDir();

beforeAll(async () => {
  [rsa, ec, attacker] = await Promise.all([issuerKey('RS256', 'rsa-1'), issuerKey('ES256', 'ec-1'), issuerKey('RS256', 'rsa-1')]);
  dir.write('jwks.json', keySet(rsa, ec));
});
afterAll(() => dir.remove());

/** Every way a token can be bad, each signed against the app's clock. */
const BAD_TOKENS: [string, (clock: ManualClock) => Promise<string>][] = [
  ['alg none', async (clock) => `${base64url({ alg: 'none', kid: rsa.kid })}.${base64url(serviceAccountClaims(clock))}.`],
  [
    'HS256 with the RSA public key as secret',
    async (clock) =>
      new SignJWT(serviceAccountClaims(clock))
        .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
        .sign(new TextEncoder().encode(await exportSPKI(rsa.publicKey))),
  ],
  ['ES256 where only RS256 is configured', (clock) => signToken(ec, serviceAccountClaims(clock))],
  ['another issuer', (clock) => signToken(rsa, serviceAccountClaims(clock, { iss: 'https://evil.example.com' }))],
  ['another audience', (clock) => signToken(rsa, serviceAccountClaims(clock, { aud: ['vault'] }))],
  ['an expired token', (clock) => signToken(rsa, serviceAccountClaims(clock, { exp: Math.floor(clock.now().getTime() / 1000) - 120 }))],
  ['a token not valid yet', (clock) => signToken(rsa, serviceAccountClaims(clock, { nbf: Math.floor(clock.now().getTime() / 1000) + 120 }))],
  ['a subject that is not a service account', (clock) => signToken(rsa, serviceAccountClaims(clock, { sub: 'system:node:n1', 'kubernetes.io': undefined }))],
  ['an unknown kid', (clock) => signToken(rsa, serviceAccountClaims(clock), { kid: 'rsa-9' })],
  ['a kid with a path', (clock) => signToken(rsa, serviceAccountClaims(clock), { kid: '../../etc/passwd' })],
  ['a kid with SQL', (clock) => signToken(rsa, serviceAccountClaims(clock), { kid: "' OR 1=1--" })],
  ['an attacker key embedded as jwk', (clock) => signToken(attacker, serviceAccountClaims(clock), { jwk: attacker.publicJwk })],
  ['a jku pointing elsewhere', (clock) => signToken(attacker, serviceAccountClaims(clock), { jku: 'http://127.0.0.1:9/jwks' })],
  ['a forged signature', (clock) => signToken(attacker, serviceAccountClaims(clock))],
  ['garbage in JWS shape', async () => 'eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln'],
];

async function callWith(t: TestApp, method: string, url: string, token: string, body?: unknown): Promise<ApiResponse> {
  return t.call(method, url, body, token);
}

describeEachDatabase('Kubernetes service-account tokens over HTTP', (kind) => {
  let t: TestApp;
  let config: string;
  beforeAll(() => {
    // jwksFile is relative: auth config paths resolve against the config's own folder.
    config = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], jwksFile: 'jwks.json' }]);
  });
  beforeEach(async () => {
    t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: config } });
  });
  afterEach(async () => t.close());

  it('a valid token authenticates as its service account', async () => {
    const response = await callWith(t, 'GET', '/v1/whoami', await signToken(rsa, serviceAccountClaims(t.clock)));
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ id: 'k8s:payments:api', type: 'kubernetes', admin: false });
    expect(response.body.attributes).toMatchObject({ namespace: 'payments', serviceAccount: 'api', issuer: ISSUER });
  });

  it('a workload without grants is authenticated but forbidden: POST /v1/keys → 403', async () => {
    const token = await signToken(rsa, serviceAccountClaims(t.clock));
    expectProblem(await callWith(t, 'POST', '/v1/keys', token, { name: 'payments' }), 403, 'KH_ERR_FORBIDDEN');
  });

  it('API tokens still authenticate beside service-account tokens', async () => {
    expect((await t.call('GET', '/v1/whoami')).body).toMatchObject({ type: 'token', admin: true });
  });

  it.each(BAD_TOKENS)('%s → 401 KH_ERR_UNAUTHENTICATED', async (_name, make) => {
    const response = await callWith(t, 'POST', '/v1/keys', await make(t.clock), { name: 'payments' });
    expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
    expect(response.headers['www-authenticate']).toBe('Bearer realm="keyhold"');
  });

  it('every bad token gets the same answer, so none reveals which check failed', async () => {
    const answers = new Set<string>();
    for (const [, make] of BAD_TOKENS) {
      const { body } = await callWith(t, 'GET', '/v1/whoami', await make(t.clock));
      const { requestId: _requestId, ...rest } = body;
      answers.add(JSON.stringify(rest));
    }
    expect(answers.size).toBe(1);
  });

  it('a token that expires is refused afterwards, even though it was answered from memory before', async () => {
    const token = await signToken(rsa, serviceAccountClaims(t.clock, { exp: Math.floor(t.clock.now().getTime() / 1000) + 600 }));
    expect((await callWith(t, 'GET', '/v1/whoami', token)).status).toBe(200);
    expect((await callWith(t, 'GET', '/v1/whoami', token)).status).toBe(200);
    t.clock.advance(661_000);
    expectProblem(await callWith(t, 'GET', '/v1/whoami', token), 401, 'KH_ERR_UNAUTHENTICATED');
  });

  it('a 20 KB token → 401', async () => {
    const token = await signToken(rsa, serviceAccountClaims(t.clock, { padding: 'x'.repeat(20 * 1024) }));
    expectProblem(await callWith(t, 'GET', '/v1/whoami', token), 401, 'KH_ERR_UNAUTHENTICATED');
  });

  it('a 20 KB token over a real connection → 401 problem, not 431', async () => {
    const token = await signToken(rsa, serviceAccountClaims(t.clock, { padding: 'x'.repeat(20 * 1024) }));
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(401);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(((await response.json()) as { code: string }).code).toBe('KH_ERR_UNAUTHENTICATED');
  });

  it('never logs a token, accepted or refused, even at debug level', async () => {
    const debug = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: config, KEYHOLD_LOG_LEVEL: 'debug' } });
    try {
      const tokens = [await signToken(rsa, serviceAccountClaims(debug.clock))];
      for (const [, make] of BAD_TOKENS) tokens.push(await make(debug.clock));
      for (const token of tokens) await callWith(debug, 'GET', '/v1/whoami', token);
      const logs = debug.logs.text();
      expect(logs).toContain('service-account token refused');
      for (const token of tokens) {
        expect(logs).not.toContain(token);
        // The signature is the part unique to each token; headers and claims may repeat across tokens.
        const signature = token.split('.')[2];
        if (signature !== undefined && signature.length > 16) expect(logs).not.toContain(signature);
      }
    } finally {
      await debug.close();
    }
  });

  it('refuses to start with a key set file that is not valid', async () => {
    const broken = new TempDir();
    const store = new TestStore(kind);
    try {
      broken.write('jwks.json', { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] });
      const path = broken.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], jwksFile: 'jwks.json' }]);
      await expect(buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: path }, store })).rejects.toBeInstanceOf(StartupError);
    } finally {
      await store.destroy();
      broken.remove();
    }
  });
});

describeEachDatabase('Kubernetes issuers with remote key sets over HTTP', (kind) => {
  let server: JsonServer;
  let base: string;
  let t: TestApp | undefined;
  beforeEach(async () => {
    server = new JsonServer();
    base = await server.listen();
  });
  afterEach(async () => {
    await t?.close();
    t = undefined;
    await server.close();
  });

  it('verifies tokens against a jwksUri, fetching the set once for many tokens', async () => {
    server.json('/openid/v1/jwks', keySet(rsa));
    const config = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], jwksUri: `${base}/openid/v1/jwks` }], 'uri.yaml');
    t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: config } });
    expect(server.fetchesOf('/openid/v1/jwks')).toBe(0);
    for (const name of ['one', 'two', 'three']) {
      const token = await signToken(rsa, serviceAccountClaims(t.clock, { sub: `system:serviceaccount:payments:${name}`, 'kubernetes.io': undefined }));
      expect((await callWith(t, 'GET', '/v1/whoami', token)).body.id).toBe(`k8s:payments:${name}`);
    }
    expect(server.fetchesOf('/openid/v1/jwks')).toBe(1);
  });

  it('verifies tokens against the jwks_uri of the issuer discovery document', async () => {
    server.json('/.well-known/openid-configuration', { issuer: base, jwks_uri: `${base}/openid/v1/jwks` });
    server.json('/openid/v1/jwks', keySet(rsa));
    const config = dir.authConfig([{ issuer: base, audiences: [AUDIENCE], discovery: true }], 'discovery.yaml');
    t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: config } });
    const response = await callWith(t, 'GET', '/v1/whoami', await signToken(rsa, serviceAccountClaims(t.clock, { iss: base })));
    expect(response.status).toBe(200);
    expect(response.body.attributes.issuer).toBe(base);
    expect(server.fetchesOf('/.well-known/openid-configuration')).toBe(1);
  });

  it('answers 503 KH_ERR_UNAVAILABLE when the key set cannot be fetched', async () => {
    server.route('/openid/v1/jwks', () => ({ status: 500, body: {} }));
    const config = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], jwksUri: `${base}/openid/v1/jwks` }], 'down.yaml');
    t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: config } });
    const response = await callWith(t, 'GET', '/v1/whoami', await signToken(rsa, serviceAccountClaims(t.clock)));
    expectProblem(response, 503, 'KH_ERR_UNAVAILABLE');
    expect(response.headers['retry-after']).toBeDefined();
  });

  it('answers 401, not 503, for a token whose kid the reachable key set lacks', async () => {
    server.json('/openid/v1/jwks', keySet(rsa));
    const config = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], jwksUri: `${base}/openid/v1/jwks` }], 'kid.yaml');
    t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: config } });
    const token = await signToken(rsa, serviceAccountClaims(t.clock), { kid: 'rsa-9' });
    expectProblem(await callWith(t, 'GET', '/v1/whoami', token), 401, 'KH_ERR_UNAUTHENTICATED');
  });
});

// The fetching rules in detail, at the authenticator, against local servers.

const silent = pino({ level: 'silent' });

function remoteIssuer(overrides: Partial<KubernetesIssuerConfig>): KubernetesIssuerConfig {
  return {
    issuer: ISSUER,
    audiences: [AUDIENCE],
    algorithms: ['RS256'],
    jwks: { kind: 'discovery' },
    caFile: undefined,
    bearerTokenFile: undefined,
    ...overrides,
  };
}

function credentials(token: string): Credentials {
  return { bearer: token, peerCertificate: undefined };
}

async function attempt(auth: KubernetesAuthenticator, token: string): Promise<Principal | Error> {
  return Promise.resolve()
    .then(() => auth.authenticate(credentials(token)))
    .catch((error: unknown) => error as Error);
}

describe('fetching remote key sets', () => {
  const servers: JsonServer[] = [];
  let clock: ManualClock;

  async function serve(tls = false): Promise<{ server: JsonServer; base: string }> {
    const server = new JsonServer(tls ? { cert: TEST_TLS_CERT, key: TEST_TLS_KEY } : undefined);
    servers.push(server);
    return { server, base: await server.listen() };
  }

  async function authenticator(issuer: KubernetesIssuerConfig): Promise<KubernetesAuthenticator> {
    return createKubernetesAuthenticator({ issuers: [issuer], clock, logger: silent });
  }

  beforeEach(() => {
    clock = new ManualClock();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  it('fetches nothing for a token of an unknown issuer or an algorithm the issuer does not use', async () => {
    const { server, base } = await serve();
    server.json('/jwks', keySet(rsa));
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` } }));
    await attempt(auth, await signToken(rsa, serviceAccountClaims(clock, { iss: 'https://other.example.com' })));
    await attempt(auth, await signToken(ec, serviceAccountClaims(clock)));
    expect(server.requests).toHaveLength(0);
  });

  it('does not fetch at start-up: an unreachable key set is a 503 on the first token, not a start-up failure', async () => {
    const { server, base } = await serve();
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` } }));
    expect(await attempt(auth, await signToken(rsa, serviceAccountClaims(clock)))).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
  });

  it('fetches over HTTPS trusting the configured CA file', async () => {
    const { server, base } = await serve(true);
    server.json('/jwks', keySet(rsa));
    const caFile = dir.write('ca.pem', TEST_TLS_CERT);
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` }, caFile }));
    expect(await attempt(auth, await signToken(rsa, serviceAccountClaims(clock)))).toMatchObject({ id: 'k8s:payments:api' });
  });

  it('refuses a server certificate the configured trust does not cover (503, and nothing read)', async () => {
    const { server, base } = await serve(true);
    server.json('/jwks', keySet(rsa));
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` } }));
    expect(await attempt(auth, await signToken(rsa, serviceAccountClaims(clock)))).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    expect(server.requests).toHaveLength(0);
  });

  it('sends the bearer token file to the key set URI', async () => {
    const { server, base } = await serve();
    server.json('/jwks', keySet(rsa));
    const bearerTokenFile = dir.write('sa-token', 'projected-token-1\n');
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` }, bearerTokenFile }));
    await attempt(auth, await signToken(rsa, serviceAccountClaims(clock)));
    expect(server.requests.map((request) => request.authorization)).toEqual(['Bearer projected-token-1']);
  });

  it('rereads the bearer token file on every fetch (the kubelet rotates it)', async () => {
    const { server, base } = await serve();
    server.json('/jwks', keySet(rsa));
    const bearerTokenFile = dir.write('rotating-token', 'first');
    const fetchJwks = boundedFetch({ ca: undefined, bearerTokenFile, bearerOrigin: base });
    const init = () => ({ method: 'GET' as const, redirect: 'manual' as const, headers: new Headers(), signal: AbortSignal.timeout(5000) });
    await fetchJwks(`${base}/jwks`, init());
    dir.write('rotating-token', 'second');
    await fetchJwks(`${base}/jwks`, init());
    expect(server.requests.map((request) => request.authorization)).toEqual(['Bearer first', 'Bearer second']);
  });

  it('sends the bearer token for discovery only to the issuer origin, not to a jwks_uri elsewhere', async () => {
    const issuerSide = await serve();
    const keysSide = await serve();
    keysSide.server.json('/keys', keySet(rsa));
    issuerSide.server.json('/.well-known/openid-configuration', { issuer: issuerSide.base, jwks_uri: `${keysSide.base}/keys` });
    const bearerTokenFile = dir.write('discovery-token', 'secret-sa-token');
    const auth = await authenticator(remoteIssuer({ issuer: issuerSide.base, bearerTokenFile }));
    const principal = await attempt(auth, await signToken(rsa, serviceAccountClaims(clock, { iss: issuerSide.base })));
    expect(principal).toMatchObject({ id: 'k8s:payments:api' });
    expect(issuerSide.server.requests.map((request) => request.authorization)).toEqual(['Bearer secret-sa-token']);
    expect(keysSide.server.requests.map((request) => request.authorization)).toEqual([undefined]);
  });

  it('refuses a discovery document that names another issuer (503, and its keys are never fetched)', async () => {
    const { server, base } = await serve();
    server.json('/.well-known/openid-configuration', { issuer: 'https://evil.example.com', jwks_uri: `${base}/jwks` });
    server.json('/jwks', keySet(rsa));
    const auth = await authenticator(remoteIssuer({ issuer: base }));
    expect(await attempt(auth, await signToken(rsa, serviceAccountClaims(clock, { iss: base })))).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    expect(server.fetchesOf('/jwks')).toBe(0);
  });

  it('refuses a jwks_uri over plain HTTP from an issuer served over HTTPS', async () => {
    const issuerSide = await serve(true);
    const keysSide = await serve();
    keysSide.server.json('/keys', keySet(rsa));
    issuerSide.server.json('/.well-known/openid-configuration', { issuer: issuerSide.base, jwks_uri: `${keysSide.base}/keys` });
    const caFile = dir.write('ca.pem', TEST_TLS_CERT);
    const auth = await authenticator(remoteIssuer({ issuer: issuerSide.base, caFile }));
    const outcome = await attempt(auth, await signToken(rsa, serviceAccountClaims(clock, { iss: issuerSide.base })));
    expect(outcome).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    expect(keysSide.server.requests).toHaveLength(0);
  });

  it('after a failed discovery, answers 503 without asking again until the retry delay has passed', async () => {
    const { server, base } = await serve();
    let up = false;
    server.route('/.well-known/openid-configuration', () =>
      up ? { status: 200, body: { issuer: base, jwks_uri: `${base}/jwks` } } : { status: 503, body: {} },
    );
    server.json('/jwks', keySet(rsa));
    const auth = await authenticator(remoteIssuer({ issuer: base }));
    const token = await signToken(rsa, serviceAccountClaims(clock, { iss: base }));
    expect(await attempt(auth, token)).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    up = true;
    expect(await attempt(auth, token)).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    expect(server.fetchesOf('/.well-known/openid-configuration')).toBe(1);
    clock.advance(DISCOVERY_RETRY_MS);
    expect(await attempt(auth, token)).toMatchObject({ id: 'k8s:payments:api' });
    expect(server.fetchesOf('/.well-known/openid-configuration')).toBe(2);
  });

  it('does not follow redirects', async () => {
    const { server, base } = await serve();
    server.route('/jwks', () => ({ status: 302, body: {} }));
    server.json('/elsewhere', keySet(rsa));
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` } }));
    expect(await attempt(auth, await signToken(rsa, serviceAccountClaims(clock)))).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    expect(server.fetchesOf('/elsewhere')).toBe(0);
  });

  it('refuses a key set larger than the fetch limit', async () => {
    const { server, base } = await serve();
    server.json('/jwks', { keys: [rsa.publicJwk], padding: 'x'.repeat(MAX_FETCH_BYTES) });
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` } }));
    expect(await attempt(auth, await signToken(rsa, serviceAccountClaims(clock)))).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
  });

  it('refuses a remote key set that is not JSON', async () => {
    const { server, base } = await serve();
    server.route('/jwks', () => ({ status: 200, body: '<html>' }));
    const auth = await authenticator(remoteIssuer({ jwks: { kind: 'uri', uri: `${base}/jwks` } }));
    expect(await attempt(auth, await signToken(rsa, serviceAccountClaims(clock)))).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
  });

  it('gives up on a server that never answers when the fetch signal aborts', async () => {
    const { server, base } = await serve();
    server.route('/hang', () => 'hang');
    const fetchJwks = boundedFetch({ ca: undefined, bearerTokenFile: undefined, bearerOrigin: base });
    const init = { method: 'GET' as const, redirect: 'manual' as const, headers: new Headers(), signal: AbortSignal.timeout(100) };
    await expect(fetchJwks(`${base}/hang`, init)).rejects.toThrow();
    expect(server.fetchesOf('/hang')).toBe(1);
  });
});
