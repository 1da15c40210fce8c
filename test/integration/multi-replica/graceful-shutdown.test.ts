import { afterEach, describe, expect, it } from 'vitest';
import { SEAL_METHOD } from '../../../src/audit/seal.js';
import { DATABASE_KINDS } from '../../helpers/app.js';
import { startCluster, stopAllClusters, type ApiResult, type Replica } from '../../helpers/replicas.js';

async function waitForOutput(replica: Replica, what: string, seen: (output: string) => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!seen(replica.output())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${replica.output().slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.runIf(DATABASE_KINDS.includes('postgres'))('graceful shutdown on SIGTERM [postgres]', () => {
  afterEach(stopAllClusters);

  it('finishes the requests in flight, commits their audit records, and exits 0', async () => {
    // The access log's lines: the test sends SIGTERM only once the server has taken every request.
    const cluster = await startCluster({
      replicas: 1,
      env: { KEYHOLD_LOG_LEVEL: 'info', KEYHOLD_ACCESS_LOG: 'on', KEYHOLD_CACHE_TTL_MS: '600000' },
    });
    const [replica] = cluster.replicas as [Replica];
    expect((await replica.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
    expect((await replica.call('POST', '/v1/keys/orders/datakey', {})).status).toBe(200);
    // A slow path to the database keeps every request waiting on its audit commit when the signal arrives.
    cluster.database.delay(150);
    const ids = Array.from({ length: 40 }, (_, i) => `shutdown-${i}`);
    let settled = 0;
    const calls = ids.map((id) =>
      replica
        .call('POST', '/v1/keys/orders/datakey', {}, undefined, { 'x-request-id': id })
        .then(
          (response): ApiResult | Error => response,
          (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
        )
        .finally(() => (settled += 1)),
    );
    await waitForOutput(replica, 'every request to arrive', (output) =>
      ids.every((id) => output.includes(`"reqId":"${id}"`)),
    );

    const answeredBeforeSignal = settled;
    const signalled = performance.now();
    const exit = await replica.kill('SIGTERM');
    const drainMs = Math.round(performance.now() - signalled);
    const responses = await Promise.all(calls);
    console.log(`SIGTERM with ${ids.length - answeredBeforeSignal} of ${ids.length} requests in flight; exited ${JSON.stringify(exit)} after ${drainMs} ms`);

    expect(responses.map((response) => (response instanceof Error ? response.message : response.status))).toEqual(ids.map(() => 200));
    expect(exit).toEqual({ code: 0, signal: null });
    const audited = await cluster.db('audit_records').whereIn('request_id', ids).select('request_id', 'status');
    expect(audited.map((row: { request_id: string }) => row.request_id).sort()).toEqual([...ids].sort());
    // After them, the chain's last record is its seal.
    const [seal] = (await cluster.db('audit_records').where({ method: SEAL_METHOD })) as Array<{ replica_id: string; sequence: string }>;
    expect(seal).toBeDefined();
    const [last] = (await cluster.db('audit_records').where({ replica_id: seal!.replica_id }).max({ sequence: 'sequence' })) as Array<{ sequence: string }>;
    expect(Number(last!.sequence)).toBe(Number(seal!.sequence));
    expect(replica.output()).toContain('"sealed":true');
  });

  it('does not wait on idle keep-alive connections', async () => {
    const cluster = await startCluster({ replicas: 1 });
    const [replica] = cluster.replicas as [Replica];
    // fetch keeps these connections open for reuse after the answers.
    await Promise.all(Array.from({ length: 10 }, () => replica.call('GET', '/v1/whoami')));

    const signalled = performance.now();
    const exit = await replica.kill('SIGTERM');
    console.log(`SIGTERM with 10 idle keep-alive connections: exited ${JSON.stringify(exit)} after ${Math.round(performance.now() - signalled)} ms`);
    expect(exit).toEqual({ code: 0, signal: null });
  });

  it('exits non-zero once KEYHOLD_SHUTDOWN_TIMEOUT_MS has passed, rather than wait on a request that cannot finish', async () => {
    // The database timeouts are long, so the stalled request outlives the shutdown bound by far.
    const cluster = await startCluster({
      replicas: 1,
      env: {
        KEYHOLD_LOG_LEVEL: 'info',
        KEYHOLD_ACCESS_LOG: 'on',
        KEYHOLD_SHUTDOWN_TIMEOUT_MS: '1000',
        KEYHOLD_DATABASE_TIMEOUT_MS: '30000',
        KEYHOLD_AUDIT_TIMEOUT_MS: '30000',
      },
    });
    const [replica] = cluster.replicas as [Replica];
    expect((await replica.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
    cluster.database.stall();
    const stuck = replica.call('GET', '/v1/keys/orders', undefined, undefined, { 'x-request-id': 'stuck' }).catch((error: unknown) => error);
    await waitForOutput(replica, 'the request to arrive', (output) => output.includes('"reqId":"stuck"'));

    const signalled = performance.now();
    const exit = await replica.kill('SIGTERM');
    console.log(`SIGTERM with a request stuck on the database: exited ${JSON.stringify(exit)} after ${Math.round(performance.now() - signalled)} ms`);
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(await stuck).toBeInstanceOf(Error);
  });
});
