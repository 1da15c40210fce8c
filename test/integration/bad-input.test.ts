import { callerOf } from '../../src/context/caller.js';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

describeEachDatabase('bad input found in review', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
    await t.call('POST', '/v1/keys', { name: 'k' });
  });
  afterEach(async () => t.close());

  it('a malformed URL is answered as a problem, not with fastify’s own body', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/keys/%zz' });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(response.body)).toMatchObject({ code: 'KH_ERR_VALIDATION', requestId: response.headers['x-request-id'] });
  });

  it('a NUL character in a description or label is a 400, not a database error', async () => {
    expectProblem(await t.call('POST', '/v1/keys', { name: 'n', description: 'a\u0000b' }), 400, 'KH_ERR_VALIDATION');
    expectProblem(await t.call('PATCH', '/v1/keys/k', { description: '\u0000' }), 400, 'KH_ERR_VALIDATION');
    expectProblem(await t.call('PATCH', '/v1/keys/k', { labels: { team: '\u0000' } }), 400, 'KH_ERR_VALIDATION');
  });

  it('a token cursor holding a NUL or a foreign shape is a 400', async () => {
    for (const value of [['a\u0000', 'x'], ['a', 'not-an-id'], { a: 1 }]) {
      const cursor = Buffer.from(JSON.stringify(value)).toString('base64url');
      expectProblem(await t.call('GET', `/v1/tokens?cursor=${cursor}`), 400, 'KH_ERR_VALIDATION');
    }
  });

  it('datakey and state changes take a missing or empty body as {}', async () => {
    expect((await t.call('POST', '/v1/keys/k/datakey')).status).toBe(200);
    const empty = await t.app.inject({
      method: 'POST',
      url: '/v1/keys/k/rotate',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      payload: '',
    });
    expect(empty.statusCode).toBe(200);
  });

  it('a body that is not valid UTF-8 is a 400, not read with U+FFFD in place of its bytes', async () => {
    // {"context":{"tenant":"<byte>"}}: a lenient decoder reads 0xFF and 0xFE alike, so each would decrypt the other's.
    const bodyWithByte = (byte: number) =>
      Buffer.concat([Buffer.from('{"context":{"tenant":"'), Buffer.from([byte]), Buffer.from('"}}')]);
    const post = (url: string, payload: Buffer) =>
      t.app.inject({
        method: 'POST',
        url,
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        payload,
      });
    for (const byte of [0xff, 0xfe]) {
      const response = await post('/v1/keys/k/datakey', bodyWithByte(byte));
      expect(response.statusCode).toBe(400);
      expect(JSON.parse(response.body)).toMatchObject({ code: 'KH_ERR_VALIDATION', detail: 'The request body is not valid UTF-8' });
    }
    // A truncated multi-byte sequence (the first byte of "é") is refused too; the well-formed one is read as sent.
    const truncated = Buffer.concat([Buffer.from('{"context":{"tenant":"'), Buffer.from([0xc3]), Buffer.from('"}}')]);
    expect((await post('/v1/keys/k/datakey', truncated)).statusCode).toBe(400);
    const wellFormed = await post('/v1/keys/k/datakey', Buffer.from('{"context":{"tenant":"é"}}'));
    expect(wellFormed.statusCode).toBe(200);
    const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: JSON.parse(wellFormed.body).ciphertext, context: { tenant: 'é' } });
    expect(decrypted.status).toBe(200);
  });

  it('a body that needs fields still refuses to be missing', async () => {
    expectProblem(await t.call('POST', '/v1/keys/k/encrypt'), 400, 'KH_ERR_VALIDATION');
  });

  it('the encrypt input is zeroed once sealed, and the ciphertext still decrypts', async () => {
    const plaintext = Buffer.from('zero me after use');
    const sealed = await t.services.envelope.encrypt(
      callerOf((await t.services.tokens.authenticate(TEST_ADMIN_TOKEN))!),
      'k',
      { plaintext },
    );
    expect(plaintext.every((byte) => byte === 0)).toBe(true);
    const opened = await t.call('POST', '/v1/decrypt', { ciphertext: sealed.ciphertext });
    expect(Buffer.from(opened.body.plaintext, 'base64').toString()).toBe('zero me after use');
  });
});

describeEachDatabase('empty query parameters mean absent', (kind) => {
  it('GET /v1/keys?prefix=&limit=&cursor= lists from the start with the default page size', async () => {
    const t = await buildTestApp(kind);
    try {
      await t.call('POST', '/v1/keys', { name: 'a' });
      await t.call('POST', '/v1/keys', { name: 'b' });
      const response = await t.call('GET', '/v1/keys?prefix=&limit=&cursor=');
      expect(response.status).toBe(200);
      expect(response.body.keys.map((k: { name: string }) => k.name)).toEqual(['a', 'b']);
      expect((await t.call('GET', '/v1/tokens?limit=&cursor=')).status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
