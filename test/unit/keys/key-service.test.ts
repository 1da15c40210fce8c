import { describe, expect, it } from 'vitest';
import { KeyholdError } from '../../../src/errors.js';
import { DEFAULT_PENDING_WINDOW_DAYS } from '../../../src/keys/lifecycle.js';
import { keyWorld } from '../../helpers/fakes/key-world.js';

const DAY_MS = 24 * 3600 * 1000;

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toBeInstanceOf(KeyholdError);
  await expect(promise).rejects.toMatchObject({ code });
}

describe('KeyService.create', () => {
  it('stores an enabled key with one enabled version, primary and minimum 1, and records a create change', async () => {
    const world = keyWorld();
    const key = await world.keys.create(world.admin(), { name: 'payments', labels: { team: 'a' } });
    expect(key).toMatchObject({ name: 'payments', state: 'enabled', primaryVersion: 1, minDecryptionVersion: 1, labels: { team: 'a' } });
    expect(key.versions.map((v) => [v.version, v.state, v.rootKeyId])).toEqual([[1, 'enabled', world.rootKey.id]]);
    expect(world.repository.changes.map((c) => [c.action, c.keyName])).toEqual([['create', 'payments']]);
  });

  it('stores the version material wrapped under the root key, never in the clear', async () => {
    const world = keyWorld();
    const key = await world.keys.create(world.admin(), { name: 'k' });
    const [wrapped] = await world.repository.findWrappedVersions(key.id);
    expect(wrapped!.material.length).toBeGreaterThan(32);
    const cached = await world.cache.getByName('k');
    expect(cached!.versionKeys.get(1)!.use((bytes) => wrapped!.material.includes(bytes))).toBe(false);
  });

  it('refuses a name already taken with KH_ERR_KEY_EXISTS', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await rejectsWith(world.keys.create(world.admin(), { name: 'k' }), 'KH_ERR_KEY_EXISTS');
  });

  it('schedules the first rotation one period after creation', async () => {
    const world = keyWorld();
    const key = await world.keys.create(world.admin(), { name: 'k', rotationPeriodSeconds: 3600 });
    expect(key.nextRotationAt?.getTime()).toBe(world.clock.now().getTime() + 3600 * 1000);
  });

  it('refuses a rotation period outside the allowed range before storing anything', async () => {
    const world = keyWorld();
    await rejectsWith(world.keys.create(world.admin(), { name: 'k', rotationPeriodSeconds: 60 }), 'KH_ERR_VALIDATION');
    expect(world.repository.changes).toEqual([]);
  });

  it('refuses a caller without keys:create, and stores nothing', async () => {
    const world = keyWorld([{ actions: ['keys:read'] }]);
    await rejectsWith(world.keys.create(world.worker(), { name: 'k' }), 'KH_ERR_FORBIDDEN');
    expect(await world.repository.findByName('k')).toBeUndefined();
  });
});

describe('KeyService.rotate', () => {
  it('adds a version, makes it primary, and records one rotate change', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    const key = await world.keys.rotate(world.admin(), 'k');
    expect(key.primaryVersion).toBe(2);
    expect(key.versions.map((v) => v.version)).toEqual([1, 2]);
    expect(world.repository.changes.map((c) => c.action)).toEqual(['create', 'rotate']);
  });

  it('keeps only retainVersions versions decryptable by raising the minimum', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k', retainVersions: 2 });
    await world.keys.rotate(world.admin(), 'k');
    const key = await world.keys.rotate(world.admin(), 'k');
    expect([key.primaryVersion, key.minDecryptionVersion]).toEqual([3, 2]);
  });

  it('evicts the cached key, so the next encrypt uses the new primary', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    expect((await world.envelope.encrypt(world.admin(), 'k', { plaintext: Buffer.from('x') })).keyVersion).toBe(1);
    await world.keys.rotate(world.admin(), 'k');
    expect((await world.envelope.encrypt(world.admin(), 'k', { plaintext: Buffer.from('x') })).keyVersion).toBe(2);
  });

  it('answers KH_ERR_KEY_NOT_FOUND for a key that does not exist', async () => {
    const world = keyWorld();
    await rejectsWith(world.keys.rotate(world.admin(), 'missing'), 'KH_ERR_KEY_NOT_FOUND');
  });

  it('rotates every key whose rotation is due, once, and none that is not', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'due', rotationPeriodSeconds: 3600 });
    await world.keys.create(world.admin(), { name: 'later', rotationPeriodSeconds: 7200 });
    world.clock.advance(3 * 3600 * 1000 - 7200 * 1000 + 1);
    expect(await world.keys.rotateDueKeys()).toBe(1);
    expect(await world.keys.rotateDueKeys()).toBe(0);
    expect((await world.repository.findByName('due'))!.primaryVersion).toBe(2);
    expect((await world.repository.findByName('later'))!.primaryVersion).toBe(1);
  });

  it('rotates concurrent requests one after another, each adding its own version', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await Promise.all([1, 2, 3].map(() => world.keys.rotate(world.admin(), 'k')));
    expect((await world.repository.findByName('k'))!.versions.map((v) => v.version)).toEqual([1, 2, 3, 4]);
  });
});

