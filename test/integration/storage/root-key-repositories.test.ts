import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { NewVersion } from '../../../src/keys/key-repository.js';
import type { WrappedRow } from '../../../src/root-keys/root-rewrap-repository.js';
import type { StoredAwsCredential } from '../../../src/aws-kms/aws-credential-repository.js';
import { KnexAwsCredentialRepository } from '../../../src/storage/knex-aws-credential-repository.js';
import { KnexKeyRepository } from '../../../src/storage/knex-key-repository.js';
import { KnexRootKeyRepository } from '../../../src/storage/knex-root-key-repository.js';
import { KnexRootRewrapRepository } from '../../../src/storage/knex-root-rewrap-repository.js';
import { KnexSystemSecretRepository } from '../../../src/storage/knex-system-secret-repository.js';
import { describeEachDatabase } from '../../helpers/app.js';
import { keyRecord, T0 } from '../../helpers/key-fixtures.js';
import { sharedStore, storePerTest } from './store.js';

const ROOT_A = { id: 'root-a', checkValue: 'check-a' };
const ROOT_B = { id: 'root-b', checkValue: 'check-b' };
const ROOT_C = { id: 'root-c', checkValue: 'check-c' };
const at = (ms: number) => new Date(T0.getTime() + ms);

/** An AWS access key whose secret is wrapped under `rootKeyId`, with material naming both. */
function awsCredential(accessKeyId: string, rootKeyId: string): StoredAwsCredential {
  return {
    accessKeyId,
    name: accessKeyId.toLowerCase(),
    principal: { id: 'k8s:shop:api', type: 'kubernetes', attributes: { namespace: 'shop', serviceAccount: 'api' } },
    createdBy: 'token:admin',
    createdAt: T0,
    expiresAt: null,
    revokedAt: null,
    rootKeyId,
    wrappedSecret: Buffer.from(`${rootKeyId}/${accessKeyId}`),
  };
}

function version(n: number, rootKeyId: string): NewVersion {
  return { version: n, state: 'enabled', rootKeyId, material: Buffer.from(`${rootKeyId}/${n}`), createdAt: T0 };
}

