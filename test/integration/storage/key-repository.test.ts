import { randomUUID } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import type { KeyRecord } from '../../../src/keys/key-record.js';
import type { NewVersion } from '../../../src/keys/key-repository.js';
import { KnexChangeRepository } from '../../../src/storage/knex-change-repository.js';
import { KnexKeyRepository } from '../../../src/storage/knex-key-repository.js';
import { KnexRootKeyRepository } from '../../../src/storage/knex-root-key-repository.js';
import { describeEachDatabase } from '../../helpers/app.js';
import { keyRecord, T0 } from '../../helpers/key-fixtures.js';
import { sharedStore } from './store.js';

function newKey(name: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  return keyRecord({ id: randomUUID(), name, primaryVersion: 1, versions: [], ...overrides });
}

function version(n: number, at = T0): NewVersion {
  return { version: n, state: 'enabled', rootKeyId: 'root-a', material: Buffer.alloc(60, n), createdAt: at };
}

describeEachDatabase('KeyRepository contract', (kind) => {
  const store = sharedStore(kind);
  const keys = () => new KnexKeyRepository(store.db);
  const changes = () => new KnexChangeRepository(store.db);
  // Versions name the root key they are wrapped under; the store knows it.
  beforeAll(() => new KnexRootKeyRepository(store.db).recordIfFirst({ id: 'root-a', checkValue: 'check-a' }, T0));

  it('gives back a created key, by name and by id, with its first version', async () => {
    const key = newKey('kc.create', { labels: { a: 'b' }, boundContext: ['namespace'] });
    await keys().create(key, version(1));
    const found = await keys().findByName('kc.create');
    expect(found).toMatchObject({ id: key.id, name: 'kc.create', labels: { a: 'b' }, boundContext: ['namespace'], state: 'enabled' });
    expect(found!.versions.map((v) => [v.version, v.state, v.rootKeyId])).toEqual([[1, 'enabled', 'root-a']]);
    expect((await keys().findRevised({ id: key.id }))?.key).toEqual(found);
    expect(await keys().findNameById(key.id)).toBe('kc.create');
    expect(await keys().findByName('kc.absent')).toBeUndefined();
  });

  it('refuses a second key of one name with KH_ERR_KEY_EXISTS, and keeps the first', async () => {
    const first = newKey('kc.unique');
    await keys().create(first, version(1));
    await expect(keys().create(newKey('kc.unique'), version(1))).rejects.toMatchObject({ code: 'KH_ERR_KEY_EXISTS' });
    expect((await keys().findByName('kc.unique'))!.id).toBe(first.id);
  });

  it('records a create change in the same commit as the key', async () => {
    const before = await changes().latestSeq();
    const key = newKey('kc.change');
    await keys().create(key, version(1));
    expect((await changes().since(before, 10)).map((c) => [c.kind, c.action, c.subject, c.keyName])).toEqual([
      ['key', 'create', key.id, 'kc.change'],
    ]);
  });

  it('lists names in byte-wise order, under a prefix, after a cursor, up to a limit', async () => {
    for (const name of ['kl.b', 'kl.A', 'kl.a', 'kl.c', 'klx']) await keys().create(newKey(name), version(1));
    expect((await keys().list({ prefix: 'kl.', limit: 10 })).map((k) => k.name)).toEqual(['kl.A', 'kl.a', 'kl.b', 'kl.c']);
    expect((await keys().list({ prefix: 'kl.', after: 'kl.a', limit: 2 })).map((k) => k.name)).toEqual(['kl.b', 'kl.c']);
    expect((await keys().list({ prefix: 'kl.', after: 'kl.c', limit: 2 })).map((k) => k.name)).toEqual([]);
  });

  it('lists keys summarised: their versions counted in the store, the primary version\'s creation time', async () => {
    const key = newKey('ks.counted');
    await keys().create(key, version(1));
    const later = new Date(T0.getTime() + 60_000);
    await keys().mutate(key.name, 'rotate', async (_key, writer) => {
      await writer.insertVersion(version(2, later));
      await writer.insertVersion(version(3, new Date(T0.getTime() + 120_000)));
      await writer.setVersionState(1, 'disabled', later);
      await writer.updateKey({ primaryVersion: 2, updatedAt: later });
    });
    const [summary] = await keys().list({ prefix: 'ks.', limit: 10 });
    expect(summary).toMatchObject({ id: key.id, name: 'ks.counted', versionCount: 3, enabledVersionCount: 2, primaryVersionCreatedAt: later });
    expect(summary).not.toHaveProperty('versions');
  });

  it('mutate applies the writes together, returns the key after them, and records one change', async () => {
    const key = newKey('km.rotate');
    await keys().create(key, version(1));
    const before = await changes().latestSeq();
    const at = new Date(T0.getTime() + 1000);
    const outcome = await keys().mutate(key.name, 'rotate', async (_key, writer) => {
      await writer.insertVersion(version(2, at));
      await writer.updateKey({ primaryVersion: 2, updatedAt: at });
      return 'done';
    });
    expect(outcome!.result).toBe('done');
    expect(outcome!.key.primaryVersion).toBe(2);
    expect(outcome!.key.versions.map((v) => v.version)).toEqual([1, 2]);
    expect((await changes().since(before, 10)).map((c) => c.action)).toEqual(['rotate']);
  });

  it('mutate keeps nothing of a function that throws, and records no change', async () => {
    const key = newKey('km.rollback');
    await keys().create(key, version(1));
    const before = await changes().latestSeq();
    await expect(
      keys().mutate(key.name, 'disable', async (_key, writer) => {
        await writer.updateKey({ state: 'disabled', updatedAt: T0 });
        throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    expect((await keys().findByName(key.name))!.state).toBe('enabled');
    expect(await changes().latestSeq()).toBe(before);
  });

  it('mutate records no change when the function wrote nothing, and answers undefined for an unknown name', async () => {
    const key = newKey('km.noop');
    await keys().create(key, version(1));
    const before = await changes().latestSeq();
    expect((await keys().mutate(key.name, 'enable', async () => 'noop'))!.result).toBe('noop');
    expect(await changes().latestSeq()).toBe(before);
    expect(await keys().mutate('km.absent', 'enable', async () => 'noop')).toBeUndefined();
  });

  it('raises the revision with each mutation that wrote, and only then; the revision comes with the key, or alone', async () => {
    const key = newKey('kr.revision');
    await keys().create(key, version(1));
    expect(await keys().findRevision(key.id)).toBe(0);
    await keys().mutate(key.name, 'enable', async () => 'nothing written');
    expect(await keys().findRevision(key.id)).toBe(0);
    // Two writes in one mutation are one revision.
    await keys().mutate(key.name, 'rotate', async (_key, writer) => {
      await writer.insertVersion(version(2));
      await writer.updateKey({ primaryVersion: 2, updatedAt: T0 });
    });
    expect(await keys().findRevision(key.id)).toBe(1);
    await keys().mutate(key.name, 'disable-version', async (_key, writer) => writer.setVersionState(1, 'disabled', T0));
    const revised = await keys().findRevised({ name: key.name });
    expect(revised?.revision).toBe(2);
    expect(revised?.key.versions.map((v) => v.state)).toEqual(['disabled', 'enabled']);
    expect(await keys().findRevised({ id: key.id })).toEqual(revised);
    await expect(keys().mutate(key.name, 'disable', async (_key, writer) => {
      await writer.updateKey({ state: 'disabled', updatedAt: T0 });
      throw new Error('rolled back');
    })).rejects.toThrow('rolled back');
    expect(await keys().findRevision(key.id)).toBe(2);
    expect(await keys().findRevision(randomUUID())).toBeUndefined();
    expect(await keys().findRevised({ name: 'kr.absent' })).toBeUndefined();
  });

  it('concurrent mutations of one key apply one after another', async () => {
    const key = newKey('km.serial');
    await keys().create(key, version(1));
    await Promise.all(
      [0, 1, 2, 3].map(() =>
        keys().mutate(key.name, 'rotate', async (locked, writer) => {
          const next = Math.max(...locked.versions.map((v) => v.version)) + 1;
          await writer.insertVersion(version(next));
          await writer.updateKey({ primaryVersion: next, updatedAt: T0 });
        }),
      ),
    );
    expect((await keys().findByName(key.name))!.versions.map((v) => v.version)).toEqual([1, 2, 3, 4, 5]);
  });

  it('destroying erases every version’s material and records destroy', async () => {
    const key = newKey('km.destroy');
    await keys().create(key, version(1));
    const before = await changes().latestSeq();
    await keys().mutate(key.name, 'schedule-deletion', async (_key, writer) => {
      await writer.destroyAllVersions(T0);
      await writer.updateKey({ state: 'destroyed', destroyedAt: T0, updatedAt: T0 });
    });
    expect(await keys().findWrappedVersions(key.id)).toEqual([]);
    expect((await keys().findByName(key.name))!.versions.map((v) => v.state)).toEqual(['destroyed']);
    expect((await changes().since(before, 10)).map((c) => c.action)).toEqual(['destroy']);
  });

  it('gives back wrapped material of the versions asked for, in version order', async () => {
    const key = newKey('kw.material');
    await keys().create(key, version(1));
    await keys().mutate(key.name, 'rotate', async (_key, writer) => writer.insertVersion(version(2)));
    const all = await keys().findWrappedVersions(key.id);
    expect(all.map((v) => [v.version, v.rootKeyId, v.material.equals(Buffer.alloc(60, v.version))])).toEqual([
      [1, 'root-a', true],
      [2, 'root-a', true],
    ]);
    expect((await keys().findWrappedVersions(key.id, [2])).map((v) => v.version)).toEqual([2]);
  });

  it('finds keys due for rotation and for destruction, earliest first, up to a limit', async () => {
    const far = new Date(T0.getTime() + 1e12);
    const at = (ms: number) => new Date(far.getTime() + ms);
    await keys().create(newKey('kd.r2', { nextRotationAt: at(2) }), version(1));
    await keys().create(newKey('kd.r1', { nextRotationAt: at(1) }), version(1));
    await keys().create(newKey('kd.r-disabled', { state: 'disabled', nextRotationAt: at(0) }), version(1));
    await keys().create(newKey('kd.d1', { state: 'pending_deletion', deletionDate: at(1) }), version(1));
    const due = (names: string[]) => names.filter((name) => name.startsWith('kd.'));
    expect(due(await keys().findDueForRotation(at(2), 100))).toEqual(['kd.r1', 'kd.r2']);
    expect(due(await keys().findDueForRotation(at(1), 100))).toEqual(['kd.r1']);
    expect(due(await keys().findDueForDestruction(at(1), 100))).toEqual(['kd.d1']);
    expect(due(await keys().findDueForDestruction(at(0), 100))).toEqual([]);
  });
});

