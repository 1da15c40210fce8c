import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseCiphertext } from '../../../src/crypto/ciphertext-format.js';
import { buildTestApp, changesApplied, DATABASE_KINDS, type TestApp } from '../../../test/helpers/app.js';
import { AUDIENCE, ISSUER, issuerKey, keySet, serviceAccountClaims, signToken, TempDir, type IssuerKey } from '../../../test/helpers/kubernetes.js';
import { decodeHeader } from '../../src/format/header.js';
import { encodeWrappedKey } from '../../src/keys/wrapped-key.js';
import { createClient, kubernetesServiceAccount, ServiceError, type KeyholdClient } from '../../src/index.js';

/**
 * Revocation reaching workloads whose grant is conditioned on the encryption context, as the README's policy and
 * the example app's shipped policy are. Such a grant allows no request without its context, so an event filter that
 * asked "may this principal use the key?" without a context sent these workloads nothing, and their SDKs kept
 * using cached data keys until `maxAgeMs` (5 minutes by default).
 *
 * Each test runs the real SDK against a real HTTP server, authenticated as a Kubernetes service account, with the
 * policy taken verbatim from the README or the example. It measures how long after the admin's call the running SDK
 * refuses (or stops using the retired version); the figures are printed for the issue note. The bound below is a
 * liveness limit, far below `maxAgeMs`, not a latency assertion.
 */

const REFUSAL_BOUND_MS = 10_000;
const ROOT = join(import.meta.dirname, '..', '..', '..');

interface PolicyDocument {
  readonly statements: readonly {
    readonly effect: string;
    readonly principals: readonly string[];
    readonly keys: readonly string[];
    readonly conditions?: { readonly context?: Readonly<Record<string, string>> };
  }[];
}

/** The policy document of the README's "Policies" section, exactly as a reader would paste it. */
function readmePolicy(): PolicyDocument {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const match = /<<'JSON'\n([\s\S]*?)\nJSON\n/.exec(readme.slice(readme.indexOf('### Policies')));
  if (match === null) throw new Error('The README has no policy example');
  return JSON.parse(match[1] as string) as PolicyDocument;
}

function examplePolicy(): PolicyDocument {
  return JSON.parse(readFileSync(join(ROOT, 'examples', 'container-app', 'k8s', 'keyhold-policy.json'), 'utf8')) as PolicyDocument;
}

interface Workload {
  readonly policy: PolicyDocument;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** A key the policy grants the workload, and the context its grant requires. */
  readonly keyName: string;
  readonly context: Record<string, string>;
}

/** The workload the policy's first allow names, with a key and a context that statement grants it. */
function workloadOf(policy: PolicyDocument, namespace: string, serviceAccount: string): Workload {
  const allow = policy.statements.find((statement) => statement.effect === 'allow');
  if (allow === undefined) throw new Error('The policy allows nothing');
  const substitute = (text: string) => text.replaceAll('${principal.namespace}', namespace).replaceAll('${principal.serviceAccount}', serviceAccount);
  const keyName = substitute(allow.keys[0] as string).replace('*', 'orders');
  const context = Object.fromEntries(Object.entries(allow.conditions?.context ?? {}).map(([key, value]) => [key, substitute(value)]));
  // The point of these tests: the grant is conditioned on the context.
  expect(Object.keys(context).length).toBeGreaterThan(0);
  return { policy, namespace, serviceAccount, keyName, context };
}

const WORKLOADS: readonly (readonly [string, () => Workload])[] = [
  ['the README policy', () => workloadOf(readmePolicy(), 'payments', 'api')],
  ['the example policy', () => workloadOf(examplePolicy(), 'demo', 'container-app')],
];

/** The key version a message's wrapped data key is under: what the SDK encrypted with. */
function versionOf(message: Uint8Array): number {
  return parseCiphertext(encodeWrappedKey(decodeHeader(message).wrappedKey)).keyVersion;
}

function outcome(promise: Promise<unknown>): Promise<unknown> {
  return promise.then((value) => value, (error: unknown) => error);
}

const measured: string[] = [];
afterAll(() => {
  if (measured.length > 0) console.log(`Revocation through the SDK, context-conditioned grants:\n  ${measured.join('\n  ')}`);
});

let issuer: IssuerKey;
const dir = new TempDir();
let authConfig: string;

beforeAll(async () => {
  issuer = await issuerKey('RS256', 'cluster-1');
  authConfig = dir.authConfig([{ issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['RS256'], jwksFile: dir.write('jwks.json', keySet(issuer)) }]);
});
afterAll(() => dir.remove());

