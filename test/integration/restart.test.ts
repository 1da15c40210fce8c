import { afterEach, expect, it } from 'vitest';
import { StartupError } from '../../src/errors.js';
import { buildTestApp, describeEachDatabase, TestStore, type TestApp } from '../helpers/app.js';

describeEachDatabase('restart', (kind) => {
  let store: TestStore;
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.app.close();
    await store.destroy();
  });

  async function seed(): Promise<{ ciphertext: string; plaintext: string }> {
    store = new TestStore(kind);
    t = await buildTestApp(kind, { store });
    await t.call('POST', '/v1/keys', { name: 'durable' });
    const dk = await t.call('POST', '/v1/keys/durable/datakey', { context: { app: 'x' } });
    await t.call('POST', '/v1/keys/durable/rotate');
    return dk.body;
  }

  it('keys made before a restart decrypt after it', async () => {
    const before = await seed();
    t = await t!.restart();
    const after = await t.call('POST', '/v1/decrypt', { ciphertext: before.ciphertext, context: { app: 'x' } });
    expect(after.status).toBe(200);
    expect(after.body.plaintext).toBe(before.plaintext);
    expect((await t.call('GET', '/v1/keys/durable')).body.primaryVersion).toBe(2);
  });

  it('a wrong root key refuses start-up by its check value', async () => {
    await seed();
    const restart = t!.restart({ KEYHOLD_ROOT_KEY: Buffer.alloc(32, 9).toString('base64') });
    t = undefined;
    await expect(restart).rejects.toThrow(StartupError);
    await expect(restart).rejects.toThrow(/check value does not match/);
  });

  it('a missing root key refuses start-up when the store holds keys', async () => {
    await seed();
    const restart = t!.restart({ KEYHOLD_ROOT_KEY: '' });
    t = undefined;
    await expect(restart).rejects.toThrow(/no root key is configured/);
  });
});
