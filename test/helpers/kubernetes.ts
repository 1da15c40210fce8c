import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { stringify } from 'yaml';
import type { Clock } from '../../src/lib/clock.js';
import type { KubernetesAlgorithm } from '../../src/identity/auth-config.js';

export const ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const AUDIENCE = 'keyhold';
export const NAMESPACE = 'payments';
export const SERVICE_ACCOUNT = 'api';
export const POD_NAME = 'api-7d9f8b6c5-x2k4q';
export const POD_UID = '3c0f9d2e-5b1a-4c8e-9f7d-2a6b1e4c8d90';

/** A signing key of a simulated issuer, with its public JWK as the issuer would publish it. */
export interface IssuerKey {
  readonly alg: KubernetesAlgorithm;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function issuerKey(alg: KubernetesAlgorithm, kid = `${alg.toLowerCase()}-key-1`): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, publicJwk };
}

export function keySet(...keys: IssuerKey[]): { keys: JWK[] } {
  return { keys: keys.map((key) => key.publicJwk) };
}

/** The claims the API server puts in a projected token, timed by `clock`; `overrides` replace or (undefined) drop. */
export function serviceAccountClaims(clock: Clock, overrides: Record<string, unknown> = {}): JWTPayload {
  const now = Math.floor(clock.now().getTime() / 1000);
  const claims: Record<string, unknown> = {
    aud: [AUDIENCE],
    exp: now + 3600,
    iat: now,
    nbf: now,
    iss: ISSUER,
    sub: `system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`,
    'kubernetes.io': {
      namespace: NAMESPACE,
      pod: { name: POD_NAME, uid: POD_UID },
      serviceaccount: { name: SERVICE_ACCOUNT, uid: 'a1b2c3d4-0000-4000-8000-000000000001' },
    },
    ...overrides,
  };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  return claims;
}

/** Signs claims as the issuer would: `alg` and `kid` of the key, plus any extra header parameters. */
export async function signToken(
  key: IssuerKey,
  claims: JWTPayload,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

const WEBCRYPTO_SIGNING: Record<KubernetesAlgorithm, Parameters<typeof crypto.subtle.sign>[0]> = {
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  ES256: { name: 'ECDSA', hash: 'SHA-256' },
  EdDSA: { name: 'Ed25519' },
};

/** Signs any header and payload as given, for tokens jose itself refuses to produce (unknown `crit`, …). */
export async function signRaw(key: IssuerKey, header: Record<string, unknown>, claims: unknown): Promise<string> {
  const input = `${base64url(header)}.${base64url(claims)}`;
  const signature = await crypto.subtle.sign(WEBCRYPTO_SIGNING[key.alg], key.privateKey, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

export function base64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** A folder for key sets and auth configs that a test deletes when done. */
export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), 'keyhold-k8s-'));

  write(name: string, content: unknown): string {
    const file = join(this.path, name);
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  }

  /** Writes a `KEYHOLD_AUTH_CONFIG` document with these Kubernetes issuers and returns its path. */
  authConfig(issuers: readonly Record<string, unknown>[], name = 'auth.yaml'): string {
    return this.write(name, stringify({ kubernetes: { issuers } }));
  }

  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** A JSON answer, `undefined` for 404, or `'hang'` to never answer (for timeouts). */
export type Route = (request: IncomingMessage) => { status: number; body: unknown } | 'hang' | undefined;

/** A local HTTP(S) server answering JSON by path; it records every request so tests can count fetches. */
export class JsonServer {
  readonly requests: { path: string; authorization: string | undefined }[] = [];
  readonly #routes = new Map<string, Route>();
  readonly #server: Server;
  readonly #scheme: 'http' | 'https';

  constructor(tls?: { cert: string; key: string }) {
    this.#scheme = tls === undefined ? 'http' : 'https';
    const handler = (request: IncomingMessage, response: ServerResponse): void => {
      const path = request.url ?? '/';
      this.requests.push({ path, authorization: request.headers.authorization });
      const answer = this.#routes.get(path)?.(request);
      if (answer === 'hang') return;
      if (answer === undefined) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(answer.status, { 'content-type': 'application/json' });
      response.end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body));
    };
    this.#server = tls === undefined ? createHttpServer(handler) : createHttpsServer(tls, handler);
  }

  route(path: string, route: Route): this {
    this.#routes.set(path, route);
    return this;
  }

  /** Serves a fixed JSON body with 200 at `path`. */
  json(path: string, body: unknown): this {
    return this.route(path, () => ({ status: 200, body }));
  }

  fetchesOf(path: string): number {
    return this.requests.filter((request) => request.path === path).length;
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    return `${this.#scheme}://127.0.0.1:${port}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost (P-256, valid 2020–2120), for testing fetches over HTTPS with
 * a custom CA. Test material only: its key is public.
 */
export const TEST_TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBnTCCAUKgAwIBAgIBATAKBggqhkjOPQQDAjAcMRowGAYDVQQDDBFrZXlob2xk
LXRlc3QtandrczAgFw0yMDAxMDEwMDAwMDBaGA8yMTIwMDEwMTAwMDAwMFowHDEa
MBgGA1UEAwwRa2V5aG9sZC10ZXN0LWp3a3MwWTATBgcqhkjOPQIBBggqhkjOPQMB
BwNCAASwsJuuDlkwj4fHcnO+SvK0ZFGRsWwIatvUssmv1nftVwLOlDzE6VhYJaPD
TbgW+QE5RtqWL4QXMwNU6I8aqICjo3MwcTAaBgNVHREEEzARhwR/AAABgglsb2Nh
bGhvc3QwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAoQwEwYDVR0lBAww
CgYIKwYBBQUHAwEwHQYDVR0OBBYEFELObJ7QFWMVkvaP3l+kf9OnfyhnMAoGCCqG
SM49BAMCA0kAMEYCIQCAU+h72JwjU2r6hj01cZqK9FmYvi1XWLRd4iW29S44WQIh
AMrRSMgK9GOdfhVzoCFltpzPPtFEij0QDmVYer7SFzWk
-----END CERTIFICATE-----
`;

export const TEST_TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5H9T5VrTX47R2ShU
7/B0e7kBz1TQt4lkmFGbnBclZ1GhRANCAASwsJuuDlkwj4fHcnO+SvK0ZFGRsWwI
atvUssmv1nftVwLOlDzE6VhYJaPDTbgW+QE5RtqWL4QXMwNU6I8aqICj
-----END PRIVATE KEY-----
`;
