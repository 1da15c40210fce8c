import { generateKeyPairSync } from 'node:crypto';
import { Writable } from 'node:stream';
import { exportSPKI, generateKeyPair, SignJWT, type JWK } from 'jose';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartupError } from '../../../src/errors.js';
import type { KubernetesAlgorithm, KubernetesIssuerConfig } from '../../../src/identity/auth-config.js';
import { AuthenticationFailedError, type AuthenticationFailure, type Credentials } from '../../../src/identity/authenticator.js';
import { createKubernetesAuthenticator, type KubernetesAuthenticator } from '../../../src/identity/kubernetes.js';
import type { Principal } from '../../../src/context/principal.js';
import { ManualClock } from '../../helpers/clock.js';
import {
  AUDIENCE,
  base64url,
  ISSUER,
  issuerKey,
  keySet,
  NAMESPACE,
  POD_NAME,
  POD_UID,
  SERVICE_ACCOUNT,
  serviceAccountClaims,
  signRaw,
  signToken,
  TempDir,
  type IssuerKey,
} from '../../helpers/kubernetes.js';

class Lines extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

const dir = new TempDir();
let rsa: IssuerKey;
let ec: IssuerKey;
let ed: IssuerKey;
/** Keys the issuer never published. */
let attacker: IssuerKey;
let jwksPath: string;

beforeAll(async () => {
  [rsa, ec, ed, attacker] = await Promise.all([
    issuerKey('RS256', 'rsa-1'),
    issuerKey('ES256', 'ec-1'),
    issuerKey('EdDSA', 'ed-1'),
    issuerKey('RS256', 'attacker-1'),
  ]);
  jwksPath = dir.write('jwks.json', keySet(rsa, ec, ed));
});
afterAll(() => dir.remove());

function issuerConfig(overrides: Partial<KubernetesIssuerConfig> = {}): KubernetesIssuerConfig {
  return {
    issuer: ISSUER,
    audiences: [AUDIENCE],
    algorithms: ['RS256'],
    jwks: { kind: 'file', path: jwksPath },
    caFile: undefined,
    bearerTokenFile: undefined,
    ...overrides,
  };
}

interface Fixture {
  readonly auth: KubernetesAuthenticator;
  readonly clock: ManualClock;
  readonly logs: Lines;
}

async function fixture(
  issuers: KubernetesIssuerConfig[] = [issuerConfig()],
  options: { maxCachedTokens?: number } = {},
): Promise<Fixture> {
  const clock = new ManualClock();
  const logs = new Lines();
  const logger = pino({ level: 'debug' }, logs);
  const auth = await createKubernetesAuthenticator({ issuers, clock, logger, ...options });
  return { auth, clock, logs };
}

function bearer(token: string | undefined): Credentials {
  return { bearer: token, peerCertificate: undefined };
}

/** The outcome as a promise, whether the authenticator answered synchronously, asynchronously, or threw. */
function outcome(auth: KubernetesAuthenticator, token: string): Promise<Principal> {
  return Promise.resolve().then(() => auth.authenticate(bearer(token)));
}

async function expectRefused(auth: KubernetesAuthenticator, token: string, reason: AuthenticationFailure): Promise<void> {
  const error = await outcome(auth, token).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AuthenticationFailedError);
  // Every refusal looks the same to the caller; only the logged reason differs.
  expect(error).toMatchObject({ code: 'KH_ERR_UNAUTHENTICATED', status: 401, message: 'The credentials are not valid', reason });
}

function algorithms(...list: KubernetesAlgorithm[]): Partial<KubernetesIssuerConfig> {
  return { algorithms: list };
}

