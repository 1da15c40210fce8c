import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_KINDS } from '../../helpers/app.js';
import { startCluster, stopAllClusters, type ApiResult, type Cluster, type Replica } from '../../helpers/replicas.js';

const WORKERS_PER_REPLICA = 3;
const TRIALS_PER_KIND = 5;
/** Not a performance bound: only how long a test waits before it calls a replica that never refuses broken. */
const GIVE_UP_MS = 10_000;

interface Probe {
  /** The request a workload keeps making. */
  call(replica: Replica): Promise<ApiResult>;
  /** The answer once the revocation has reached the replica. */
  readonly refusedWith: { status: number; code: string };
}

interface Revocation {
  readonly kind: string;
  /** Makes the probe succeed everywhere again, returning the probe for the next trial. */
  prepare(): Promise<Probe>;
  revoke(): Promise<ApiResult>;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * Hammers `replicas` with the probe until each refuses it, and returns, per replica, the time from the moment the
 * revocation was sent to replica A to the end of the first refused call. A call that succeeds after that one is a
 * failure: the revocation must hold once it has been seen.
 */
async function measure(replicas: readonly Replica[], probe: Probe, revoke: () => Promise<ApiResult>): Promise<number[]> {
  let sentAt = Number.POSITIVE_INFINITY;
  const refusedAt = new Map<Replica, number>();
  const violations: string[] = [];
  let stop = false;
  const workers = replicas.flatMap((replica) =>
    Array.from({ length: WORKERS_PER_REPLICA }, async () => {
      while (!stop) {
        const started = performance.now();
        const response = await probe.call(replica);
        const ended = performance.now();
        if (response.status === 200) {
          const refused = refusedAt.get(replica);
          if (refused !== undefined && started > refused) violations.push(`replica ${replica.index} served after refusing`);
          continue;
        }
        expect({ status: response.status, code: response.body?.code }).toEqual(probe.refusedWith);
        // A refusal before the revocation was even sent would mean the probe was broken to begin with.
        expect(started).toBeGreaterThan(sentAt - 1000);
        if (!refusedAt.has(replica)) refusedAt.set(replica, ended);
        if (refusedAt.size === replicas.length || ended - sentAt > GIVE_UP_MS) stop = true;
      }
    }),
  );
  // Let the workers get going, so the replicas are serving from their caches when the revocation lands.
  await new Promise((resolve) => setTimeout(resolve, 150));
  sentAt = performance.now();
  expect((await revoke()).status).toBeLessThan(300);
  await Promise.all(workers);
  expect(violations).toEqual([]);
  return replicas.map((replica) => {
    const refused = refusedAt.get(replica);
    if (refused === undefined) throw new Error(`replica ${replica.index} never refused within ${GIVE_UP_MS} ms`);
    return refused - sentAt;
  });
}

describe.runIf(DATABASE_KINDS.includes('postgres'))('revocation through one replica reaches the others [postgres]', () => {
  afterEach(stopAllClusters);

  it('a disabled key, a revoked version, a revoked token and a withdrawn policy are refused by B and C', async () => {
    // A cache TTL far beyond the test: only the change feed can carry a revocation to B and C.
    const cluster: Cluster = await startCluster({ replicas: 3, env: { KEYHOLD_CACHE_TTL_MS: '3600000' } });
    const [a, b, c] = cluster.replicas as [Replica, Replica, Replica];
    const others = [b, c];
    expect((await a.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
    const v1Ciphertext = (await a.call('POST', '/v1/keys/orders/datakey', {})).body.ciphertext as string;
    await a.call('POST', '/v1/keys/orders/rotate');
    const grant = { statements: [{ effect: 'allow', principals: ['token:worker-*'], actions: ['datakey', 'decrypt'], keys: ['orders'] }] };
    let tokens = 0;
    const newWorkerToken = async () => {
      tokens += 1;
      const issued = await a.call('POST', '/v1/tokens', { name: `worker-${tokens}` });
      expect(issued.status).toBe(201);
      return issued.body as { id: string; token: string };
    };
    expect((await a.call('PUT', '/v1/policies/workers', grant)).status).toBe(201);
    const policyWorker = await newWorkerToken();

    const succeedsEverywhere = async (probe: Probe) => {
      const deadline = performance.now() + GIVE_UP_MS;
      for (const replica of others) {
        while ((await probe.call(replica)).status !== 200) {
          if (performance.now() > deadline) throw new Error(`replica ${replica.index} never served the probe`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      return probe;
    };

    let currentToken: { id: string; token: string } | undefined;
    const revocations: Revocation[] = [
      {
        kind: 'key disabled',
        prepare: async () => {
          await a.call('POST', '/v1/keys/orders/enable');
          return succeedsEverywhere({
            call: (replica) => replica.call('POST', '/v1/keys/orders/datakey', {}),
            refusedWith: { status: 409, code: 'KH_ERR_KEY_DISABLED' },
          });
        },
        revoke: () => a.call('POST', '/v1/keys/orders/disable'),
      },
      {
        kind: 'version disabled',
        prepare: async () => {
          await a.call('POST', '/v1/keys/orders/enable');
          await a.call('POST', '/v1/keys/orders/versions/1/enable');
          return succeedsEverywhere({
            call: (replica) => replica.call('POST', '/v1/decrypt', { ciphertext: v1Ciphertext }),
            refusedWith: { status: 409, code: 'KH_ERR_KEY_VERSION_DISABLED' },
          });
        },
        revoke: () => a.call('POST', '/v1/keys/orders/versions/1/disable'),
      },
      {
        kind: 'token revoked',
        prepare: async () => {
          await a.call('POST', '/v1/keys/orders/enable');
          await a.call('POST', '/v1/keys/orders/versions/1/enable');
          const token = await newWorkerToken();
          currentToken = token;
          return succeedsEverywhere({
            call: (replica) => replica.call('POST', '/v1/keys/orders/datakey', {}, token.token),
            refusedWith: { status: 401, code: 'KH_ERR_UNAUTHENTICATED' },
          });
        },
        revoke: () => a.call('DELETE', `/v1/tokens/${currentToken!.id}`),
      },
      {
        kind: 'policy withdrawn',
        prepare: async () => {
          await a.call('PUT', '/v1/policies/workers', grant);
          return succeedsEverywhere({
            call: (replica) => replica.call('POST', '/v1/keys/orders/datakey', {}, policyWorker.token),
            refusedWith: { status: 403, code: 'KH_ERR_FORBIDDEN' },
          });
        },
        revoke: () => a.call('DELETE', '/v1/policies/workers'),
      },
    ];

    const samples: number[] = [];
    const byKind: string[] = [];
    for (const revocation of revocations) {
      const kindSamples: number[] = [];
      for (let trial = 0; trial < TRIALS_PER_KIND; trial += 1) {
        const probe = await revocation.prepare();
        kindSamples.push(...(await measure(others, probe, () => revocation.revoke())));
      }
      samples.push(...kindSamples);
      byKind.push(`${revocation.kind}: max ${Math.round(Math.max(...kindSamples))} ms`);
    }
    const sorted = [...samples].sort((x, y) => x - y);
    console.log(
      `revocation propagation A → B, C over ${samples.length} samples (from the revoking request being sent to the ` +
        `first refusal): p50 ${Math.round(percentile(sorted, 50))} ms, p99 ${Math.round(percentile(sorted, 99))} ms, ` +
        `max ${Math.round(sorted[sorted.length - 1]!)} ms; ${byKind.join('; ')}`,
    );
  }, 240_000);
});
