import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';
import { GOLDEN_KH1 } from '../helpers/golden.js';

describeEachDatabase('golden kh1 ciphertexts through the server', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind, { env: { KEYHOLD_ROOT_KEY: GOLDEN_KH1.rootKey } });
    // Put the key exactly as release 1 stored it: the wrapped material straight from the fixture.
    const db = t.db;
    const at = Date.parse('2026-11-28T00:00:00Z');
    await db('keys').insert({
      id: GOLDEN_KH1.keyId,
      name: 'golden',
      description: '',
      labels: '{}',
      state: 'enabled',
      primary_version: 2,
      min_decryption_version: 1,
      created_at: at,
      updated_at: at,
    });
    await db('key_versions').insert(
      GOLDEN_KH1.versions.map((v) => ({
        key_id: GOLDEN_KH1.keyId,
        version: v.version,
        state: 'enabled',
        material: Buffer.from(v.wrappedMaterial, 'base64'),
        root_key_id: GOLDEN_KH1.rootKeyId,
        created_at: at,
        updated_at: at,
      })),
    );
  });
  afterEach(async () => t.close());

  it('decrypts every golden ciphertext to its plaintext', async () => {
    for (const golden of GOLDEN_KH1.cases) {
      const response = await t.call('POST', '/v1/decrypt', { ciphertext: golden.ciphertext, context: golden.context });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ keyName: 'golden', keyVersion: golden.version, plaintext: golden.plaintext });
    }
  });

  it('rewraps a golden ciphertext under the current primary version', async () => {
    const golden = GOLDEN_KH1.cases[1]!;
    const rewrapped = await t.call('POST', '/v1/keys/golden/rewrap', { ciphertext: golden.ciphertext, context: golden.context });
    expect(rewrapped.status).toBe(200);
    expect(rewrapped.body.keyVersion).toBe(2);
    const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: rewrapped.body.ciphertext, context: golden.context });
    expect(decrypted.body.plaintext).toBe(golden.plaintext);
  });
});