describe('which credentials the Kubernetes authenticator claims', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await fixture();
  });

  it('claims a bearer shaped like a compact JWS', async () => {
    expect(f.auth.applies(bearer(await signToken(rsa, serviceAccountClaims(f.clock))))).toBe(true);
  });

  it('claims an unsigned (alg none) token, so that it is refused here', () => {
    const token = `${base64url({ alg: 'none' })}.${base64url(serviceAccountClaims(f.clock))}.`;
    expect(f.auth.applies(bearer(token))).toBe(true);
  });

  it.each([
    ['an API token', `kh_${'a'.repeat(43)}`],
    ['two segments', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0'],
    ['four segments', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln.c2ln'],
    ['a header that is not a JSON object', 'WyJhIl0.eyJzdWIiOiJ4In0.c2ln'],
    ['standard base64 characters', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0+.c2ln'],
  ])('leaves %s to the next authenticator', (_name, token) => {
    expect(f.auth.applies(bearer(token))).toBe(false);
  });

  it('does not claim a request without a bearer', () => {
    expect(f.auth.applies(bearer(undefined))).toBe(false);
  });
});

describe('accepting service-account tokens', () => {
  it('turns a good RS256 token into a frozen workload principal', async () => {
    const { auth, clock } = await fixture();
    const principal = await outcome(auth, await signToken(rsa, serviceAccountClaims(clock)));
    expect(principal).toEqual({
      id: `k8s:${NAMESPACE}:${SERVICE_ACCOUNT}`,
      type: 'kubernetes',
      admin: false,
      attributes: { namespace: NAMESPACE, serviceAccount: SERVICE_ACCOUNT, podName: POD_NAME, podUid: POD_UID, issuer: ISSUER },
    });
    expect(Object.isFrozen(principal)).toBe(true);
    expect(Object.isFrozen(principal.attributes)).toBe(true);
  });

  it('accepts a good ES256 token when the issuer is configured for ES256', async () => {
    const { auth, clock } = await fixture([issuerConfig(algorithms('ES256'))]);
    expect((await outcome(auth, await signToken(ec, serviceAccountClaims(clock)))).id).toBe('k8s:payments:api');
  });

  it('accepts a good EdDSA token when the issuer is configured for EdDSA', async () => {
    const { auth, clock } = await fixture([issuerConfig(algorithms('EdDSA'))]);
    expect((await outcome(auth, await signToken(ed, serviceAccountClaims(clock)))).id).toBe('k8s:payments:api');
  });

  it('accepts each configured algorithm of an issuer that has several', async () => {
    const { auth, clock } = await fixture([issuerConfig(algorithms('RS256', 'ES256', 'EdDSA'))]);
    for (const key of [rsa, ec, ed]) {
      expect((await outcome(auth, await signToken(key, serviceAccountClaims(clock)))).type).toBe('kubernetes');
    }
  });

  it('accepts a token whose aud includes one configured audience among others', async () => {
    const { auth, clock } = await fixture([issuerConfig({ audiences: ['vault', AUDIENCE] })]);
    const token = await signToken(rsa, serviceAccountClaims(clock, { aud: ['https://kubernetes.default.svc', AUDIENCE] }));
    expect((await outcome(auth, token)).id).toBe('k8s:payments:api');
  });

  it('accepts an aud given as a single string', async () => {
    const { auth, clock } = await fixture();
    expect((await outcome(auth, await signToken(rsa, serviceAccountClaims(clock, { aud: AUDIENCE })))).id).toBe('k8s:payments:api');
  });

  it('picks the issuer by iss among several, and names it in the principal', async () => {
    const other = dir.write('other-jwks.json', keySet(ec));
    const { auth, clock } = await fixture([
      issuerConfig(),
      issuerConfig({ issuer: 'https://oidc.example.com/cluster-b', jwks: { kind: 'file', path: other }, algorithms: ['ES256'] }),
    ]);
    const token = await signToken(ec, serviceAccountClaims(clock, { iss: 'https://oidc.example.com/cluster-b' }));
    expect((await outcome(auth, token)).attributes.issuer).toBe('https://oidc.example.com/cluster-b');
  });

  it('accepts a service-account name that is a DNS-1123 subdomain', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(
      rsa,
      serviceAccountClaims(clock, { sub: 'system:serviceaccount:kube-system:cert-manager.v1', 'kubernetes.io': undefined }),
    );
    expect(await outcome(auth, token)).toEqual({
      id: 'k8s:kube-system:cert-manager.v1',
      type: 'kubernetes',
      admin: false,
      attributes: { namespace: 'kube-system', serviceAccount: 'cert-manager.v1', issuer: ISSUER },
    });
  });

  it('leaves podName and podUid out when the kubernetes.io claim has no pod', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock, { 'kubernetes.io': { namespace: NAMESPACE } }));
    expect((await outcome(auth, token)).attributes).toEqual({ namespace: NAMESPACE, serviceAccount: SERVICE_ACCOUNT, issuer: ISSUER });
  });

  it('leaves podName and podUid out when they are not strings', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock, { 'kubernetes.io': { pod: { name: 7, uid: ['x'] } } }));
    expect((await outcome(auth, token)).attributes).toEqual({ namespace: NAMESPACE, serviceAccount: SERVICE_ACCOUNT, issuer: ISSUER });
  });

  it('accepts a token expired by less than the 60-second leeway', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock, { exp: Math.floor(clock.now().getTime() / 1000) - 59 }));
    expect((await outcome(auth, token)).id).toBe('k8s:payments:api');
  });

  it('accepts a token whose nbf is less than 60 seconds ahead', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock, { nbf: Math.floor(clock.now().getTime() / 1000) + 59 }));
    expect((await outcome(auth, token)).id).toBe('k8s:payments:api');
  });
});

