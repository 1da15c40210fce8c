import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type ApiResponse, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;
const SECRET = Buffer.from('attack at dawn').toString('base64');

const iso = (ms: number): string => new Date(ms).toISOString();

describeEachDatabase('key administration', (kind) => {
  let t: TestApp;
  beforeEach(async () => {
    t = await buildTestApp(kind);
  });
  afterEach(async () => t.close());

  const now = (): number => t.clock.now().getTime();

  async function createKey(name: string, body: Record<string, unknown> = {}): Promise<any> {
    const response = await t.call('POST', '/v1/keys', { name, ...body });
    expect(response.status).toBe(201);
    return response.body;
  }

  async function getKey(name: string): Promise<any> {
    const response = await t.call('GET', `/v1/keys/${name}`);
    expect(response.status).toBe(200);
    return response.body;
  }

  async function transition(name: string, path: string, body?: unknown): Promise<any> {
    const response = await t.call('POST', `/v1/keys/${name}/${path}`, body);
    expect(response.status).toBe(200);
    return response.body;
  }

  async function encrypt(name: string): Promise<{ ciphertext: string; keyVersion: number }> {
    const response = await t.call('POST', `/v1/keys/${name}/encrypt`, { plaintext: SECRET });
    expect(response.status).toBe(200);
    return response.body;
  }

  function decrypt(ciphertext: string): Promise<ApiResponse> {
    return t.call('POST', '/v1/decrypt', { ciphertext });
  }

  async function expectDecrypts(ciphertext: string): Promise<void> {
    const response = await decrypt(ciphertext);
    expect(response.status).toBe(200);
    expect(response.body.plaintext).toBe(SECRET);
  }

  describe('POST /v1/keys', () => {
    it('creates an enabled key with version 1 and answers 201 with every field', async () => {
      const created = now();
      const response = await t.call('POST', '/v1/keys', { name: 'orders' });
      expect(response.status).toBe(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
        name: 'orders',
        description: '',
        labels: {},
        boundContext: [],
        state: 'enabled',
        primaryVersion: 1,
        minDecryptionVersion: 1,
        rotationPeriodSeconds: null,
        retainVersions: null,
        nextRotationAt: null,
        deletionDate: null,
        createdAt: iso(created),
        updatedAt: iso(created),
        destroyedAt: null,
        versions: [
          {
            version: 1,
            state: 'enabled',
            rootKeyId: expect.any(String),
            createdAt: iso(created),
            updatedAt: iso(created),
            destroyedAt: null,
          },
        ],
      });
    });

    it('stores the description, labels and rotation period given at creation', async () => {
      const created = now();
      const key = await createKey('billing', {
        description: 'invoices',
        labels: { team: 'payments', 'app.kubernetes.io/name': 'billing' },
        rotationPeriodSeconds: 3600,
      });
      expect(key).toMatchObject({
        description: 'invoices',
        labels: { team: 'payments', 'app.kubernetes.io/name': 'billing' },
        rotationPeriodSeconds: 3600,
        nextRotationAt: iso(created + HOUR_MS),
      });
    });

    it('never returns key material', async () => {
      const response = await t.call('POST', '/v1/keys', { name: 'orders' });
      expect(Object.keys(response.body.versions[0]).sort()).toEqual(
        ['createdAt', 'destroyedAt', 'rootKeyId', 'state', 'updatedAt', 'version'],
      );
      expect(response.text).not.toMatch(/material/i);
    });

    it('refuses a second key with the same name with 409 KH_ERR_KEY_EXISTS', async () => {
      await createKey('orders');
      expectProblem(await t.call('POST', '/v1/keys', { name: 'orders' }), 409, 'KH_ERR_KEY_EXISTS');
    });

    it('treats names that differ only in case as different keys', async () => {
      await createKey('orders');
      expect((await t.call('POST', '/v1/keys', { name: 'Orders' })).status).toBe(201);
    });

    it.each([
      ['empty', ''],
      ['leading dash', '-orders'],
      ['leading dot', '.orders'],
      ['slash', 'a/b'],
      ['space', 'a b'],
      ['non-ASCII', 'schlüssel'],
      ['129 characters', `a${'b'.repeat(128)}`],
    ])('refuses an invalid name (%s) with 400 KH_ERR_VALIDATION', async (_label, name) => {
      expectProblem(await t.call('POST', '/v1/keys', { name }), 400, 'KH_ERR_VALIDATION');
    });

    it('accepts a name of exactly 128 characters', async () => {
      expect((await t.call('POST', '/v1/keys', { name: `a${'b'.repeat(127)}` })).status).toBe(201);
    });

    it('refuses a rotation period under an hour with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys', { name: 'orders', rotationPeriodSeconds: 100 }), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('GET /v1/keys/{name}', () => {
    it('returns the key as created', async () => {
      const created = await createKey('orders', { description: 'd' });
      expect(await getKey('orders')).toEqual(created);
    });

    it('answers 404 KH_ERR_KEY_NOT_FOUND for an unknown key', async () => {
      expectProblem(await t.call('GET', '/v1/keys/missing'), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('GET /v1/keys', () => {
    const NAMES = ['orders', 'Zulu', 'a_b', 'a.b', 'a-b', '0zero', 'alpha', 'Alpha'];

    async function listAll(query: string): Promise<{ names: string[]; pages: number }> {
      const names: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const response = await t.call('GET', `/v1/keys?${query}${cursor === undefined ? '' : `&cursor=${cursor}`}`);
        expect(response.status).toBe(200);
        pages += 1;
        names.push(...response.body.keys.map((key: { name: string }) => key.name));
        cursor = response.body.nextCursor;
        expect(pages).toBeLessThan(20);
      } while (cursor !== undefined);
      return { names, pages };
    }

    it('follows nextCursor through every key exactly once, in byte order of the name', async () => {
      for (const name of NAMES) await createKey(name);
      const { names, pages } = await listAll('limit=3');
      const byteOrder = [...NAMES].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect(names).toEqual(byteOrder);
      expect(pages).toBe(3);
    });

    it('puts at most limit keys on a page and omits nextCursor on the last page', async () => {
      for (const name of NAMES.slice(0, 6)) await createKey(name);
      const first = await t.call('GET', '/v1/keys?limit=3');
      expect(first.body.keys).toHaveLength(3);
      expect(first.body.nextCursor).toEqual(expect.any(String));
      const second = await t.call('GET', `/v1/keys?limit=3&cursor=${first.body.nextCursor}`);
      expect(second.body.keys).toHaveLength(3);
      // A page that happens to end on the last key cannot know that nothing follows without peeking; Keyhold peeks.
      expect(second.body).not.toHaveProperty('nextCursor');
    });

    it('summarises each key: its versions counted, not listed, and when its primary version was made', async () => {
      await createKey('orders');
      for (let i = 0; i < 2; i += 1) expect((await t.call('POST', '/v1/keys/orders/rotate', {})).status).toBe(200);
      expect((await t.call('POST', '/v1/keys/orders/versions/1/disable', {})).status).toBe(200);
      const key = (await t.call('GET', '/v1/keys/orders')).body;
      const [summary] = (await t.call('GET', '/v1/keys')).body.keys;
      expect(summary).not.toHaveProperty('versions');
      const { versions, ...fields } = key;
      expect(summary).toEqual({ ...fields, versionCount: 3, enabledVersionCount: 2, primaryVersionCreatedAt: versions[2].createdAt });
    });

    it('returns an empty page when there are no keys', async () => {
      const response = await t.call('GET', '/v1/keys');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ keys: [] });
    });

    describe('prefix filter', () => {
      const PREFIX_NAMES = ['app_1', 'appX1', 'app.x', 'appYx', 'App_2', 'APP_3', 'apple', 'ap_p', 'app-1', 'bpp_1'];
      beforeEach(async () => {
        for (const name of PREFIX_NAMES) await createKey(name);
      });

      it.each([
        // '_' is a LIKE wildcard for one character; here it must match only itself.
        ['app_', ['app_1']],
        // '.' has no special meaning in LIKE, but a regular expression would treat it as any character.
        ['app.', ['app.x']],
        // SQLite's LIKE ignores ASCII case; the prefix must not.
        ['App', ['App_2']],
        ['APP', ['APP_3']],
        ['app', ['app-1', 'app.x', 'appX1', 'appYx', 'app_1', 'apple']],
        ['ap_', ['ap_p']],
        ['zzz', []],
      ])('prefix %s matches exactly %j', async (prefix, expected) => {
        const { names } = await listAll(`prefix=${encodeURIComponent(prefix)}&limit=2`);
        expect(names).toEqual(expected);
      });
    });

    it.each([
      ['characters outside base64url', '!!!!'],
      ['a cursor that does not decode to a key name', 'AAAA'],
      ['a cursor that is not canonical base64url', 'b3JkZXJzx'],
    ])('refuses %s with 400 KH_ERR_VALIDATION', async (_label, cursor) => {
      expectProblem(await t.call('GET', `/v1/keys?cursor=${encodeURIComponent(cursor)}`), 400, 'KH_ERR_VALIDATION');
    });

    it.each(['0', '501', 'ten', '-1'])('refuses limit=%s with 400 KH_ERR_VALIDATION', async (limit) => {
      expectProblem(await t.call('GET', `/v1/keys?limit=${limit}`), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses an unknown query parameter with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('GET', '/v1/keys?state=enabled'), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('PATCH /v1/keys/{name}', () => {
    beforeEach(async () => {
      await createKey('orders', { description: 'before', labels: { team: 'a' } });
      t.clock.advance(1000);
    });

    it('changes the description and leaves every other field alone', async () => {
      const before = await getKey('orders');
      const response = await t.call('PATCH', '/v1/keys/orders', { description: 'after' });
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ ...before, description: 'after', updatedAt: iso(now()) });
      expect(await getKey('orders')).toEqual(response.body);
    });

    it('replaces the labels as a whole', async () => {
      const response = await t.call('PATCH', '/v1/keys/orders', { labels: { env: 'prod' } });
      expect(response.status).toBe(200);
      expect(response.body.labels).toEqual({ env: 'prod' });
    });

    it('sets nextRotationAt to now plus the rotation period', async () => {
      const response = await t.call('PATCH', '/v1/keys/orders', { rotationPeriodSeconds: 3600 });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ rotationPeriodSeconds: 3600, nextRotationAt: iso(now() + HOUR_MS) });
    });

    it.each([0, null])('turns scheduled rotation off with rotationPeriodSeconds %j', async (period) => {
      await t.call('PATCH', '/v1/keys/orders', { rotationPeriodSeconds: 3600 });
      const response = await t.call('PATCH', '/v1/keys/orders', { rotationPeriodSeconds: period });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ rotationPeriodSeconds: null, nextRotationAt: null });
    });

    it('refuses a rotation period of 100 seconds with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('PATCH', '/v1/keys/orders', { rotationPeriodSeconds: 100 }), 400, 'KH_ERR_VALIDATION');
      expect((await getKey('orders')).rotationPeriodSeconds).toBeNull();
    });

    it('accepts minDecryptionVersion between 1 and the primary version', async () => {
      await transition('orders', 'rotate');
      await transition('orders', 'rotate');
      const response = await t.call('PATCH', '/v1/keys/orders', { minDecryptionVersion: 2 });
      expect(response.status).toBe(200);
      expect(response.body.minDecryptionVersion).toBe(2);
      expect((await t.call('PATCH', '/v1/keys/orders', { minDecryptionVersion: 3 })).body.minDecryptionVersion).toBe(3);
      expect((await t.call('PATCH', '/v1/keys/orders', { minDecryptionVersion: 1 })).body.minDecryptionVersion).toBe(1);
    });

    it('refuses minDecryptionVersion above the primary version with 400 KH_ERR_VALIDATION', async () => {
      await transition('orders', 'rotate');
      expectProblem(await t.call('PATCH', '/v1/keys/orders', { minDecryptionVersion: 3 }), 400, 'KH_ERR_VALIDATION');
      expect((await getKey('orders')).minDecryptionVersion).toBe(1);
    });

    it('refuses minDecryptionVersion 0 with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('PATCH', '/v1/keys/orders', { minDecryptionVersion: 0 }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses an unknown field with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('PATCH', '/v1/keys/orders', { description: 'x', state: 'disabled' }), 400, 'KH_ERR_VALIDATION');
      expect((await getKey('orders')).description).toBe('before');
    });

    it('refuses an attempt to change the name with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('PATCH', '/v1/keys/orders', { name: 'renamed' }), 400, 'KH_ERR_VALIDATION');
    });

    it('refuses an empty body with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('PATCH', '/v1/keys/orders', {}), 400, 'KH_ERR_VALIDATION');
    });

    it('answers 404 KH_ERR_KEY_NOT_FOUND for an unknown key', async () => {
      expectProblem(await t.call('PATCH', '/v1/keys/missing', { description: 'x' }), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('POST /v1/keys/{name}/rotate', () => {
    beforeEach(async () => {
      await createKey('orders');
    });

    it('adds a version and makes it primary', async () => {
      t.clock.advance(1000);
      const key = await transition('orders', 'rotate');
      expect(key.primaryVersion).toBe(2);
      expect(key.versions.map((v: { version: number; state: string }) => [v.version, v.state])).toEqual([
        [1, 'enabled'],
        [2, 'enabled'],
      ]);
      expect(key.versions[1].createdAt).toBe(iso(now()));
      expect(key.updatedAt).toBe(iso(now()));
    });

    it('keeps adding versions on every rotation', async () => {
      await transition('orders', 'rotate');
      const key = await transition('orders', 'rotate');
      expect(key.primaryVersion).toBe(3);
      expect(key.versions.map((v: { version: number }) => v.version)).toEqual([1, 2, 3]);
    });

    it('still decrypts ciphertexts of the old versions', async () => {
      const old = await encrypt('orders');
      await transition('orders', 'rotate');
      await transition('orders', 'rotate');
      await expectDecrypts(old.ciphertext);
    });

    it('issues new data keys and ciphertexts under the new version', async () => {
      await transition('orders', 'rotate');
      const dataKey = await t.call('POST', '/v1/keys/orders/datakey', {});
      expect(dataKey.body.keyVersion).toBe(2);
      expect((await encrypt('orders')).keyVersion).toBe(2);
      const decrypted = await decrypt(dataKey.body.ciphertext);
      expect(decrypted.body).toMatchObject({ keyVersion: 2, plaintext: dataKey.body.plaintext });
    });

    it('moves nextRotationAt on by the rotation period', async () => {
      await t.call('PATCH', '/v1/keys/orders', { rotationPeriodSeconds: 7200 });
      t.clock.advance(HOUR_MS);
      const key = await transition('orders', 'rotate');
      expect(key.nextRotationAt).toBe(iso(now() + 2 * HOUR_MS));
    });

    it('works with an empty JSON object as the body', async () => {
      expect((await transition('orders', 'rotate', {})).primaryVersion).toBe(2);
    });

    it('works without a body', async () => {
      expect((await transition('orders', 'rotate')).primaryVersion).toBe(2);
    });

    it('refuses a body with fields with 400 KH_ERR_VALIDATION', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/rotate', { version: 5 }), 400, 'KH_ERR_VALIDATION');
    });

    it('rotates a disabled key, which stays disabled', async () => {
      await transition('orders', 'disable');
      const key = await transition('orders', 'rotate');
      expect(key).toMatchObject({ state: 'disabled', primaryVersion: 2 });
    });

    it('answers 404 KH_ERR_KEY_NOT_FOUND for an unknown key', async () => {
      expectProblem(await t.call('POST', '/v1/keys/missing/rotate'), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  /** One request per cryptographic operation, built against `orders` with a ciphertext made before the change. */
  const CRYPTO_OPERATIONS: ReadonlyArray<readonly [string, (ciphertext: string) => readonly [string, unknown]]> = [
    ['datakey', () => ['/v1/keys/orders/datakey', {}]],
    ['encrypt', () => ['/v1/keys/orders/encrypt', { plaintext: SECRET }]],
    ['decrypt', (ciphertext) => ['/v1/decrypt', { ciphertext }]],
    ['decrypt with key', (ciphertext) => ['/v1/keys/orders/decrypt', { ciphertext }]],
    ['rewrap', (ciphertext) => ['/v1/keys/orders/rewrap', { ciphertext }]],
  ];

  describe('POST /v1/keys/{name}/disable and /enable', () => {
    let ciphertext: string;
    beforeEach(async () => {
      await createKey('orders');
      ciphertext = (await encrypt('orders')).ciphertext;
    });

    it('disables an enabled key', async () => {
      expect((await transition('orders', 'disable')).state).toBe('disabled');
      expect((await getKey('orders')).state).toBe('disabled');
    });

    // One store for the whole family: each refusal leaves the key as it was. Every cell of the rule is in
    // test/unit/keys/lifecycle.test.ts; this checks that each cryptographic route asks it.
    it('a disabled key refuses datakey, encrypt, decrypt, decrypt with key and rewrap with 409 KH_ERR_KEY_DISABLED', async () => {
      await transition('orders', 'disable');
      for (const [operation, request] of CRYPTO_OPERATIONS) {
        const [url, body] = request(ciphertext);
        expectProblem(await t.call('POST', url, body), 409, 'KH_ERR_KEY_DISABLED', operation);
      }
    });

    it('a disabled key refuses to be the destination of a rewrap with 409 KH_ERR_KEY_DISABLED', async () => {
      await createKey('archive');
      await transition('archive', 'disable');
      expectProblem(await t.call('POST', '/v1/keys/archive/rewrap', { ciphertext }), 409, 'KH_ERR_KEY_DISABLED');
    });

    it('enabling a disabled key restores every operation', async () => {
      await transition('orders', 'disable');
      expect((await transition('orders', 'enable')).state).toBe('enabled');
      await expectDecrypts(ciphertext);
      expect((await t.call('POST', '/v1/keys/orders/datakey', {})).status).toBe(200);
    });

    it('enabling an enabled key is a no-op answered 200', async () => {
      const before = await getKey('orders');
      t.clock.advance(1000);
      const response = await t.call('POST', '/v1/keys/orders/enable');
      expect(response.status).toBe(200);
      expect(response.body).toEqual(before);
    });

    it('disabling a disabled key is a no-op answered 200', async () => {
      const disabled = await transition('orders', 'disable');
      t.clock.advance(1000);
      const response = await t.call('POST', '/v1/keys/orders/disable', {});
      expect(response.status).toBe(200);
      expect(response.body).toEqual(disabled);
    });

    it('a disabled key can still be updated', async () => {
      await transition('orders', 'disable');
      expect((await t.call('PATCH', '/v1/keys/orders', { description: 'x' })).status).toBe(200);
    });

    it('answers 404 KH_ERR_KEY_NOT_FOUND for an unknown key', async () => {
      expectProblem(await t.call('POST', '/v1/keys/missing/disable'), 404, 'KH_ERR_KEY_NOT_FOUND');
      expectProblem(await t.call('POST', '/v1/keys/missing/enable'), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('POST /v1/keys/{name}/schedule-deletion', () => {
    let ciphertext: string;
    beforeEach(async () => {
      await createKey('orders');
      ciphertext = (await encrypt('orders')).ciphertext;
      t.clock.advance(1000);
    });

    it('schedules deletion 30 days out by default', async () => {
      const key = await transition('orders', 'schedule-deletion');
      expect(key).toMatchObject({ state: 'pending_deletion', deletionDate: iso(now() + 30 * DAY_MS), destroyedAt: null });
    });

    it('accepts a waiting period of 7 days, the minimum', async () => {
      const key = await transition('orders', 'schedule-deletion', { pendingWindowDays: 7 });
      expect(key.deletionDate).toBe(iso(now() + 7 * DAY_MS));
    });

    it('accepts a waiting period of 30 days, the maximum', async () => {
      const key = await transition('orders', 'schedule-deletion', { pendingWindowDays: 30 });
      expect(key.deletionDate).toBe(iso(now() + 30 * DAY_MS));
    });

    it.each([6, 31, 0, 7.5])('refuses pendingWindowDays %j with 400 KH_ERR_VALIDATION', async (days) => {
      expectProblem(await t.call('POST', '/v1/keys/orders/schedule-deletion', { pendingWindowDays: days }), 400, 'KH_ERR_VALIDATION');
      expect((await getKey('orders')).state).toBe('enabled');
    });

    it('schedules deletion of a disabled key', async () => {
      await transition('orders', 'disable');
      expect((await transition('orders', 'schedule-deletion')).state).toBe('pending_deletion');
    });

    it('a key pending deletion refuses datakey, encrypt, decrypt, decrypt with key and rewrap with 409 KH_ERR_KEY_PENDING_DELETION', async () => {
      await transition('orders', 'schedule-deletion');
      for (const [operation, request] of CRYPTO_OPERATIONS) {
        const [url, body] = request(ciphertext);
        expectProblem(await t.call('POST', url, body), 409, 'KH_ERR_KEY_PENDING_DELETION', operation);
      }
    });

    it('a key pending deletion refuses to rotate, update, disable, enable, schedule deletion again or disable a version with 409 KH_ERR_KEY_PENDING_DELETION', async () => {
      await transition('orders', 'schedule-deletion');
      for (const [operation, method, url, body] of [
        ['rotate', 'POST', '/v1/keys/orders/rotate', undefined],
        ['update', 'PATCH', '/v1/keys/orders', { description: 'x' }],
        ['disable', 'POST', '/v1/keys/orders/disable', undefined],
        ['enable', 'POST', '/v1/keys/orders/enable', undefined],
        ['schedule deletion again', 'POST', '/v1/keys/orders/schedule-deletion', undefined],
        ['disable a version', 'POST', '/v1/keys/orders/versions/1/disable', undefined],
      ] as const) {
        expectProblem(await t.call(method, url, body), 409, 'KH_ERR_KEY_PENDING_DELETION', operation);
      }
    });

    it('a key pending deletion can still be read', async () => {
      await transition('orders', 'schedule-deletion');
      expect((await getKey('orders')).state).toBe('pending_deletion');
    });
  });

  describe('POST /v1/keys/{name}/cancel-deletion', () => {
    beforeEach(async () => {
      await createKey('orders');
    });

    it('leaves the key disabled with no deletion date', async () => {
      await transition('orders', 'schedule-deletion');
      const key = await transition('orders', 'cancel-deletion');
      expect(key).toMatchObject({ state: 'disabled', deletionDate: null, destroyedAt: null });
    });

    it('a cancelled key can be enabled again and used', async () => {
      const { ciphertext } = await encrypt('orders');
      await transition('orders', 'schedule-deletion');
      await transition('orders', 'cancel-deletion');
      await transition('orders', 'enable');
      await expectDecrypts(ciphertext);
    });

    it('a cancelled key is not destroyed when its old deletion date passes', async () => {
      await transition('orders', 'schedule-deletion', { pendingWindowDays: 7 });
      await transition('orders', 'cancel-deletion');
      t.clock.advance(8 * DAY_MS);
      expect(await t.services.keys.destroyDueKeys()).toBe(0);
      expect((await getKey('orders')).state).toBe('disabled');
    });

    it('refuses to cancel on an enabled key with 409 KH_ERR_ILLEGAL_TRANSITION', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/cancel-deletion'), 409, 'KH_ERR_ILLEGAL_TRANSITION');
    });

    it('refuses to cancel on a disabled key with 409 KH_ERR_ILLEGAL_TRANSITION', async () => {
      await transition('orders', 'disable');
      expectProblem(await t.call('POST', '/v1/keys/orders/cancel-deletion'), 409, 'KH_ERR_ILLEGAL_TRANSITION');
    });
  });

  describe('destruction', () => {
    let ciphertext: string;
    let keyId: string;
    beforeEach(async () => {
      keyId = (await createKey('orders')).id;
      await transition('orders', 'rotate');
      ciphertext = (await encrypt('orders')).ciphertext;
      await transition('orders', 'schedule-deletion', { pendingWindowDays: 7 });
    });

    it('does not destroy the key before its deletion date', async () => {
      t.clock.advance(7 * DAY_MS - 1);
      expect(await t.services.keys.destroyDueKeys()).toBe(0);
      expect((await getKey('orders')).state).toBe('pending_deletion');
    });

    it('GET after the deletion date shows the key destroyed, with every version destroyed', async () => {
      t.clock.advance(7 * DAY_MS + 1000);
      const key = await getKey('orders');
      expect(key).toMatchObject({ state: 'destroyed', destroyedAt: iso(now()) });
      expect(key.versions).toHaveLength(2);
      for (const version of key.versions) {
        expect(version).toMatchObject({ state: 'destroyed', destroyedAt: iso(now()) });
      }
    });

    it('the sweeper destroys the key once its deletion date has passed', async () => {
      t.clock.advance(7 * DAY_MS);
      expect(await t.services.keys.destroyDueKeys()).toBe(1);
      const key = await getKey('orders');
      expect(key).toMatchObject({ state: 'destroyed', destroyedAt: iso(now()) });
      expect(key.versions.every((v: { state: string; destroyedAt: string }) => v.state === 'destroyed' && v.destroyedAt === iso(now()))).toBe(true);
      expect(await t.services.keys.destroyDueKeys()).toBe(0);
    });

    it('erases the wrapped material of every version in the database', async () => {
      t.clock.advance(7 * DAY_MS);
      await t.services.keys.destroyDueKeys();
      const rows = (await t.db('key_versions').where({ key_id: keyId }).orderBy('version').select('version', 'material', 'state')) as Array<{
        version: number;
        material: unknown;
        state: string;
      }>;
      expect(rows.map((row) => [Number(row.version), row.material, row.state])).toEqual([
        [1, null, 'destroyed'],
        [2, null, 'destroyed'],
      ]);
    });

    it('refuses to decrypt an old ciphertext with 409 KH_ERR_KEY_DESTROYED', async () => {
      t.clock.advance(7 * DAY_MS);
      await getKey('orders');
      expectProblem(await decrypt(ciphertext), 409, 'KH_ERR_KEY_DESTROYED');
    });

    it('refuses to decrypt once the deletion date has passed, even before the sweeper ran', async () => {
      t.clock.advance(7 * DAY_MS);
      expectProblem(await decrypt(ciphertext), 409, 'KH_ERR_KEY_DESTROYED');
    });

    it('a state change after the deletion date carries the deletion out and refuses with KH_ERR_KEY_DESTROYED', async () => {
      t.clock.advance(7 * DAY_MS);
      expectProblem(await t.call('POST', '/v1/keys/orders/cancel-deletion'), 409, 'KH_ERR_KEY_DESTROYED');
      const material = await t.db('key_versions').whereNotNull('material').count({ n: '*' }).first();
      expect(Number(material?.n)).toBe(0);
      expect((await t.call('GET', '/v1/keys/orders')).body.state).toBe('destroyed');
    });

    it('a destroyed key refuses to enable, rotate, cancel deletion, update or encrypt with 409 KH_ERR_KEY_DESTROYED', async () => {
      t.clock.advance(7 * DAY_MS);
      await t.services.keys.destroyDueKeys();
      for (const [operation, method, url, body] of [
        ['enable', 'POST', '/v1/keys/orders/enable', undefined],
        ['rotate', 'POST', '/v1/keys/orders/rotate', undefined],
        ['cancel deletion', 'POST', '/v1/keys/orders/cancel-deletion', undefined],
        ['update', 'PATCH', '/v1/keys/orders', { description: 'x' }],
        ['encrypt', 'POST', '/v1/keys/orders/encrypt', { plaintext: SECRET }],
      ] as const) {
        expectProblem(await t.call(method, url, body), 409, 'KH_ERR_KEY_DESTROYED', operation);
      }
    });

    it('a destroyed key keeps its name: creating it again answers 409 KH_ERR_KEY_EXISTS', async () => {
      t.clock.advance(7 * DAY_MS);
      await t.services.keys.destroyDueKeys();
      expectProblem(await t.call('POST', '/v1/keys', { name: 'orders' }), 409, 'KH_ERR_KEY_EXISTS');
    });
  });

  describe('POST /v1/keys/{name}/versions/{version}/disable and /enable', () => {
    let v1: string;
    let v2: string;
    beforeEach(async () => {
      await createKey('orders');
      v1 = (await encrypt('orders')).ciphertext;
      await transition('orders', 'rotate');
      v2 = (await encrypt('orders')).ciphertext;
    });

    it('marks the version disabled and leaves the key enabled', async () => {
      const key = await transition('orders', 'versions/1/disable');
      expect(key.state).toBe('enabled');
      expect(key.versions.map((v: { state: string }) => v.state)).toEqual(['disabled', 'enabled']);
    });

    it('a disabled version refuses to decrypt with 409 KH_ERR_KEY_VERSION_DISABLED', async () => {
      await transition('orders', 'versions/1/disable');
      expectProblem(await decrypt(v1), 409, 'KH_ERR_KEY_VERSION_DISABLED');
    });

    it('a disabled version refuses to be rewrapped with 409 KH_ERR_KEY_VERSION_DISABLED', async () => {
      await transition('orders', 'versions/1/disable');
      expectProblem(await t.call('POST', '/v1/keys/orders/rewrap', { ciphertext: v1 }), 409, 'KH_ERR_KEY_VERSION_DISABLED');
    });

    it('other versions keep decrypting while one is disabled', async () => {
      await transition('orders', 'versions/1/disable');
      await expectDecrypts(v2);
    });

    it('disabling the primary version makes datakey refuse with 409 KH_ERR_KEY_VERSION_DISABLED', async () => {
      await transition('orders', 'versions/2/disable');
      expectProblem(await t.call('POST', '/v1/keys/orders/datakey', {}), 409, 'KH_ERR_KEY_VERSION_DISABLED');
      expectProblem(await t.call('POST', '/v1/keys/orders/encrypt', { plaintext: SECRET }), 409, 'KH_ERR_KEY_VERSION_DISABLED');
    });

    it('rotating after disabling the primary version issues data keys again', async () => {
      await transition('orders', 'versions/2/disable');
      await transition('orders', 'rotate');
      const dataKey = await t.call('POST', '/v1/keys/orders/datakey', {});
      expect(dataKey.status).toBe(200);
      expect(dataKey.body.keyVersion).toBe(3);
    });

    it('enabling the version again restores decryption', async () => {
      await transition('orders', 'versions/1/disable');
      const key = await transition('orders', 'versions/1/enable');
      expect(key.versions[0].state).toBe('enabled');
      await expectDecrypts(v1);
    });

    it('enabling an enabled version is a no-op answered 200', async () => {
      const before = await getKey('orders');
      t.clock.advance(1000);
      const response = await t.call('POST', '/v1/keys/orders/versions/1/enable');
      expect(response.status).toBe(200);
      expect(response.body).toEqual(before);
    });

    it('answers 404 KH_ERR_KEY_VERSION_NOT_FOUND for version 99', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/versions/99/disable'), 404, 'KH_ERR_KEY_VERSION_NOT_FOUND');
      expectProblem(await t.call('POST', '/v1/keys/orders/versions/99/enable'), 404, 'KH_ERR_KEY_VERSION_NOT_FOUND');
    });

    it.each(['0', '01', 'abc', '-1'])('refuses version %s with 400 KH_ERR_VALIDATION', async (version) => {
      expectProblem(await t.call('POST', `/v1/keys/orders/versions/${version}/disable`), 400, 'KH_ERR_VALIDATION');
    });

    it('answers 404 KH_ERR_KEY_NOT_FOUND for a version of an unknown key', async () => {
      expectProblem(await t.call('POST', '/v1/keys/missing/versions/1/disable'), 404, 'KH_ERR_KEY_NOT_FOUND');
    });
  });

  describe('minDecryptionVersion', () => {
    let v1: string;
    let v3: string;
    beforeEach(async () => {
      await createKey('orders');
      v1 = (await encrypt('orders')).ciphertext;
      await transition('orders', 'rotate');
      await transition('orders', 'rotate');
      v3 = (await encrypt('orders')).ciphertext;
      expect((await t.call('PATCH', '/v1/keys/orders', { minDecryptionVersion: 3 })).status).toBe(200);
    });

    it('refuses a ciphertext below the minimum with 409 KH_ERR_KEY_VERSION_BELOW_MINIMUM', async () => {
      expectProblem(await decrypt(v1), 409, 'KH_ERR_KEY_VERSION_BELOW_MINIMUM');
    });

    it('refuses to rewrap a ciphertext below the minimum with 409 KH_ERR_KEY_VERSION_BELOW_MINIMUM', async () => {
      expectProblem(await t.call('POST', '/v1/keys/orders/rewrap', { ciphertext: v1 }), 409, 'KH_ERR_KEY_VERSION_BELOW_MINIMUM');
    });

    it('decrypts a ciphertext at the minimum', async () => {
      await expectDecrypts(v3);
    });

    it('lowering the minimum again lets old ciphertexts decrypt', async () => {
      await t.call('PATCH', '/v1/keys/orders', { minDecryptionVersion: 1 });
      await expectDecrypts(v1);
    });
  });
});
