import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';

describeEachDatabase('datakey round trip', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => t.close());

  it('issues a data key that decrypts to the same plaintext', async () => {
    expect((await t.call('POST', '/v1/keys', { name: 'app' })).status).toBe(201);
    const dk = await t.call('POST', '/v1/keys/app/datakey', { context: { tenant: 'a' } });
    expect(dk.status).toBe(200);
    const pt = await t.call('POST', '/v1/decrypt', { ciphertext: dk.body.ciphertext, context: { tenant: 'a' } });
    expect(pt.status).toBe(200);
    expect(pt.body.plaintext).toBe(dk.body.plaintext);
  });
});