describe('refusing tokens', () => {
  it('accepts what signRaw signs, so the refusals below are about their content', async () => {
    const { auth, clock } = await fixture();
    const token = await signRaw(rsa, { alg: 'RS256', kid: rsa.kid }, serviceAccountClaims(clock));
    expect((await outcome(auth, token)).id).toBe('k8s:payments:api');
  });

  let f: Fixture;
  beforeAll(async () => {
    f = await fixture();
  });

  const now = (): number => Math.floor(f.clock.now().getTime() / 1000);

  it('refuses alg none', async () => {
    const token = `${base64url({ alg: 'none', kid: rsa.kid })}.${base64url(serviceAccountClaims(f.clock))}.`;
    await expectRefused(f.auth, token, 'bad-algorithm');
  });

  it('refuses HS256 signed with the RSA public key as the HMAC secret (algorithm confusion)', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const token = await new SignJWT(serviceAccountClaims(f.clock))
      .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
      .sign(new TextEncoder().encode(pem));
    await expectRefused(f.auth, token, 'bad-algorithm');
  });

  it('refuses HS256 signed with the public JWK as the HMAC secret', async () => {
    const token = await new SignJWT(serviceAccountClaims(f.clock))
      .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
      .sign(new TextEncoder().encode(JSON.stringify(rsa.publicJwk)));
    await expectRefused(f.auth, token, 'bad-algorithm');
  });

  it('refuses an algorithm jose supports but the issuer is not configured for (ES256 where only RS256 is)', async () => {
    await expectRefused(f.auth, await signToken(ec, serviceAccountClaims(f.clock)), 'bad-algorithm');
  });

  it('refuses PS256, which Kubernetes issuers are never configured for', async () => {
    const { privateKey } = await generateKeyPair('PS256');
    const token = await new SignJWT(serviceAccountClaims(f.clock)).setProtectedHeader({ alg: 'PS256', kid: rsa.kid }).sign(privateKey);
    await expectRefused(f.auth, token, 'bad-algorithm');
  });

  it('refuses an issuer that is not configured', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { iss: 'https://evil.example.com' })), 'bad-issuer');
  });

  it('compares iss byte for byte (a trailing slash is another issuer)', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { iss: `${ISSUER}/` })), 'bad-issuer');
  });

  it('refuses a token without iss', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { iss: undefined })), 'bad-issuer');
  });

  it('refuses a token for another audience', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { aud: ['vault'] })), 'bad-audience');
  });

  it('refuses a token without aud', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { aud: undefined })), 'bad-audience');
  });

  it('refuses a token expired by more than the 60-second leeway', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { exp: now() - 61 })), 'expired');
  });

  it('refuses a token without exp', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { exp: undefined })), 'malformed');
  });

  it('refuses a token whose exp is not a number', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { exp: 'tomorrow' })), 'malformed');
  });

  it('refuses a token whose nbf is more than 60 seconds ahead', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { nbf: now() + 61 })), 'not-yet-valid');
  });

  it.each([
    ['a node', 'system:node:ip-10-0-0-1'],
    ['a user', 'alice@example.com'],
    ['an empty namespace', 'system:serviceaccount::api'],
    ['an upper-case namespace', 'system:serviceaccount:Payments:api'],
    ['a namespace with a dot', 'system:serviceaccount:pay.ments:api'],
    ['a namespace of 64 characters', `system:serviceaccount:${'a'.repeat(64)}:api`],
    ['a name with an underscore', 'system:serviceaccount:payments:api_v2'],
    ['a name ending in a hyphen', 'system:serviceaccount:payments:api-'],
    ['an extra segment', 'system:serviceaccount:payments:api:extra'],
    ['a glob', 'system:serviceaccount:payments:*'],
    ['a prefix', 'x-system:serviceaccount:payments:api'],
  ])('refuses a subject that is %s', async (_name, sub) => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { sub, 'kubernetes.io': undefined })), 'bad-subject');
  });

  it('refuses a token without sub', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock, { sub: undefined })), 'bad-subject');
  });

  it('refuses a kubernetes.io namespace that disagrees with sub', async () => {
    const token = await signToken(rsa, serviceAccountClaims(f.clock, { 'kubernetes.io': { namespace: 'kube-system' } }));
    await expectRefused(f.auth, token, 'bad-subject');
  });

  it('refuses a kubernetes.io service-account name that disagrees with sub', async () => {
    const token = await signToken(rsa, serviceAccountClaims(f.clock, { 'kubernetes.io': { serviceaccount: { name: 'admin' } } }));
    await expectRefused(f.auth, token, 'bad-subject');
  });

  it('refuses a kid the issuer never published', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock), { kid: 'rsa-2' }), 'unknown-key');
  });

  it.each([
    ['a path', '../../etc/passwd'],
    ['SQL', "' OR 1=1--"],
    ['a NUL', 'rsa-1\u0000'],
    ['a newline', 'rsa-1\nforged log line'],
    ['more than 128 characters', 'k'.repeat(129)],
  ])('refuses a kid with %s', async (_name, kid) => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock), { kid }), 'unknown-key');
  });

  it('refuses a kid that is not a string', async () => {
    await expectRefused(f.auth, await signToken(rsa, serviceAccountClaims(f.clock), { kid: 1 }), 'unknown-key');
  });

  it('ignores an embedded jwk: an attacker key embedded in the header verifies nothing', async () => {
    const token = await signToken(attacker, serviceAccountClaims(f.clock), { jwk: attacker.publicJwk });
    await expectRefused(f.auth, token, 'unknown-key');
  });

  it('ignores an embedded jwk even when the token names a published kid', async () => {
    const token = await signToken(attacker, serviceAccountClaims(f.clock), { kid: rsa.kid, jwk: attacker.publicJwk });
    await expectRefused(f.auth, token, 'bad-signature');
  });

  it('ignores jku, x5u and x5c: keys come only from the configured key set', async () => {
    // A fetch of these (port 9 discards) would fail as a 503; a 401 for the signature shows nothing was fetched.
    const header = { kid: rsa.kid, jku: 'http://127.0.0.1:9/jwks.json', x5u: 'http://127.0.0.1:9/cert.pem', x5c: ['MIIB'] };
    await expectRefused(f.auth, await signToken(attacker, serviceAccountClaims(f.clock), header), 'bad-signature');
  });

  it('refuses a token signed by a key that is not the one its kid names', async () => {
    await expectRefused(f.auth, await signToken(attacker, serviceAccountClaims(f.clock), { kid: rsa.kid }), 'bad-signature');
  });

  it('refuses a token whose claims were changed after signing', async () => {
    const [header, , signature] = (await signToken(rsa, serviceAccountClaims(f.clock))).split('.');
    const forged = base64url(serviceAccountClaims(f.clock, { sub: 'system:serviceaccount:kube-system:admin', 'kubernetes.io': undefined }));
    await expectRefused(f.auth, `${header}.${forged}.${signature}`, 'bad-signature');
  });

  it('refuses an empty signature on an RS256 header', async () => {
    const [header, payload] = (await signToken(rsa, serviceAccountClaims(f.clock))).split('.');
    await expectRefused(f.auth, `${header}.${payload}.`, 'bad-signature');
  });

  it('refuses an unknown critical header parameter (RFC 7515 §4.1.11)', async () => {
    const header = { alg: 'RS256', kid: rsa.kid, crit: ['exp-magic'], 'exp-magic': true };
    const token = await signRaw(rsa, header, serviceAccountClaims(f.clock));
    await expectRefused(f.auth, token, 'malformed');
  });

  it.each([
    ['a header that is not JSON', `${base64url('{"alg":')}.${base64url({})}.c2ln`, 'malformed'],
    ['a payload that is not JSON', `${base64url({ alg: 'RS256' })}.${base64url('not json')}.c2ln`, 'malformed'],
    ['a payload that is a JSON array', `${base64url({ alg: 'RS256' })}.${base64url([1])}.c2ln`, 'malformed'],
    ['a header without alg', `${base64url({ kid: 'rsa-1' })}.${base64url({ iss: ISSUER })}.c2ln`, 'bad-algorithm'],
  ] as const)('refuses %s', async (_name, token, reason) => {
    await expectRefused(f.auth, token, reason);
  });

  it('refuses a token longer than any projected service-account token', async () => {
    const token = await signToken(rsa, serviceAccountClaims(f.clock, { padding: 'x'.repeat(9000) }));
    await expectRefused(f.auth, token, 'malformed');
  });

  it('refuses a call without a bearer as missing', async () => {
    expect(() => f.auth.authenticate(bearer(undefined))).toThrow(AuthenticationFailedError);
  });

  it('never logs the token, accepted or refused', async () => {
    const { auth, clock, logs } = await fixture();
    const good = await signToken(rsa, serviceAccountClaims(clock));
    const bad = await signToken(rsa, serviceAccountClaims(clock, { aud: ['vault'] }));
    const forged = await signToken(attacker, serviceAccountClaims(clock), { kid: rsa.kid });
    await outcome(auth, good);
    await outcome(auth, bad).catch(() => undefined);
    await outcome(auth, forged).catch(() => undefined);
    expect(logs.text).toContain('bad-audience');
    for (const token of [good, bad, forged]) {
      for (const part of token.split('.')) expect(logs.text).not.toContain(part);
    }
  });
});

