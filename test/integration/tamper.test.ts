import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type ApiResponse, type TestApp } from '../helpers/app.js';

const decode = (ciphertext: string): Buffer => Buffer.from(ciphertext.slice('kh1:'.length), 'base64url');
const encode = (bytes: Buffer): string => `kh1:${bytes.toString('base64url')}`;

/** Every decryption failure must be indistinguishable: same status, same body but for the request id. */
function expectUniformFailure(response: ApiResponse): void {
  expect(response.status).toBe(400);
  expect(response.headers['content-type']).toContain('application/problem+json');
  const { requestId: _id, ...rest } = response.body;
  expect(rest).toEqual({
    type: 'https://keyhold.dev/problems/decryption-failed',
    title: 'Decryption failed',
    status: 400,
    detail: 'The ciphertext could not be decrypted',
    code: 'KH_ERR_DECRYPTION_FAILED',
  });
  expect(response.text).not.toContain('plaintext');
}

describeEachDatabase('tampered ciphertexts', (kind) => {
  let t: TestApp;
  let ciphertext: string;
  let otherKeyCiphertext: string;
  const context = { tenant: 'acme' };

  beforeAll(async () => {
    t = await buildTestApp(kind);
    await t.call('POST', '/v1/keys', { name: 'victim' });
    await t.call('POST', '/v1/keys', { name: 'other' });
    ciphertext = (await t.call('POST', '/v1/keys/victim/encrypt', { plaintext: Buffer.from('attack at dawn').toString('base64'), context })).body.ciphertext;
    otherKeyCiphertext = (await t.call('POST', '/v1/keys/other/encrypt', { plaintext: Buffer.from('attack at dawn').toString('base64'), context })).body.ciphertext;
  });
  afterAll(async () => t.close());

  const decrypt = (value: string, ctx: Record<string, string> = context) => t.call('POST', '/v1/decrypt', { ciphertext: value, context: ctx });

  it('the untampered ciphertext decrypts', async () => {
    expect((await decrypt(ciphertext)).status).toBe(200);
  });

  it('flipping any bit of any byte fails the same way', async () => {
    const bytes = decode(ciphertext);
    for (let index = 0; index < bytes.length; index += 1) {
      for (const mask of [0x01, 0x80]) {
        const tampered = Buffer.from(bytes);
        tampered[index]! ^= mask;
        expectUniformFailure(await decrypt(encode(tampered)));
      }
    }
  });

  it('every truncation fails the same way', async () => {
    const bytes = decode(ciphertext);
    for (let length = 1; length < bytes.length; length += 1) {
      expectUniformFailure(await decrypt(encode(bytes.subarray(0, length))));
    }
  });

  it('appended bytes fail the same way', async () => {
    const bytes = decode(ciphertext);
    for (const extra of [Buffer.from([0]), Buffer.alloc(16, 0xff)]) {
      expectUniformFailure(await decrypt(encode(Buffer.concat([bytes, extra]))));
    }
  });

  it('splicing the header of one key onto the body of another fails the same way', async () => {
    const victim = decode(ciphertext);
    const other = decode(otherKeyCiphertext);
    expectUniformFailure(await decrypt(encode(Buffer.concat([other.subarray(0, 65), victim.subarray(65)]))));
    expectUniformFailure(await decrypt(encode(Buffer.concat([victim.subarray(0, 21), other.subarray(21)]))));
  });

  it('a wrong, missing or extended context fails the same way', async () => {
    expectUniformFailure(await decrypt(ciphertext, { tenant: 'evil' }));
    expectUniformFailure(await decrypt(ciphertext, {}));
    expectUniformFailure(await decrypt(ciphertext, { ...context, extra: '1' }));
  });

  it('a ciphertext of another key, sent to this key, fails the same way', async () => {
    expectUniformFailure(await t.call('POST', '/v1/keys/victim/decrypt', { ciphertext: otherKeyCiphertext, context }));
  });

  it('a ciphertext naming an unknown key or version fails the same way', async () => {
    const unknownKey = decode(ciphertext);
    unknownKey.fill(0x42, 1, 17);
    expectUniformFailure(await decrypt(encode(unknownKey)));
    const unknownVersion = decode(ciphertext);
    unknownVersion.writeUInt32BE(7, 17);
    expectUniformFailure(await decrypt(encode(unknownVersion)));
  });

  it('padded, non-canonical or foreign-alphabet text fails the same way', async () => {
    const body = ciphertext.slice(4);
    for (const value of [`kh1:${body}=`, `kh1:${body}A`, `kh1:+${body.slice(1)}`, `kh1:${body.slice(0, -1)}*`, `kh2:${body}`]) {
      const response = await decrypt(value);
      // The schema's pattern refuses some of these before the service sees them; either way no plaintext.
      expect(response.status).toBe(400);
      expect(response.text).not.toContain('"plaintext"');
    }
  });
});

describe('nothing secret reaches the logs', () => {
  it('no data key, plaintext, token or their base64 forms appears in any log line', async () => {
    const t = await buildTestApp('sqlite');
    try {
      const secret = Buffer.from('the launch codes are 0000');
      await t.call('POST', '/v1/keys', { name: 'logged' });
      const dk = await t.call('POST', '/v1/keys/logged/datakey', {});
      const enc = await t.call('POST', '/v1/keys/logged/encrypt', { plaintext: secret.toString('base64') });
      await t.call('POST', '/v1/decrypt', { ciphertext: enc.body.ciphertext });
      const issued = await t.call('POST', '/v1/tokens', { name: 'workload' });
      await t.call('GET', '/v1/whoami', undefined, issued.body.token);
      await t.call('GET', '/v1/whoami', undefined, `${issued.body.token}x`);
      const logs = t.logs.text();
      expect(logs.length).toBeGreaterThan(0);
      const needles = [
        dk.body.plaintext,
        Buffer.from(dk.body.plaintext, 'base64').toString('hex'),
        secret.toString(),
        secret.toString('base64'),
        issued.body.token,
        TEST_ADMIN_TOKEN,
      ];
      for (const needle of needles) expect(logs).not.toContain(needle);
    } finally {
      await t.close();
    }
  });
});
