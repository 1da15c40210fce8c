import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, changesApplied, describeEachDatabase, type TestApp } from '../../../test/helpers/app.js';
import { apiToken, createClient, ServiceError, type ClientOptions, type KeyholdClient } from '../../src/index.js';

/**
 * Revocation reaching the SDK's cache: a workload encrypts, so a data key is cached; the admin API then disables
 * the key (or withdraws the policy). With the event subscription the client refuses within moments, without it only
 * once the cached key is `maxAgeMs` old. The service runs with its default change-feed polling, so the measured
 * latency is what a deployment on this database would see from one replica.
 */

const POLL_BOUND_MS = 10_000;

function asError(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => undefined, (error: unknown) => error);
}

describeEachDatabase('revocation reaches the SDK cache', (kind) => {
  let t: TestApp;
  let url: string;
  let token: string;
  const clients: KeyholdClient[] = [];

  async function admin(method: string, path: string, body?: unknown): Promise<any> {
    const response = await t.call(method, path, body);
    expect(response.status, response.text).toBeLessThan(300);
    return response.body;
  }

  function client(options: Partial<ClientOptions> = {}): KeyholdClient {
    const made = createClient({ url, auth: apiToken(token), retries: 0, ...options });
    clients.push(made);
    return made;
  }

  /** Encrypts until the client refuses, and returns how long after `since` that was, with the refusal. */
  async function untilRefused(sdk: KeyholdClient, since: number): Promise<{ latencyMs: number; error: unknown }> {
    for (;;) {
      const error = await asError(sdk.encrypt('orders', 'after'));
      if (error !== undefined) return { latencyMs: Date.now() - since, error };
      if (Date.now() - since > POLL_BOUND_MS) throw new Error(`Still encrypting ${POLL_BOUND_MS} ms after the revocation`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  async function subscribed(sdk: KeyholdClient): Promise<void> {
    const deadline = Date.now() + POLL_BOUND_MS;
    while (sdk.events.status().state !== 'open') {
      if (Date.now() > deadline) throw new Error('The event stream did not open');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  beforeEach(async () => {
    t = await buildTestApp(kind);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    await admin('POST', '/v1/keys', { name: 'orders' });
    token = (await admin('POST', '/v1/tokens', { name: 'worker' })).token as string;
    await admin('PUT', '/v1/policies/worker', {
      statements: [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey', 'decrypt'], keys: ['orders'] }],
    });
    // A late event for these writes would purge the cache the tests count on.
    await changesApplied(t);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((made) => made.close()));
    await t.close();
  });

  it('disabling a key makes a subscribed client refuse to encrypt with its cached data key, with KH_SDK_KEY_STATE', async () => {
    const sdk = client();
    await sdk.encrypt('orders', 'before');
    expect(sdk.cache.stats().encryptEntries).toBe(1);
    await subscribed(sdk);
    // The cached key is served without asking the service while nothing changed.
    await sdk.encrypt('orders', 'still before');
    expect(sdk.cache.stats().hits).toBe(1);

    const disabledAt = Date.now();
    await admin('POST', '/v1/keys/orders/disable');
    const { latencyMs, error } = await untilRefused(sdk, disabledAt);

    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ code: 'KH_SDK_KEY_STATE', status: 409, serviceCode: 'KH_ERR_KEY_DISABLED' });
    console.log(`[${kind}] key disabled → SDK refuses to encrypt: ${latencyMs} ms`);
  });

  it('deleting the policy that allowed the key makes a subscribed client refuse, with KH_SDK_ACCESS_DENIED', async () => {
    const sdk = client();
    await sdk.encrypt('orders', 'before');
    await subscribed(sdk);

    const revokedAt = Date.now();
    await admin('DELETE', '/v1/policies/worker');
    const { latencyMs, error } = await untilRefused(sdk, revokedAt);

    expect(error).toMatchObject({ code: 'KH_SDK_ACCESS_DENIED', status: 403 });
    console.log(`[${kind}] policy deleted → SDK refuses to encrypt: ${latencyMs} ms`);
  });

  it('with events: false the cached data key keeps encrypting after the key is disabled, until it is maxAgeMs old', async () => {
    let now = 1_000_000;
    const sdk = client({ events: false, cache: { maxAgeMs: 60_000 }, now: () => now });
    await sdk.encrypt('orders', 'before');
    await admin('POST', '/v1/keys/orders/disable');
    // Well past the service's change polling: the service has long refused the key, the cache does not know.
    const until = Date.now() + 2_000;
    while (Date.now() < until) {
      await sdk.encrypt('orders', 'cached');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(sdk.cache.stats().misses).toBe(1);
    expect(sdk.events.status().state).toBe('off');

    now += 60_000;
    const error = await asError(sdk.encrypt('orders', 'aged out'));
    expect(error).toMatchObject({ code: 'KH_SDK_KEY_STATE', status: 409 });
  });
});