describe('the verified-token cache', () => {
  it('answers a token it verified synchronously, with the same frozen principal', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock));
    const first = await outcome(auth, token);
    const second = auth.authenticate(bearer(token));
    expect(second).not.toBeInstanceOf(Promise);
    expect(second).toBe(first);
  });

  it('verifies a token seen for the first time asynchronously', async () => {
    const { auth, clock } = await fixture();
    const pending = auth.authenticate(bearer(await signToken(rsa, serviceAccountClaims(clock))));
    expect(pending).toBeInstanceOf(Promise);
    await pending;
  });

  it('shares one verification among concurrent requests with the same new token', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock));
    const first = auth.authenticate(bearer(token));
    expect(auth.authenticate(bearer(token))).toBe(first);
    await first;
  });

  it('does not remember refused tokens', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock, { aud: ['vault'] }));
    await expectRefused(auth, token, 'bad-audience');
    const again = auth.authenticate(bearer(token));
    expect(again).toBeInstanceOf(Promise);
    await expect(again).rejects.toBeInstanceOf(AuthenticationFailedError);
  });

  it('stops answering from memory at exp; past the leeway the token is refused as expired', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock, { exp: Math.floor(clock.now().getTime() / 1000) + 600 }));
    await outcome(auth, token);
    clock.advance(599_000);
    expect(auth.authenticate(bearer(token))).not.toBeInstanceOf(Promise);
    clock.advance(1000);
    const atExp = auth.authenticate(bearer(token));
    expect(atExp).toBeInstanceOf(Promise);
    await atExp; // Within the leeway: verified afresh, and accepted, but not remembered past exp.
    clock.advance(61_000);
    await expectRefused(auth, token, 'expired');
  });

  it('checks nbf on a hit: a clock set back before nbf refuses a remembered token', async () => {
    const { auth, clock } = await fixture();
    const token = await signToken(rsa, serviceAccountClaims(clock));
    await outcome(auth, token);
    clock.advance(-61_000);
    await expectRefused(auth, token, 'not-yet-valid');
  });

  it('holds at most maxCachedTokens, dropping the least recently used', async () => {
    const { auth, clock } = await fixture([issuerConfig()], { maxCachedTokens: 2 });
    const [a, b, c] = await Promise.all(
      ['one', 'two', 'three'].map((name) =>
        signToken(rsa, serviceAccountClaims(clock, { sub: `system:serviceaccount:${NAMESPACE}:${name}`, 'kubernetes.io': undefined })),
      ),
    );
    await outcome(auth, a!);
    await outcome(auth, b!);
    expect(auth.authenticate(bearer(a!))).not.toBeInstanceOf(Promise); // a is now the most recently used
    await outcome(auth, c!);
    expect(auth.authenticate(bearer(a!))).not.toBeInstanceOf(Promise);
    expect(auth.authenticate(bearer(c!))).not.toBeInstanceOf(Promise);
    const evicted = auth.authenticate(bearer(b!));
    expect(evicted).toBeInstanceOf(Promise);
    expect((await evicted).id).toBe('k8s:payments:two');
  });
});

