import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_KINDS } from '../../helpers/app.js';
import { startCluster, stopAllClusters } from '../../helpers/replicas.js';

describe.runIf(DATABASE_KINDS.includes('postgres'))('concurrent rotation across replicas [postgres]', () => {
  afterEach(stopAllClusters);

  it('60 parallel rotations over 3 replicas make 60 new consecutive versions, each reported by exactly one call', async () => {
    const cluster = await startCluster({ replicas: 3 });
    const { replicas } = cluster;
    expect((await replicas[0]!.call('POST', '/v1/keys', { name: 'ledger' })).status).toBe(201);

    const started = performance.now();
    const responses = await Promise.all(
      Array.from({ length: 60 }, (_, i) => replicas[i % replicas.length]!.call('POST', '/v1/keys/ledger/rotate')),
    );
    console.log(`60 rotations over 3 replicas answered in ${Math.round(performance.now() - started)} ms`);

    expect(responses.map((response) => response.status)).toEqual(responses.map(() => 200));
    const reported = responses.map((response) => response.body.primaryVersion as number).sort((a, b) => a - b);
    expect(reported).toEqual(Array.from({ length: 60 }, (_, i) => i + 2));
    const key = await cluster.db('keys').where({ name: 'ledger' }).first();
    expect(key.primary_version).toBe(61);
    const versions = await cluster.db('key_versions').where({ key_id: key.id }).orderBy('version').select('version', 'state');
    expect(versions).toEqual(Array.from({ length: 61 }, (_, i) => ({ version: i + 1, state: 'enabled' })));
  });
});
