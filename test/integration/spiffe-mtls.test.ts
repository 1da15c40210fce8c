import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  buildTestApp,
  describeEachDatabase,
  TEST_ADMIN_TOKEN,
  type ApiResponse,
  type TestApp,
} from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';
import {
  createCertificateAuthority,
  expiredValidity,
  PemDirectory,
  type CertificateAuthority,
  type CertificateProfile,
  type IssuedCertificate,
} from '../helpers/pki.js';

/**
 * Real TLS: `app.inject` never opens a socket, so these tests listen on a port and call it with node:https. Node's
 * TLS stack verifies the client chain; the SPIFFE authenticator applies the X509-SVID leaf rules on top.
 */

const WORKLOAD = 'spiffe://example.org/ns/payments/sa/api';
const NEW_KEY = { name: 'spiffe-test-key' };

/** Each is refused with the same 401; the unit tests check which rule refuses it. */
const REJECTED: ReadonlyArray<readonly [string, 'stranger' | 'trusted', CertificateProfile]> = [
  ['a certificate from a CA outside the client CA file', 'stranger', { uris: [WORKLOAD] }],
  ['an expired certificate', 'trusted', { uris: [WORKLOAD], ...expiredValidity() }],
  ['two URI SANs', 'trusted', { uris: [WORKLOAD, 'spiffe://example.org/ns/payments/sa/other'] }],
  ['a URI SAN that is not spiffe://', 'trusted', { uris: ['https://example.org/ns/payments/sa/api'] }],
  ['a CA certificate as the leaf (basicConstraints cA true)', 'trusted', { uris: [WORKLOAD], ca: true }],
  ['keyCertSign in the key usage of a leaf', 'trusted', { uris: [WORKLOAD], keyUsage: ['digitalSignature', 'keyCertSign'] }],
  ['a trust domain that is not configured', 'trusted', { uris: ['spiffe://other.org/ns/payments/sa/api'] }],
  ['a CN that looks like a SPIFFE ID, without a URI SAN', 'trusted', { subject: `CN=${WORKLOAD}` }],
];

interface Pki {
  readonly dir: PemDirectory;
  readonly serverCa: CertificateAuthority;
  readonly env: Record<string, string>;
  readonly goodEc: IssuedCertificate;
  readonly goodRsa: IssuedCertificate;
  readonly rejected: ReadonlyMap<string, IssuedCertificate>;
}

let pki: Pki;

beforeAll(async () => {
  const dir = new PemDirectory();
  // The client CA file is a bundle of two roots, as a trust domain with an RSA and an EC root would have.
  const [serverCa, ecCa, rsaCa, strangerCa] = await Promise.all([
    createCertificateAuthority('Keyhold test server CA'),
    createCertificateAuthority('example.org EC root', 'ec', 'example.org'),
    createCertificateAuthority('example.org RSA root', 'rsa', 'example.org'),
    createCertificateAuthority('Untrusted root', 'ec', 'example.org'),
  ]);
  const [server, goodEc, goodRsa, ...rejected] = await Promise.all([
    serverCa.issue({ subject: 'CN=localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'] }),
    ecCa.issue({ uris: [WORKLOAD] }),
    rsaCa.issue({ uris: [WORKLOAD], key: 'rsa' }),
    ...REJECTED.map(([, issuer, profile]) => (issuer === 'stranger' ? strangerCa : ecCa).issue(profile)),
  ]);
  pki = {
    dir,
    serverCa,
    env: {
      KEYHOLD_TLS_CERT_FILE: dir.write('server.pem', server.certPem),
      KEYHOLD_TLS_KEY_FILE: dir.write('server-key.pem', server.keyPem),
      KEYHOLD_TLS_CLIENT_CA_FILE: dir.write('client-ca.pem', ecCa.certPem, rsaCa.certPem),
      KEYHOLD_AUTH_CONFIG: dir.write('auth.yaml', 'spiffe:\n  trustDomains: [example.org]\n'),
    },
    goodEc,
    goodRsa,
    rejected: new Map(REJECTED.map(([name], index) => [name, rejected[index] as IssuedCertificate])),
  };
});

afterAll(() => pki.dir.remove());

interface Call {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  readonly client?: IssuedCertificate;
  readonly bearer?: string;
}

/** One request on its own connection (no agent), so each certificate gets its own handshake. */
function call(port: number, { method, path, body, client, bearer }: Call): Promise<ApiResponse> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        ca: pki.serverCa.certPem,
        ...(client === undefined ? {} : { cert: client.certPem, key: client.keyPem }),
        headers: {
          ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }),
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: parsed, text });
        });
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}

async function listen(t: TestApp): Promise<number> {
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  return (t.app.server.address() as AddressInfo).port;
}

describeEachDatabase('SPIFFE X.509 SVIDs over mutual TLS', (kind) => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await buildTestApp(kind, { env: pki.env });
    port = await listen(t);
  });
  afterAll(async () => t.close());

  it('an EC P-256 SVID authenticates: creating a key is forbidden (no grants), not unauthenticated', async () => {
    const response = await call(port, { method: 'POST', path: '/v1/keys', body: NEW_KEY, client: pki.goodEc });
    expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
  });

  it('an RSA SVID from the second root of the bundle authenticates', async () => {
    const response = await call(port, { method: 'POST', path: '/v1/keys', body: NEW_KEY, client: pki.goodRsa });
    expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
  });

  it.each(REJECTED.map(([name]) => name))('%s → 401', async (name) => {
    const client = pki.rejected.get(name);
    const response = await call(port, { method: 'POST', path: '/v1/keys', body: NEW_KEY, client });
    expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
    expect(response.body.detail).toBe('The credentials are not valid');
  });

  it('a rejected certificate is not rescued by the admin bearer token: the certificate decides', async () => {
    const stranger = pki.rejected.get(REJECTED[0]?.[0] as string);
    const response = await call(port, { method: 'GET', path: '/v1/keys', client: stranger, bearer: TEST_ADMIN_TOKEN });
    expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
  });

  it('no certificate and no bearer token → 401', async () => {
    const response = await call(port, { method: 'GET', path: '/v1/keys' });
    expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
  });

  it('no certificate but the admin bearer token → 200', async () => {
    const response = await call(port, { method: 'GET', path: '/v1/keys', bearer: TEST_ADMIN_TOKEN });
    expect(response.status).toBe(200);
  });

  it('public routes need neither', async () => {
    expect((await call(port, { method: 'GET', path: '/healthz' })).status).toBe(200);
  });
});

describeEachDatabase('TLS without a client CA', (kind) => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await buildTestApp(kind, {
      env: { KEYHOLD_TLS_CERT_FILE: pki.env.KEYHOLD_TLS_CERT_FILE, KEYHOLD_TLS_KEY_FILE: pki.env.KEYHOLD_TLS_KEY_FILE },
    });
    port = await listen(t);
  });
  afterAll(async () => t.close());

  it('the admin bearer token works over HTTPS', async () => {
    expect((await call(port, { method: 'GET', path: '/v1/keys', bearer: TEST_ADMIN_TOKEN })).status).toBe(200);
  });

  it('no bearer token → 401', async () => {
    expectProblem(await call(port, { method: 'GET', path: '/v1/keys' }), 401, 'KH_ERR_UNAUTHENTICATED');
  });

  it('an SVID the client offers is never asked for, so it authenticates nobody', async () => {
    const response = await call(port, { method: 'POST', path: '/v1/keys', body: NEW_KEY, client: pki.goodEc });
    expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
  });
});
