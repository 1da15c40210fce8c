import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';

const HOUR_MS = 3600 * 1000;

describeEachDatabase('scheduled rotation', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => t.close());

  const rotateDue = () => t.services.keys.rotateDueKeys();
  const get = async (name: string) => (await t.call('GET', `/v1/keys/${name}`)).body;

  it('rotates a key once its nextRotationAt has passed, and schedules the next rotation', async () => {
    await t.call('POST', '/v1/keys', { name: 'hourly', rotationPeriodSeconds: 3600 });
    const ciphertext = (await t.call('POST', '/v1/keys/hourly/datakey', {})).body.ciphertext;
    expect(await rotateDue()).toBe(0);
    t.clock.advance(HOUR_MS);
    expect(await rotateDue()).toBe(1);
    const key = await get('hourly');
    expect(key.primaryVersion).toBe(2);
    expect(Date.parse(key.nextRotationAt)).toBe(t.clock.now().getTime() + HOUR_MS);
    expect((await t.call('POST', '/v1/keys/hourly/datakey', {})).body.keyVersion).toBe(2);
    expect((await t.call('POST', '/v1/decrypt', { ciphertext })).status).toBe(200);
  });

  it('rotates only once when the service missed several periods', async () => {
    await t.call('POST', '/v1/keys', { name: 'missed', rotationPeriodSeconds: 3600 });
    t.clock.advance(5 * HOUR_MS);
    expect(await rotateDue()).toBe(1);
    expect(await rotateDue()).toBe(0);
    expect((await get('missed')).primaryVersion).toBe(2);
  });

  it('a second sweep at the same moment, as from another replica, rotates nothing more', async () => {
    await t.call('POST', '/v1/keys', { name: 'raced', rotationPeriodSeconds: 3600 });
    t.clock.advance(HOUR_MS);
    const counts = await Promise.all([rotateDue(), rotateDue(), rotateDue()]);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(1);
    expect((await get('raced')).versions).toHaveLength(2);
  });

  it('leaves disabled keys and keys without a period alone', async () => {
    await t.call('POST', '/v1/keys', { name: 'paused', rotationPeriodSeconds: 3600 });
    await t.call('POST', '/v1/keys/paused/disable');
    await t.call('POST', '/v1/keys', { name: 'manual' });
    t.clock.advance(2 * HOUR_MS);
    expect(await rotateDue()).toBe(0);
    expect((await get('paused')).primaryVersion).toBe(1);
    expect((await get('manual')).primaryVersion).toBe(1);
  });

  it('turning the period off stops scheduled rotation', async () => {
    await t.call('POST', '/v1/keys', { name: 'off', rotationPeriodSeconds: 3600 });
    await t.call('PATCH', '/v1/keys/off', { rotationPeriodSeconds: 0 });
    expect((await get('off')).nextRotationAt).toBeNull();
    t.clock.advance(2 * HOUR_MS);
    expect(await rotateDue()).toBe(0);
  });
});

describeEachDatabase('retainVersions', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => t.close());

  it('scheduled rotation retires all but the newest retained versions, and lowering the minimum restores them', async () => {
    const created = await t.call('POST', '/v1/keys', { name: 'kept', rotationPeriodSeconds: 3600, retainVersions: 2 });
    expect(created.status).toBe(201);
    expect(created.body.retainVersions).toBe(2);
    const ciphertexts = [(await t.call('POST', '/v1/keys/kept/datakey', {})).body.ciphertext];
    for (let i = 0; i < 3; i += 1) {
      t.clock.advance(HOUR_MS);
      expect(await t.services.keys.rotateDueKeys()).toBe(1);
      ciphertexts.push((await t.call('POST', '/v1/keys/kept/datakey', {})).body.ciphertext);
    }
    const key = (await t.call('GET', '/v1/keys/kept')).body;
    expect(key.primaryVersion).toBe(4);
    expect(key.minDecryptionVersion).toBe(3);
    const statuses = [];
    for (const ciphertext of ciphertexts) statuses.push((await t.call('POST', '/v1/decrypt', { ciphertext })).status);
    expect(statuses).toEqual([409, 409, 200, 200]);
    // Retired, not destroyed: the material is still there.
    await t.call('PATCH', '/v1/keys/kept', { minDecryptionVersion: 1 });
    expect((await t.call('POST', '/v1/decrypt', { ciphertext: ciphertexts[0] })).status).toBe(200);
  });

  it('applies from the next manual rotation, never lowers a minimum raised by hand, and null keeps every version', async () => {
    await t.call('POST', '/v1/keys', { name: 'manual' });
    for (let i = 0; i < 4; i += 1) await t.call('POST', '/v1/keys/manual/rotate');
    const patched = await t.call('PATCH', '/v1/keys/manual', { retainVersions: 3 });
    expect(patched.body).toMatchObject({ retainVersions: 3, primaryVersion: 5, minDecryptionVersion: 1 });
    expect((await t.call('POST', '/v1/keys/manual/rotate')).body.minDecryptionVersion).toBe(4);
    await t.call('PATCH', '/v1/keys/manual', { minDecryptionVersion: 6 });
    expect((await t.call('POST', '/v1/keys/manual/rotate')).body.minDecryptionVersion).toBe(6);
    await t.call('PATCH', '/v1/keys/manual', { retainVersions: null });
    const rotated = (await t.call('POST', '/v1/keys/manual/rotate')).body;
    expect(rotated).toMatchObject({ retainVersions: null, primaryVersion: 8, minDecryptionVersion: 6 });
  });

  it('refuses a retainVersions below 1 or not an integer with 400', async () => {
    for (const retainVersions of [0, -1, 1.5, '2']) {
      const response = await t.call('POST', '/v1/keys', { name: 'bad', retainVersions });
      expect(response.status).toBe(400);
      expect(response.body.code).toBe('KH_ERR_VALIDATION');
    }
  });
});