describeEachDatabase('RootKeyRepository contract', (kind) => {
  const store = storePerTest(kind);
  const rootKeys = () => new KnexRootKeyRepository(store.db);
  const keys = () => new KnexKeyRepository(store.db);

  /** A key of `versions` versions, each wrapped under `rootKeyId`. */
  async function createKey(name: string, rootKeyId: string, versions = 1): Promise<void> {
    await keys().create(keyRecord({ id: randomUUID(), name, primaryVersion: 1, versions: [] }), version(1, rootKeyId));
    for (let n = 2; n <= versions; n += 1) await keys().mutate(name, 'rotate', async (_key, writer) => writer.insertVersion(version(n, rootKeyId)));
  }

  it('a store starts with no root key, and the first one offered is recorded', async () => {
    expect(await rootKeys().list()).toEqual([]);
    expect(await rootKeys().recordIfFirst(ROOT_A, T0)).toEqual([ROOT_A]);
    expect(await rootKeys().list()).toEqual([ROOT_A]);
  });

  it('recordIfFirst records nothing on a store that has a root key, and answers the recorded ones', async () => {
    await rootKeys().recordIfFirst(ROOT_A, T0);
    expect(await rootKeys().recordIfFirst(ROOT_B, at(1))).toEqual([ROOT_A]);
  });

  it('replicas offering different first keys at once all end up with one and the same', async () => {
    const answers = await Promise.all([ROOT_A, ROOT_B, ROOT_C].map((entry) => rootKeys().recordIfFirst(entry, T0)));
    expect(answers[0]).toHaveLength(1);
    expect(answers.every((answer) => JSON.stringify(answer) === JSON.stringify(answers[0]))).toBe(true);
  });

  it('recordNext records each next key after the ones before it, even in the same millisecond or earlier', async () => {
    await rootKeys().recordIfFirst(ROOT_A, at(10));
    expect(await rootKeys().recordNext(ROOT_B, ROOT_A.id, at(10))).toEqual([ROOT_A, ROOT_B]);
    expect(await rootKeys().recordNext(ROOT_C, ROOT_B.id, at(0))).toEqual([ROOT_A, ROOT_B, ROOT_C]);
  });

  it('recordNext of a key already recorded changes nothing', async () => {
    await rootKeys().recordIfFirst(ROOT_A, T0);
    await rootKeys().recordNext(ROOT_B, ROOT_A.id, at(1));
    expect(await rootKeys().recordNext(ROOT_A, ROOT_B.id, at(2))).toEqual([ROOT_A, ROOT_B]);
  });

  it('recordNext refuses a key vouched for by one that is not recorded, and records nothing', async () => {
    await rootKeys().recordIfFirst(ROOT_A, T0);
    await expect(rootKeys().recordNext(ROOT_C, ROOT_B.id, at(1))).rejects.toThrow();
    expect(await rootKeys().list()).toEqual([ROOT_A]);
  });

  it('wrappedUnder counts the key versions, system secrets and AWS secret keys wrapped under a root key, destroyed versions not', async () => {
    await rootKeys().recordIfFirst(ROOT_A, T0);
    await rootKeys().recordNext(ROOT_B, ROOT_A.id, at(1));
    await createKey('w.a', ROOT_A.id, 2);
    await createKey('w.b', ROOT_B.id);
    await createKey('w.destroyed', ROOT_A.id);
    await keys().mutate('w.destroyed', 'destroy', async (_key, writer) => writer.destroyAllVersions(T0));
    await new KnexSystemSecretRepository(store.db).insertIfAbsent({ name: 'audit-key', rootKeyId: ROOT_A.id, material: Buffer.from('s') }, T0);
    await new KnexAwsCredentialRepository(store.db).insert(awsCredential('KHAKWRAPPEDUNDERBBB2', ROOT_B.id));
    expect(await rootKeys().wrappedUnder(ROOT_A.id)).toEqual({ keyVersions: 2, systemSecrets: 1, awsCredentials: 0 });
    expect(await rootKeys().wrappedUnder(ROOT_B.id)).toEqual({ keyVersions: 1, systemSecrets: 0, awsCredentials: 1 });
    expect(await rootKeys().wrappedUnder(ROOT_C.id)).toEqual({ keyVersions: 0, systemSecrets: 0, awsCredentials: 0 });
  });

  it('keyCount counts the keys in any state, destroyed ones too', async () => {
    await rootKeys().recordIfFirst(ROOT_A, T0);
    expect(await rootKeys().keyCount()).toBe(0);
    await createKey('n.a', ROOT_A.id);
    await createKey('n.destroyed', ROOT_A.id);
    await keys().mutate('n.destroyed', 'destroy', async (_key, writer) => writer.destroyAllVersions(T0));
    expect(await rootKeys().keyCount()).toBe(2);
  });
});

