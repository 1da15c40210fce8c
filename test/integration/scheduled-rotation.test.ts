import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';

const HOUR_MS = 3600 * 1000;

describeEachDatabase('scheduled rotation', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => t.close());

  const rotateDue = () => t.app.keyhold.services.keys.rotateDueKeys();
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
