import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_KINDS } from '../../helpers/app.js';
import { startCluster, stopAllClusters, timeUntil, type ApiResult, type Replica } from '../../helpers/replicas.js';

/** The shape every answer must have while the database is away: a 503 problem that says when to come back. */
function expectUnavailable(response: ApiResult): void {
  expect({ status: response.status, code: response.body?.code }).toEqual({ status: 503, code: 'KH_ERR_UNAVAILABLE' });
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json(;|$)/);
  expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
  // Fail closed: nothing but the problem fields, so no plaintext, data key or ciphertext rides along.
  expect(Object.keys(response.body).sort()).toEqual(['code', 'detail', 'requestId', 'status', 'title', 'type']);
}

async function timed(label: string, request: () => Promise<ApiResult>): Promise<ApiResult> {
  const started = performance.now();
  const response = await request();
  console.log(`${label}: ${response.status} in ${Math.round(performance.now() - started)} ms`);
  return response;
}

describe.runIf(DATABASE_KINDS.includes('postgres'))('the database goes away under running replicas [postgres]', () => {
  afterEach(stopAllClusters);

  it('answers every request with a 503 problem and Retry-After, and recovers by itself when the database returns', async () => {
    const cluster = await startCluster({
      replicas: 2,
      // A long cache TTL keeps the key and the token cached on the replica while the database is away: the audit
      // log, not the cache, decides whether key material may leave.
      env: { KEYHOLD_DATABASE_TIMEOUT_MS: '500', KEYHOLD_AUDIT_TIMEOUT_MS: '500', KEYHOLD_CACHE_TTL_MS: '600000' },
    });
    const [replica] = cluster.replicas as [Replica, ...Replica[]];
    expect((await replica.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
    const issued = await replica.call('POST', '/v1/keys/orders/datakey', {});
    expect(issued.status).toBe(200);
    expect((await replica.call('POST', '/v1/decrypt', { ciphertext: issued.body.ciphertext })).status).toBe(200);
    expect((await replica.call('GET', '/v1/keys/orders')).status).toBe(200);

    await cluster.database.down();

    expectUnavailable(await timed('datakey (key cached)', () => replica.call('POST', '/v1/keys/orders/datakey', {})));
    expectUnavailable(await timed('decrypt (key cached)', () => replica.call('POST', '/v1/decrypt', { ciphertext: issued.body.ciphertext })));
    expectUnavailable(await timed('key read', () => replica.call('GET', '/v1/keys/orders')));
    expectUnavailable(await timed('key list', () => replica.call('GET', '/v1/keys')));
    expectUnavailable(await timed('create key', () => replica.call('POST', '/v1/keys', { name: 'invoices' })));
    expectUnavailable(await timed('rotate key', () => replica.call('POST', '/v1/keys/orders/rotate')));
    const ready = await timed('readyz', () => replica.call('GET', '/readyz', undefined, null));
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ status: 'unavailable', checks: { database: false } });
    // Liveness does not depend on the database: restarting the process would not bring it back.
    expect((await replica.call('GET', '/healthz', undefined, null)).status).toBe(200);

    await cluster.database.up();
    for (const each of cluster.replicas) {
      const readyAfter = await timeUntil(`replica ${each.index} ready`, 15_000, async () => (await each.call('GET', '/readyz', undefined, null)).status === 200);
      const dataKeyAfter = await timeUntil(`replica ${each.index} datakey`, 15_000, async () => (await each.call('POST', '/v1/keys/orders/datakey', {})).status === 200);
      console.log(`replica ${each.index}: database up → readyz 200 after ${readyAfter} ms, then datakey 200 after ${dataKeyAfter} ms more`);
    }
    expect((await replica.call('POST', '/v1/keys', { name: 'invoices' })).status).toBe(201);
    expect((await replica.call('POST', '/v1/decrypt', { ciphertext: issued.body.ciphertext })).status).toBe(200);
  });

  it('answers with a 503 problem, not a hang, when the database stops answering without closing connections', async () => {
    const cluster = await startCluster({
      replicas: 1,
      env: { KEYHOLD_DATABASE_TIMEOUT_MS: '500', KEYHOLD_AUDIT_TIMEOUT_MS: '500', KEYHOLD_CACHE_TTL_MS: '600000' },
    });
    const [replica] = cluster.replicas as [Replica];
    expect((await replica.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
    const issued = await replica.call('POST', '/v1/keys/orders/datakey', {});

    cluster.database.stall();

    expectUnavailable(await timed('datakey (stalled)', () => replica.call('POST', '/v1/keys/orders/datakey', {})));
    expectUnavailable(await timed('decrypt (stalled)', () => replica.call('POST', '/v1/decrypt', { ciphertext: issued.body.ciphertext })));
    expectUnavailable(await timed('key read (stalled)', () => replica.call('GET', '/v1/keys/orders')));
    expectUnavailable(await timed('rotate (stalled)', () => replica.call('POST', '/v1/keys/orders/rotate')));
    expect((await timed('readyz (stalled)', () => replica.call('GET', '/readyz', undefined, null))).status).toBe(503);

    await cluster.database.up();
    const recovered = await timeUntil('datakey after the stall', 15_000, async () => (await replica.call('POST', '/v1/keys/orders/datakey', {})).status === 200);
    console.log(`stall lifted → datakey 200 after ${recovered} ms`);
    expect((await replica.call('GET', '/readyz', undefined, null)).status).toBe(200);
  });

  it('replaces pooled connections that died silently, instead of failing every request that draws one', async () => {
    const cluster = await startCluster({
      replicas: 1,
      env: { KEYHOLD_DATABASE_TIMEOUT_MS: '500', KEYHOLD_AUDIT_TIMEOUT_MS: '500', KEYHOLD_CACHE_TTL_MS: '600000' },
    });
    const [replica] = cluster.replicas as [Replica];
    expect((await replica.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
    // Fill the pool with several open connections.
    await Promise.all(Array.from({ length: 20 }, () => replica.call('GET', '/v1/keys/orders')));
    const before = cluster.database.connectionsAccepted;

    cluster.database.partitionOpenConnections();

    const statuses: number[] = [];
    const recovered = await timeUntil('a datakey after the partition', 20_000, async () => {
      const response = await replica.call('POST', '/v1/keys/orders/datakey', {});
      statuses.push(response.status);
      return response.status === 200;
    });
    expect(statuses.filter((status) => status !== 200 && status !== 503)).toEqual([]);
    console.log(
      `partition of ${before} pooled connections → datakey 200 after ${recovered} ms; answers on the way: ${statuses.join(' ')}; ` +
        `new connections opened: ${cluster.database.connectionsAccepted - before}`,
    );
    // Once replaced, the pool stays healthy: the next requests do not draw a dead connection again.
    for (let i = 0; i < 10; i += 1) expect((await replica.call('GET', '/v1/keys/orders')).status).toBe(200);
  });
});