describeEachDatabase('RootRewrapRepository contract', (kind) => {
  const store = storePerTest(kind);
  const rewraps = () => new KnexRootRewrapRepository(store.db);
  const keys = () => new KnexKeyRepository(store.db);
  const secrets = () => new KnexSystemSecretRepository(store.db);
  /** Rewraps by naming the new key in the material, so a test sees which rows were moved, and from what. */
  const toB = async (row: WrappedRow) => Buffer.concat([Buffer.from('B:'), row.material]);

  /** Root keys A then B recorded; keys `r.1`…`r.<count>` of one version under A, and an audit key under A. */
  async function seed(count: number): Promise<void> {
    const rootKeys = new KnexRootKeyRepository(store.db);
    await rootKeys.recordIfFirst(ROOT_A, T0);
    await rootKeys.recordNext(ROOT_B, ROOT_A.id, at(1));
    for (let i = 1; i <= count; i += 1) {
      await keys().create(keyRecord({ id: randomUUID(), name: `r.${i}`, primaryVersion: 1, versions: [] }), version(1, ROOT_A.id));
    }
    await secrets().insertIfAbsent({ name: 'audit-key', rootKeyId: ROOT_A.id, material: Buffer.from('secret') }, T0);
  }

  async function materialOf(name: string) {
    const key = (await keys().findByName(name))!;
    return (await keys().findWrappedVersions(key.id)).map((v) => [v.rootKeyId, v.material.toString()]);
  }

  it('countOutside counts the material wrapped under root keys other than the one given', async () => {
    await seed(3);
    expect(await rewraps().countOutside(ROOT_B.id)).toBe(4);
    expect(await rewraps().countOutside(ROOT_A.id)).toBe(0);
  });

  it('rewrapBatch moves up to the limit, system secrets first, storing what rewrap gave under the target key', async () => {
    await seed(3);
    const seen: WrappedRow['table'][] = [];
    const moved = await rewraps().rewrapBatch(ROOT_B.id, 2, async (row) => (seen.push(row.table), toB(row)), at(2));
    expect(moved).toBe(2);
    expect(seen).toEqual(['system_secrets', 'key_versions']);
    expect(await secrets().find('audit-key')).toEqual({ name: 'audit-key', rootKeyId: ROOT_B.id, material: Buffer.from('B:secret') });
    expect(await rewraps().countOutside(ROOT_B.id)).toBe(2);
  });

  it('rewrap is given each row with its current root key and material', async () => {
    await seed(1);
    const rows: WrappedRow[] = [];
    await rewraps().rewrapBatch(ROOT_B.id, 10, async (row) => (rows.push(row), toB(row)), at(2));
    const key = (await keys().findByName('r.1'))!;
    expect(rows).toEqual([
      { table: 'system_secrets', name: 'audit-key', rootKeyId: ROOT_A.id, material: Buffer.from('secret') },
      { table: 'key_versions', keyId: key.id, version: 1, rootKeyId: ROOT_A.id, material: Buffer.from('root-a/1') },
    ]);
    expect(await materialOf('r.1')).toEqual([[ROOT_B.id, 'B:root-a/1']]);
  });

  it('rewrapBatch answers 0 once nothing is left outside the target key', async () => {
    await seed(3);
    let total = 0;
    for (let moved = -1; moved !== 0; total += moved) moved = await rewraps().rewrapBatch(ROOT_B.id, 3, toB, at(2));
    expect(total + 1).toBe(5);
    expect(await rewraps().countOutside(ROOT_B.id)).toBe(0);
  });

  it('a batch whose rewrap fails moves none of its rows', async () => {
    await seed(3);
    let calls = 0;
    const failing = async (row: WrappedRow) => {
      calls += 1;
      if (calls === 3) throw new Error('root key unavailable');
      return toB(row);
    };
    await expect(rewraps().rewrapBatch(ROOT_B.id, 10, failing, at(2))).rejects.toThrow('root key unavailable');
    expect(await rewraps().countOutside(ROOT_B.id)).toBe(4);
    expect(await secrets().find('audit-key')).toMatchObject({ rootKeyId: ROOT_A.id, material: Buffer.from('secret') });
  });

  it('destroyed versions hold no material: they are neither counted nor moved', async () => {
    await seed(2);
    await keys().mutate('r.2', 'destroy', async (_key, writer) => writer.destroyAllVersions(T0));
    expect(await rewraps().countOutside(ROOT_B.id)).toBe(2);
    const tables: string[] = [];
    await rewraps().rewrapBatch(ROOT_B.id, 10, async (row) => (tables.push(row.table), toB(row)), at(2));
    expect(tables).toEqual(['system_secrets', 'key_versions']);
  });

  it('concurrent runs share the rows: each is rewrapped once', async () => {
    await seed(6);
    const names: string[] = [];
    const rewrap = async (row: WrappedRow) => (names.push(row.table === 'key_versions' ? row.keyId : row.table === 'system_secrets' ? row.name : row.accessKeyId), toB(row));
    const run = async () => {
      let total = 0;
      for (let moved = -1; moved !== 0; ) total += moved = await rewraps().rewrapBatch(ROOT_B.id, 2, rewrap, at(2));
      return total;
    };
    const totals = await Promise.all([run(), run()]);
    expect(totals[0]! + totals[1]!).toBe(7);
    expect(new Set(names).size).toBe(7);
    expect(names).toHaveLength(7);
  });

  it('moves AWS secret keys, revoked ones too, after system secrets and before key versions, each under its own id', async () => {
    await seed(1);
    const credentials = new KnexAwsCredentialRepository(store.db);
    await credentials.insert(awsCredential('KHAKREWRAPLIVE222222', ROOT_A.id));
    await credentials.insert(awsCredential('KHAKREWRAPREVOKED222', ROOT_A.id));
    await credentials.revoke('KHAKREWRAPREVOKED222', at(1));
    expect(await rewraps().countOutside(ROOT_B.id)).toBe(4);
    const rows: WrappedRow[] = [];
    expect(await rewraps().rewrapBatch(ROOT_B.id, 3, async (row) => (rows.push(row), toB(row)), at(2))).toBe(3);
    expect(rows.map((row) => row.table)).toEqual(['system_secrets', 'aws_credentials', 'aws_credentials']);
    expect(rows[1]).toEqual({
      table: 'aws_credentials',
      accessKeyId: expect.stringMatching(/^KHAKREWRAP/),
      rootKeyId: ROOT_A.id,
      material: Buffer.from(`${ROOT_A.id}/${(rows[1] as { accessKeyId: string }).accessKeyId}`),
    });
    expect(await credentials.find('KHAKREWRAPLIVE222222')).toMatchObject({ rootKeyId: ROOT_B.id, wrappedSecret: Buffer.from(`B:${ROOT_A.id}/KHAKREWRAPLIVE222222`) });
    expect(await rewraps().countOutside(ROOT_B.id)).toBe(1);
  });

  it('with no other root key recorded, there is nothing to move', async () => {
    await new KnexRootKeyRepository(store.db).recordIfFirst(ROOT_A, T0);
    await keys().create(keyRecord({ id: randomUUID(), name: 'r.only', primaryVersion: 1, versions: [] }), version(1, ROOT_A.id));
    expect(await rewraps().countOutside(ROOT_A.id)).toBe(0);
    expect(await rewraps().rewrapBatch(ROOT_A.id, 10, toB, at(2))).toBe(0);
  });
});