for (const kind of DATABASE_KINDS) {
  for (const [policyName, makeWorkload] of WORKLOADS) {
    describe(`revocation reaches a workload granted by ${policyName} [${kind}]`, () => {
      let t: TestApp;
      let sdk: KeyholdClient;
      let workload: Workload;

      async function admin(method: string, path: string, body?: unknown): Promise<any> {
        const response = await t.call(method, path, body);
        expect(response.status, response.text).toBeLessThan(300);
        return response.body;
      }

      /** Calls `attempt` until it reports done, and returns how long after `since` that was. */
      async function until(since: number, what: string, attempt: () => Promise<boolean>): Promise<number> {
        for (;;) {
          if (await attempt()) return Date.now() - since;
          if (Date.now() - since > REFUSAL_BOUND_MS) throw new Error(`${what}: not within ${REFUSAL_BOUND_MS} ms`);
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }

      const encrypt = () => sdk.encrypt(workload.keyName, 'a record', { context: workload.context });
      const decrypt = (message: Buffer) => sdk.decrypt(message, { expectedContext: workload.context });

      /** Encrypts until the SDK refuses; every message it still makes is under an enabled primary version. */
      async function encryptRefused(since: number, primaryVersion: number): Promise<number> {
        return until(since, 'encrypt refused', async () => {
          const result = await outcome(encrypt());
          if (result instanceof Error) {
            expect(result).toBeInstanceOf(ServiceError);
            return true;
          }
          expect(versionOf(result as Buffer)).toBe(primaryVersion);
          return false;
        });
      }

      async function decryptRefused(since: number, message: Buffer): Promise<number> {
        return until(since, 'decrypt refused', async () => {
          const result = await outcome(decrypt(message));
          if (!(result instanceof Error)) return false;
          expect(result).toBeInstanceOf(ServiceError);
          return true;
        });
      }

      function record(event: string, latencyMs: number): void {
        measured.push(`[${kind}] ${policyName}: ${event}: ${latencyMs} ms`);
      }

      beforeEach(async () => {
        workload = makeWorkload();
        t = await buildTestApp(kind, { env: { KEYHOLD_AUTH_CONFIG: authConfig } });
        await t.app.listen({ port: 0, host: '127.0.0.1' });
        await admin('POST', '/v1/keys', { name: workload.keyName });
        await admin('PUT', '/v1/policies/workload', workload.policy);
        const token = await signToken(
          issuer,
          serviceAccountClaims(t.clock, {
            sub: `system:serviceaccount:${workload.namespace}:${workload.serviceAccount}`,
            'kubernetes.io': {
              namespace: workload.namespace,
              pod: { name: `${workload.serviceAccount}-7d9f8b6c5-x2k4q`, uid: '3c0f9d2e-5b1a-4c8e-9f7d-2a6b1e4c8d90' },
              serviceaccount: { name: workload.serviceAccount, uid: 'a1b2c3d4-0000-4000-8000-000000000001' },
            },
          }),
        );
        const { port } = t.app.server.address() as AddressInfo;
        sdk = createClient({
          url: `http://127.0.0.1:${port}`,
          auth: kubernetesServiceAccount({ tokenPath: dir.write(`token-${kind}`, `${token}\n`) }),
          retries: 0,
        });
        // A late event for the set-up's writes would purge the cache these tests count on.
        await changesApplied(t);
        await sdk.ready();
        const deadline = Date.now() + REFUSAL_BOUND_MS;
        while (sdk.events.status().state !== 'open') {
          if (Date.now() > deadline) throw new Error('The event stream did not open');
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      });

      afterEach(async () => {
        await sdk.close();
        await t.close();
      });

      /** A message under version 1, decrypted once so that both of the SDK's caches hold its data key. */
      async function cachedMessage(): Promise<Buffer> {
        const message = await encrypt();
        expect(versionOf(message)).toBe(1);
        expect((await decrypt(message)).toString()).toBe('a record');
        await encrypt();
        expect(sdk.cache.stats().hits).toBeGreaterThanOrEqual(1);
        return message;
      }

      it('after the key is disabled, the SDK refuses to encrypt and to decrypt', async () => {
        const message = await cachedMessage();
        const at = Date.now();
        await admin('POST', `/v1/keys/${workload.keyName}/disable`);
        record('key disabled, encrypt refused', await encryptRefused(at, 1));
        record('key disabled, decrypt refused', await decryptRefused(at, message));
      });

      it('after the primary version is disabled, the SDK refuses to encrypt under it and to decrypt it', async () => {
        const message = await cachedMessage();
        const at = Date.now();
        await admin('POST', `/v1/keys/${workload.keyName}/versions/1/disable`);
        record('version disabled, encrypt refused', await encryptRefused(at, 1));
        record('version disabled, decrypt refused', await decryptRefused(at, message));
      });

      it('after a rotation the SDK encrypts under the new version only, and minDecryptionVersion refuses the old', async () => {
        const message = await cachedMessage();
        const rotatedAt = Date.now();
        await admin('POST', `/v1/keys/${workload.keyName}/rotate`);
        let switched = false;
        record('rotated, encrypting under v2', await until(rotatedAt, 'encrypt under v2', async () => {
          const version = versionOf(await encrypt());
          if (switched) expect(version).toBe(2);
          switched = version === 2;
          return switched;
        }));
        // Once it switched, it never goes back to the retired version.
        for (let i = 0; i < 20; i += 1) expect(versionOf(await encrypt())).toBe(2);
        expect((await decrypt(message)).toString()).toBe('a record');

        const raisedAt = Date.now();
        await admin('PATCH', `/v1/keys/${workload.keyName}`, { minDecryptionVersion: 2 });
        record('minDecryptionVersion raised, decrypt refused', await decryptRefused(raisedAt, message));
        expect(versionOf(await encrypt())).toBe(2);
      });

      it('after deletion is scheduled, the SDK refuses to encrypt and to decrypt', async () => {
        const message = await cachedMessage();
        const at = Date.now();
        await admin('POST', `/v1/keys/${workload.keyName}/schedule-deletion`, { pendingWindowDays: 7 });
        record('deletion scheduled, encrypt refused', await encryptRefused(at, 1));
        record('deletion scheduled, decrypt refused', await decryptRefused(at, message));
      });
    });
  }
}
