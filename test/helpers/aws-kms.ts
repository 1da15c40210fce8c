import type { AddressInfo } from 'node:net';
import { KMSClient } from '@aws-sdk/client-kms';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { expect } from 'vitest';
import type { Environment } from '../../src/config.js';
import { buildTestApp, type DatabaseKind, type TestApp } from './app.js';
import { ManualClock } from './clock.js';

export interface AwsCredential {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface AwsKmsServer {
  readonly t: TestApp;
  /** The endpoint an AWS SDK is given: `http://127.0.0.1:PORT/aws-kms/`. */
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * A test app on a real port, for AWS clients that sign with the real time: its clock starts now (and moves only when
 * the test moves it), so their signatures are within the five minutes the endpoint allows.
 */
export async function startAwsKmsServer(kind: DatabaseKind, env: Environment = {}): Promise<AwsKmsServer> {
  const t = await buildTestApp(kind, { clock: new ManualClock(Date.now()), env });
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = t.app.server.address() as AddressInfo;
  return { t, endpoint: `http://127.0.0.1:${port}/aws-kms/`, close: () => t.close() };
}

/** Issues an access key bound to `principal` (as the admin), and returns its id and secret. */
export async function issueAwsCredential(t: TestApp, name: string, principal: string): Promise<AwsCredential> {
  const response = await t.call('POST', '/v1/aws-credentials', { name, principal });
  expect(response.status, response.text).toBe(201);
  return { accessKeyId: response.body.accessKeyId, secretAccessKey: response.body.secretAccessKey };
}

/** Puts a policy of one allow statement. */
export async function allow(t: TestApp, policy: string, principals: string[], actions: string[], keys: string[]): Promise<void> {
  const response = await t.call('PUT', `/v1/policies/${policy}`, { statements: [{ sid: policy, effect: 'allow', principals, actions, keys }] });
  expect(response.status, response.text).toBeLessThan(300);
}

export function kmsClient(endpoint: string, credentials: AwsCredential, options: { maxAttempts?: number; region?: string; systemClockOffset?: number } = {}): KMSClient {
  return new KMSClient({
    endpoint,
    region: options.region ?? 'us-east-1',
    credentials,
    maxAttempts: options.maxAttempts ?? 3,
    ...(options.systemClockOffset === undefined ? {} : { systemClockOffset: options.systemClockOffset }),
  });
}

/**
 * Sends one AWS JSON request by hand, signed as the AWS SDK signs (the same signer library), for what an SDK would
 * never send: a malformed body, an unknown operation, a time far off.
 */
export async function signedFetch(
  endpoint: string,
  credential: AwsCredential,
  target: string,
  body: string,
  options: { at?: Date; headers?: Record<string, string> } = {},
): Promise<Response> {
  const url = new URL(endpoint);
  const signer = new SignatureV4({ credentials: credential, region: 'us-east-1', service: 'kms', sha256: Hash.bind(null, 'sha256') });
  const request = await signer.sign(
    {
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      path: url.pathname,
      headers: { host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': target, ...options.headers },
      body,
    },
    { signingDate: options.at ?? new Date() },
  );
  const { host: _host, ...headers } = request.headers as Record<string, string>;
  return fetch(url, { method: 'POST', headers, body });
}