describeEachDatabase('SystemSecretRepository contract', (kind) => {
  const store = sharedStore(kind);
  const secrets = () => new KnexSystemSecretRepository(store.db);
  // Secrets name the root key they are wrapped under; the store knows it.
  beforeAll(() => new KnexRootKeyRepository(store.db).recordIfFirst(ROOT_A, T0));

  describe('find and insertIfAbsent', () => {
    it('gives back a stored secret by name, and nothing for a name never stored', async () => {
      const secret = { name: 's.find', rootKeyId: 'root-a', material: Buffer.from([0, 1, 2, 255]) };
      expect(await secrets().insertIfAbsent(secret, T0)).toEqual(secret);
      expect(await secrets().find('s.find')).toEqual(secret);
      expect(await secrets().find('s.absent')).toBeUndefined();
    });

    it('keeps the first secret of a name, and answers it to every later insert', async () => {
      const first = { name: 's.first', rootKeyId: 'root-a', material: Buffer.from('first') };
      await secrets().insertIfAbsent(first, T0);
      expect(await secrets().insertIfAbsent({ ...first, material: Buffer.from('second') }, at(1))).toEqual(first);
      expect(await secrets().find('s.first')).toEqual(first);
    });

    it('of replicas inserting a secret of one name at once, all get the same one', async () => {
      const offered = ['a', 'b', 'c'].map((m) => ({ name: 's.race', rootKeyId: 'root-a', material: Buffer.from(m) }));
      const answers = await Promise.all(offered.map((secret) => secrets().insertIfAbsent(secret, T0)));
      expect(answers.map((a) => a.material.toString())).toEqual(Array(3).fill(answers[0]!.material.toString()));
      expect(await secrets().find('s.race')).toEqual(answers[0]);
    });
  });
});