describe('KeyService.disable and enable', () => {
  it('disables and enables a key, each recorded as its own change', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    expect((await world.keys.disable(world.admin(), 'k')).state).toBe('disabled');
    expect((await world.keys.enable(world.admin(), 'k')).state).toBe('enabled');
    expect(world.repository.changes.map((c) => c.action)).toEqual(['create', 'disable', 'enable']);
  });

  it('disabling a disabled key changes nothing and records no change', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await world.keys.disable(world.admin(), 'k');
    const key = await world.keys.disable(world.admin(), 'k');
    expect(key.state).toBe('disabled');
    expect(world.repository.changes.map((c) => c.action)).toEqual(['create', 'disable']);
  });

  it('a disabled key refuses encrypt at once, though the cache held it', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await world.envelope.encrypt(world.admin(), 'k', { plaintext: Buffer.from('x') });
    await world.keys.disable(world.admin(), 'k');
    await rejectsWith(world.envelope.encrypt(world.admin(), 'k', { plaintext: Buffer.from('x') }), 'KH_ERR_KEY_DISABLED');
  });

  it('refuses a caller without keys:disable, and changes nothing', async () => {
    const world = keyWorld([{ actions: ['keys:read'] }]);
    await world.keys.create(world.admin(), { name: 'k' });
    await rejectsWith(world.keys.disable(world.worker(), 'k'), 'KH_ERR_FORBIDDEN');
    expect((await world.repository.findByName('k'))!.state).toBe('enabled');
  });
});

describe('KeyService versions', () => {
  it('disables and enables one version, touching no other', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await world.keys.rotate(world.admin(), 'k');
    const disabled = await world.keys.disableVersion(world.admin(), 'k', 1);
    expect(disabled.versions.map((v) => v.state)).toEqual(['disabled', 'enabled']);
    const enabled = await world.keys.enableVersion(world.admin(), 'k', 1);
    expect(enabled.versions.map((v) => v.state)).toEqual(['enabled', 'enabled']);
    expect(world.repository.changes.map((c) => c.action)).toEqual(['create', 'rotate', 'disable-version', 'enable-version']);
  });

  it('refuses to lower minDecryptionVersion below 1 or raise it above the primary', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await rejectsWith(world.keys.update(world.admin(), 'k', { minDecryptionVersion: 2 }), 'KH_ERR_VALIDATION');
    await rejectsWith(world.keys.update(world.admin(), 'k', { minDecryptionVersion: 0 }), 'KH_ERR_VALIDATION');
  });
});

describe('KeyService deletion', () => {
  it(`schedules deletion ${DEFAULT_PENDING_WINDOW_DAYS} days ahead by default`, async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    const key = await world.keys.scheduleDeletion(world.admin(), 'k');
    expect(key.state).toBe('pending_deletion');
    expect(key.deletionDate!.getTime()).toBe(world.clock.now().getTime() + DEFAULT_PENDING_WINDOW_DAYS * DAY_MS);
  });

  it('cancelling leaves the key disabled, not enabled', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await world.keys.scheduleDeletion(world.admin(), 'k', 7);
    const key = await world.keys.cancelDeletion(world.admin(), 'k');
    expect([key.state, key.deletionDate]).toEqual(['disabled', null]);
  });

  it('a pending key refuses rotation', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await world.keys.scheduleDeletion(world.admin(), 'k', 7);
    await rejectsWith(world.keys.rotate(world.admin(), 'k'), 'KH_ERR_KEY_PENDING_DELETION');
  });

  it('destroys a key whose deletion date passed, erasing every version’s material, and records destroy', async () => {
    const world = keyWorld();
    const created = await world.keys.create(world.admin(), { name: 'k' });
    await world.keys.scheduleDeletion(world.admin(), 'k', 7);
    world.clock.advance(7 * DAY_MS);
    expect(await world.keys.destroyDueKeys()).toBe(1);
    const key = (await world.repository.findByName('k'))!;
    expect(key.state).toBe('destroyed');
    expect(key.versions.map((v) => v.state)).toEqual(['destroyed']);
    expect(await world.repository.findWrappedVersions(created.id)).toEqual([]);
    expect(world.repository.changes.at(-1)!.action).toBe('destroy');
  });

  it('a write to a key past its deletion date destroys it first, then refuses with KH_ERR_KEY_DESTROYED', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await world.keys.scheduleDeletion(world.admin(), 'k', 7);
    world.clock.advance(7 * DAY_MS);
    await rejectsWith(world.keys.cancelDeletion(world.admin(), 'k'), 'KH_ERR_KEY_DESTROYED');
    expect((await world.repository.findByName('k'))!.state).toBe('destroyed');
  });

  it('a read of a key past its deletion date shows it destroyed', async () => {
    const world = keyWorld();
    await world.keys.create(world.admin(), { name: 'k' });
    await world.keys.scheduleDeletion(world.admin(), 'k', 7);
    world.clock.advance(7 * DAY_MS);
    expect((await world.keys.get(world.admin(), 'k')).state).toBe('destroyed');
  });
});

describe('KeyService.list for an admin', () => {
  it('pages through every key in name order with an opaque cursor', async () => {
    const world = keyWorld();
    for (const name of ['c', 'a', 'b']) await world.keys.create(world.admin(), { name });
    const first = await world.keys.list(world.admin(), { limit: 2 });
    expect(first.keys.map((k) => k.name)).toEqual(['a', 'b']);
    const second = await world.keys.list(world.admin(), { limit: 2, cursor: first.nextCursor });
    expect(second.keys.map((k) => k.name)).toEqual(['c']);
    expect(second.nextCursor).toBeUndefined();
  });

  it('refuses a cursor it did not make', async () => {
    const world = keyWorld();
    await rejectsWith(world.keys.list(world.admin(), { limit: 2, cursor: '!!' }), 'KH_ERR_VALIDATION');
  });
});
