import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';

describeEachDatabase('concurrent writes and the sweeper', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind, { env: { KEYHOLD_SWEEP_INTERVAL_MS: '100' }, deps: { sweeper: true } });
  });
  afterEach(async () => t.close());

  it('parallel rotations produce consecutive, unique versions and one primary', async () => {
    await t.call('POST', '/v1/keys', { name: 'busy' });
    const rotations = await Promise.all(Array.from({ length: 12 }, () => t.call('POST', '/v1/keys/busy/rotate')));
    expect(rotations.map((r) => r.status)).toEqual(Array(12).fill(200));
    const key = (await t.call('GET', '/v1/keys/busy')).body;
    expect(key.versions.map((v: { version: number }) => v.version)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    expect(key.primaryVersion).toBe(13);
    const primaries = rotations.map((r) => r.body.primaryVersion).sort((a: number, b: number) => a - b);
    expect(primaries).toEqual(Array.from({ length: 12 }, (_, i) => i + 2));
  });

  it('datakeys issued while the key rotates all decrypt', async () => {
    await t.call('POST', '/v1/keys', { name: 'moving' });
    const work = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 5 === 0 ? t.call('POST', '/v1/keys/moving/rotate') : t.call('POST', '/v1/keys/moving/datakey', {}),
      ),
    );
    const dataKeys = work.filter((r) => r.body.ciphertext !== undefined);
    expect(dataKeys.length).toBe(24);
    for (const dk of dataKeys) {
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: dk.body.ciphertext });
      expect(decrypted.body.plaintext).toBe(dk.body.plaintext);
    }
  });

  it('the sweeper destroys a key once its deletion date has passed, without anyone reading it', async () => {
    await t.call('POST', '/v1/keys', { name: 'doomed' });
    await t.call('POST', '/v1/keys/doomed/schedule-deletion', { pendingWindowDays: 7 });
    t.clock.advance(7 * 24 * 3600 * 1000 + 1);
    const db = t.db;
    const deadline = Date.now() + 10_000;
    let state: string | undefined;
    while (Date.now() < deadline) {
      state = (await db('keys').where({ name: 'doomed' }).first('state'))?.state;
      if (state === 'destroyed') break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(state).toBe('destroyed');
    const material = await db('key_versions').whereNotNull('material').count({ n: '*' }).first();
    expect(Number(material?.n)).toBe(0);
  });
});