describe('reading key set files at start-up', () => {
  async function startupError(issuer: KubernetesIssuerConfig): Promise<unknown> {
    return fixture([issuer]).then(
      () => undefined,
      (error: unknown) => error,
    );
  }

  it('fails start-up when the key set file is missing', async () => {
    const error = await startupError(issuerConfig({ jwks: { kind: 'file', path: `${dir.path}/absent.json` } }));
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toMatch(/ENOENT/);
  });

  it('fails start-up when the key set file is not JSON', async () => {
    const error = await startupError(issuerConfig({ jwks: { kind: 'file', path: dir.write('bad.json', '{"keys": [') } }));
    expect(error).toBeInstanceOf(StartupError);
  });

  it.each([
    ['not an object', [1, 2]],
    ['without keys', { key: [] }],
    ['with a key that is not an object', { keys: ['rsa'] }],
  ])('fails start-up when the key set is %s', async (_name, content) => {
    const error = await startupError(issuerConfig({ jwks: { kind: 'file', path: dir.write('shape.json', content) } }));
    expect(error).toBeInstanceOf(StartupError);
  });

  it('fails start-up when the key set holds a private key', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = { ...(privateKey.export({ format: 'jwk' }) as JWK), kid: 'private' };
    const error = await startupError(
      issuerConfig({ algorithms: ['ES256'], jwks: { kind: 'file', path: dir.write('private.json', { keys: [jwk] }) } }),
    );
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toMatch(/private or symmetric/);
  });

  it('fails start-up when the key set holds a symmetric key', async () => {
    const path = dir.write('oct.json', { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' }, rsa.publicJwk] });
    expect(await startupError(issuerConfig({ jwks: { kind: 'file', path } }))).toBeInstanceOf(StartupError);
  });

  it('fails start-up when no key suits the configured algorithms', async () => {
    const path = dir.write('ec-only.json', keySet(ec));
    const error = await startupError(issuerConfig({ jwks: { kind: 'file', path } }));
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toMatch(/no key usable for RS256/);
  });

  it('fails start-up on an RSA key shorter than 2048 bits', async () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const path = dir.write('short.json', { keys: [{ ...(publicKey.export({ format: 'jwk' }) as JWK), kid: 'short' }] });
    const error = await startupError(issuerConfig({ jwks: { kind: 'file', path } }));
    expect((error as Error).message).toMatch(/1024-bit RSA key/);
  });

  it('fails start-up on a key that does not import', async () => {
    const path = dir.write('broken.json', { keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', kid: 'broken' }] });
    const error = await startupError(issuerConfig({ algorithms: ['ES256'], jwks: { kind: 'file', path } }));
    expect((error as Error).message).toMatch(/not a valid ES256 key/);
  });

  it('fails start-up when the CA file of a remote key set is missing', async () => {
    const error = await startupError(
      issuerConfig({ jwks: { kind: 'uri', uri: 'https://127.0.0.1:9/jwks' }, caFile: `${dir.path}/absent-ca.pem` }),
    );
    expect(error).toBeInstanceOf(StartupError);
  });

  it('fails start-up when the bearer token file of a remote key set is missing', async () => {
    const error = await startupError(
      issuerConfig({ jwks: { kind: 'uri', uri: 'https://127.0.0.1:9/jwks' }, bearerTokenFile: `${dir.path}/absent-token` }),
    );
    expect(error).toBeInstanceOf(StartupError);
  });

  it('fails start-up when discovery is configured for an issuer that is not a URL', async () => {
    const error = await startupError(issuerConfig({ issuer: 'kubernetes/serviceaccount', jwks: { kind: 'discovery' } }));
    expect(error).toBeInstanceOf(StartupError);
  });

  it('keys with other algorithms in the same set are tolerated', async () => {
    const { auth, clock } = await fixture([issuerConfig()]);
    expect((await outcome(auth, await signToken(rsa, serviceAccountClaims(clock)))).type).toBe('kubernetes');
  });
});
