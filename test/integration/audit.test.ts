import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InjectOptions } from 'fastify';
import knexFactory from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { parseJsonLine, sanitizeAuditString, type AuditRecord } from '../../src/audit/audit-record.js';
import type { Environment } from '../../src/config.js';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, TestStore, type TestApp } from '../helpers/app.js';
import { ManualClock } from '../helpers/clock.js';
import {
  ADMIN_PRINCIPAL,
  advanceClock,
  auditedCall,
  auditFileLines,
  auditRecords,
  auditRows,
  chainReport,
  checkpointRows,
  CLI_IS_BUILT,
  countRecords,
  createKey,
  issueToken,
  lastRecord,
  putPolicy,
  RAW_CONTROL,
  replicaOf,
  runAuditVerifyCli,
  verifyDirectly,
  verifyViaApi,
  breakAuditInserts as breakAuditInsertsOf,
  repairAuditInserts as repairAuditInsertsOf,
} from '../helpers/audit.js';
import { expectProblem } from '../helpers/expect-problem.js';

const DAY_MS = 24 * 3600 * 1000;
/** A chain whose writer is running: its heartbeat is fresh. */
const LIVE = { state: 'live', heartbeat: expect.any(String) };

describeEachDatabase('audit log', (kind) => {
  let t: TestApp;
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function open(env: Environment = {}, clock?: ManualClock): Promise<TestApp> {
    t = await buildTestApp(kind, { env, clock });
    const app = t;
    cleanups.push(() => app.close());
    return t;
  }

  const breakAuditInserts = () => breakAuditInsertsOf(t);
  const repairAuditInserts = () => repairAuditInsertsOf(t);

  async function adminTokenId(): Promise<string> {
    const whoami = await t.call('GET', '/v1/whoami');
    return whoami.body.attributes.tokenId as string;
  }

  describe('one record per request', () => {
    it('a datakey request records the key, its version, the context keys only, and the admin decision', async () => {
      await open();
      const key = await createKey(t, 'payments');
      const tokenId = await adminTokenId();
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/payments/datakey', {
        context: { zeta: 'z-value', alpha: 'a-value' },
      });
      expect(response.status).toBe(200);
      expect(record).toMatchObject({
        replicaId: replicaOf(t),
        principalId: ADMIN_PRINCIPAL,
        principalType: 'token',
        tokenId,
        sourceAddress: '127.0.0.1',
        method: 'POST',
        route: '/v1/keys/:name/datakey',
        action: 'datakey',
        keyName: 'payments',
        keyId: key.id,
        keyVersion: 1,
        contextKeys: ['alpha', 'zeta'],
        decision: 'allow',
        decisionReason: 'admin',
        policy: null,
        statement: null,
        outcome: 'ok',
        status: 200,
      });
      expect(record.time.getTime()).toBe(t.clock.now().getTime());
      expect(record.latencyMs).toBeGreaterThanOrEqual(0);
      expect(record.hash).toMatch(/^[0-9a-f]{64}$/);
    });

    it('encrypt and decrypt record their action; decrypt names the key and the version inside the ciphertext', async () => {
      await open();
      const source = await createKey(t, 'source');
      const { response: encrypted, record: encryptRecord } = await auditedCall(t, 'POST', '/v1/keys/source/encrypt', {
        plaintext: Buffer.from('hello').toString('base64'),
        context: { tenant: 't1' },
      });
      expect(encrypted.status).toBe(200);
      expect(encryptRecord).toMatchObject({
        action: 'encrypt',
        keyName: 'source',
        keyId: source.id,
        keyVersion: 1,
        contextKeys: ['tenant'],
        outcome: 'ok',
      });
      // Rotate, so the ciphertext's version (1) differs from the primary (2).
      expect((await t.call('POST', '/v1/keys/source/rotate')).status).toBe(200);

      const { response: decrypted, record: decryptRecord } = await auditedCall(t, 'POST', '/v1/decrypt', {
        ciphertext: encrypted.body.ciphertext,
        context: { tenant: 't1' },
      });
      expect(decrypted.status).toBe(200);
      expect(decryptRecord).toMatchObject({
        route: '/v1/decrypt',
        action: 'decrypt',
        keyName: 'source',
        keyId: source.id,
        keyVersion: 1,
        contextKeys: ['tenant'],
        decision: 'allow',
        outcome: 'ok',
        status: 200,
      });
    });

    it(
      'a ciphertext claiming a key version of 2^31 or more is refused with 400 and recorded',
      async () => {
        await open();
        await createKey(t, 'k');
        const encrypted = await t.call('POST', '/v1/keys/k/encrypt', { plaintext: 'AAAA' });
        const bytes = Buffer.from((encrypted.body.ciphertext as string).slice('kh1:'.length), 'base64url');
        bytes.writeUInt32BE(2 ** 31 + 1, 17);
        const { response, record } = await auditedCall(t, 'POST', '/v1/decrypt', { ciphertext: `kh1:${bytes.toString('base64url')}` });
        expectProblem(response, 400, 'KH_ERR_DECRYPTION_FAILED');
        expect(record).toMatchObject({ action: 'decrypt', keyName: 'k', outcome: 'KH_ERR_DECRYPTION_FAILED', status: 400 });
        expect(await chainReport(t)).toMatchObject({ ok: true });
      },
    );

    it('a rewrap records the rewrap action on the destination key and the version it sealed with', async () => {
      await open();
      await createKey(t, 'source');
      const destination = await createKey(t, 'destination');
      expect((await t.call('POST', '/v1/keys/destination/rotate')).status).toBe(200);
      const encrypted = await t.call('POST', '/v1/keys/source/encrypt', { plaintext: 'AAAA' });
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/destination/rewrap', {
        ciphertext: encrypted.body.ciphertext,
      });
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ keyName: 'destination', keyVersion: 2 });
      expect(record).toMatchObject({
        route: '/v1/keys/:name/rewrap',
        action: 'rewrap',
        keyName: 'destination',
        keyId: destination.id,
        keyVersion: 2,
        outcome: 'ok',
      });
    });

    it('key administration records its action, the key, and the version it acted on (the primary one for key-wide changes)', async () => {
      await open();
      const { response: created, record: createRecord } = await auditedCall(t, 'POST', '/v1/keys', { name: 'admin-k' });
      expect(created.status).toBe(201);
      const keyId = created.body.id as string;
      expect(createRecord).toMatchObject({ action: 'keys:create', keyName: 'admin-k', outcome: 'ok', status: 201 });
      const steps: Array<[string, string, string, number]> = [
        ['POST', '/v1/keys/admin-k/rotate', 'keys:rotate', 2],
        ['POST', '/v1/keys/admin-k/versions/1/disable', 'keys:disable-version', 1],
        ['POST', '/v1/keys/admin-k/versions/1/enable', 'keys:enable-version', 1],
        ['POST', '/v1/keys/admin-k/disable', 'keys:disable', 2],
        ['POST', '/v1/keys/admin-k/enable', 'keys:enable', 2],
        ['PATCH', '/v1/keys/admin-k', 'keys:update', 2],
        ['POST', '/v1/keys/admin-k/schedule-deletion', 'keys:schedule-deletion', 2],
        ['POST', '/v1/keys/admin-k/cancel-deletion', 'keys:cancel-deletion', 2],
      ];
      for (const [method, url, action, keyVersion] of steps) {
        const body = method === 'PATCH' ? { description: 'changed' } : undefined;
        const { response, record } = await auditedCall(t, method, url, body);
        expect(response.status, `${method} ${url}: ${response.text}`).toBe(200);
        expect(record, `${method} ${url}`).toMatchObject({
          method,
          action,
          keyName: 'admin-k',
          keyId,
          keyVersion,
          decision: 'allow',
          decisionReason: 'admin',
          outcome: 'ok',
          status: 200,
        });
      }
      expect((await auditedCall(t, 'GET', '/v1/keys/admin-k')).record).toMatchObject({
        action: 'keys:read',
        keyName: 'admin-k',
        outcome: 'ok',
      });
      expect((await auditedCall(t, 'GET', '/v1/keys')).record).toMatchObject({ route: '/v1/keys', method: 'GET', outcome: 'ok' });
    });

    it('a refused key operation records the refusal with the key named in the URL', async () => {
      await open();
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/absent/rotate');
      expectProblem(response, 404, 'KH_ERR_KEY_NOT_FOUND');
      expect(record).toMatchObject({
        action: 'keys:rotate',
        keyName: 'absent',
        keyId: null,
        decision: 'allow',
        outcome: 'KH_ERR_KEY_NOT_FOUND',
        status: 404,
      });
    });

    it('a batch of several keys writes one record: action batch, no key of its own, and a summary of its items', async () => {
      await open();
      await createKey(t, 'k');
      await createKey(t, 'j');
      const items = [
        { op: 'datakey', key: 'k' },
        { op: 'encrypt', key: 'k', plaintext: 'AAAA' },
        { op: 'datakey', key: 'j', context: { b: '1', a: '2' } },
        { op: 'datakey', key: 'k' },
      ];
      const { response, record } = await auditedCall(t, 'POST', '/v1/batch', { items });
      expect(response.status, response.text).toBe(200);
      const [k, j] = [response.body.results[0].result, response.body.results[2].result];
      expect(record).toMatchObject({
        route: '/v1/batch',
        principalId: ADMIN_PRINCIPAL,
        action: 'batch',
        keyName: null,
        keyId: null,
        decision: 'allow',
        outcome: 'ok',
        status: 200,
        batch: {
          items: 4,
          part: 1,
          parts: 1,
          entries: [
            { action: 'datakey', keyName: 'k', keyId: k.keyId, keyVersion: 1, outcome: 'ok', count: 2 },
            { action: 'encrypt', keyName: 'k', keyId: k.keyId, keyVersion: 1, outcome: 'ok', count: 1 },
            { action: 'datakey', keyName: 'j', keyId: j.keyId, keyVersion: 1, outcome: 'ok', count: 1 },
          ],
        },
      });
      expect((await chainReport(t)).ok).toBe(true);
    });

    it('token and policy administration, whoami and the audit API itself are recorded', async () => {
      await open();
      const { response: issued, record: issueRecord } = await auditedCall(t, 'POST', '/v1/tokens', { name: 'worker' });
      expect(issued.status).toBe(201);
      expect(issueRecord).toMatchObject({ action: 'tokens:create', route: '/v1/tokens', outcome: 'ok', status: 201, keyName: null });
      expect((await auditedCall(t, 'GET', '/v1/tokens')).record).toMatchObject({ action: 'tokens:read', outcome: 'ok' });
      expect((await auditedCall(t, 'DELETE', `/v1/tokens/${issued.body.id}`)).record).toMatchObject({
        action: 'tokens:revoke',
        route: '/v1/tokens/:id',
        outcome: 'ok',
        status: 204,
      });

      const statements = [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey'], keys: ['*'] }];
      expect((await auditedCall(t, 'PUT', '/v1/policies/p1', { statements })).record).toMatchObject({
        action: 'policies:put',
        route: '/v1/policies/:name',
        outcome: 'ok',
      });
      expect((await auditedCall(t, 'GET', '/v1/policies/p1')).record).toMatchObject({ action: 'policies:read', outcome: 'ok' });
      expect((await auditedCall(t, 'GET', '/v1/policies')).record).toMatchObject({ action: 'policies:read', outcome: 'ok' });
      expect((await auditedCall(t, 'DELETE', '/v1/policies/p1')).record).toMatchObject({
        action: 'policies:delete',
        outcome: 'ok',
        status: 204,
      });

      expect((await auditedCall(t, 'GET', '/v1/whoami')).record).toMatchObject({
        route: '/v1/whoami',
        principalId: ADMIN_PRINCIPAL,
        action: null,
        decision: null,
        outcome: 'ok',
        status: 200,
      });
      expect((await auditedCall(t, 'GET', '/v1/audit')).record).toMatchObject({
        route: '/v1/audit',
        action: 'audit:read',
        decision: 'allow',
        outcome: 'ok',
      });
      expect((await auditedCall(t, 'GET', '/v1/audit/verify')).record).toMatchObject({
        route: '/v1/audit/verify',
        action: 'audit:read',
        outcome: 'ok',
      });
    });

    it('a request without credentials is recorded as unauthenticated, with no principal and the reason "missing"', async () => {
      await open();
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/payments/datakey', {}, null);
      expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
      expect(record).toMatchObject({
        principalId: null,
        principalType: null,
        tokenId: null,
        route: '/v1/keys/:name/datakey',
        keyName: 'payments',
        action: null,
        decision: null,
        decisionReason: 'missing',
        outcome: 'KH_ERR_UNAUTHENTICATED',
        status: 401,
      });
    });

    it('an unknown token is recorded with the reason "unknown-token", and the token itself is not recorded', async () => {
      await open();
      const bogus = `kh_bogus_${'q'.repeat(40)}`;
      const { response, record } = await auditedCall(t, 'GET', '/v1/whoami', undefined, bogus);
      expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
      expect(record).toMatchObject({
        principalId: null,
        decisionReason: 'unknown-token',
        outcome: 'KH_ERR_UNAUTHENTICATED',
        status: 401,
      });
      expect(JSON.stringify(await auditRows(t))).not.toContain(bogus);
    });

    it('a malformed Authorization header is recorded with the reason "malformed"', async () => {
      await open();
      const before = await countRecords(t);
      const response = await t.app.inject({ method: 'GET', url: '/v1/whoami', headers: { authorization: 'Basic Zm9vOmJhcg==' } });
      expect(response.statusCode).toBe(401);
      expect(await countRecords(t)).toBe(before + 1);
      expect(await lastRecord(t)).toMatchObject({ principalId: null, decisionReason: 'malformed', outcome: 'KH_ERR_UNAUTHENTICATED' });
    });

    it('a workload denied for want of an allow is recorded as a denial, no-matching-allow, with no policy', async () => {
      await open();
      await createKey(t, 'other');
      const worker = await issueToken(t, 'worker');
      await putPolicy(t, 'worker-keys', [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey'], keys: ['mine-*'] }]);
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/other/datakey', {}, worker.token);
      expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
      expect(record).toMatchObject({
        principalId: 'token:worker',
        principalType: 'token',
        tokenId: worker.id,
        action: 'datakey',
        keyName: 'other',
        keyId: null,
        decision: 'deny',
        decisionReason: 'no-matching-allow',
        policy: null,
        statement: null,
        outcome: 'KH_ERR_FORBIDDEN',
        status: 403,
      });
    });

    it('a workload denied by a deny statement is recorded with the policy and the statement that denied', async () => {
      await open();
      await createKey(t, 'vault');
      const worker = await issueToken(t, 'worker');
      await putPolicy(t, 'worker-keys', [
        { effect: 'allow', principals: ['token:worker'], actions: ['datakey'], keys: ['*'] },
        { effect: 'deny', principals: ['token:worker'], actions: ['datakey'], keys: ['vault'] },
      ]);
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/vault/datakey', {}, worker.token);
      expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
      expect(record).toMatchObject({
        principalId: 'token:worker',
        action: 'datakey',
        keyName: 'vault',
        decision: 'deny',
        decisionReason: 'explicit-deny',
        policy: 'worker-keys',
        statement: 1,
        outcome: 'KH_ERR_FORBIDDEN',
      });
    });

    it('a workload allowed by a policy is recorded with the policy and statement that allowed', async () => {
      await open();
      await createKey(t, 'shared');
      const worker = await issueToken(t, 'worker');
      await putPolicy(t, 'worker-keys', [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey'], keys: ['shared'] }]);
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/shared/datakey', {}, worker.token);
      expect(response.status).toBe(200);
      expect(record).toMatchObject({
        principalId: 'token:worker',
        decision: 'allow',
        decisionReason: 'allowed',
        policy: 'worker-keys',
        statement: 0,
        outcome: 'ok',
      });
    });

    it('bad input is recorded as KH_ERR_VALIDATION', async () => {
      await open();
      await createKey(t, 'payments');
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/payments/datakey', { bytes: 'many' });
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
      expect(record).toMatchObject({
        principalId: ADMIN_PRINCIPAL,
        route: '/v1/keys/:name/datakey',
        keyName: 'payments',
        outcome: 'KH_ERR_VALIDATION',
        status: 400,
      });
    });

    it('an unknown route is recorded as KH_ERR_ROUTE_NOT_FOUND with no route pattern', async () => {
      await open();
      const { response, record } = await auditedCall(t, 'GET', '/v1/nothing-here');
      expectProblem(response, 404, 'KH_ERR_ROUTE_NOT_FOUND');
      expect(record).toMatchObject({ route: null, method: 'GET', outcome: 'KH_ERR_ROUTE_NOT_FOUND', status: 404 });
    });

    it('a URL the router refuses (malformed percent-encoding) is answered as a 400 problem', async () => {
      await open();
      expectProblem(await t.call('GET', '/v1/keys/%E0%A4%A/datakey'), 400, 'KH_ERR_VALIDATION');
    });

    it('a URL the router refuses still writes its record', async () => {
      await open();
      const before = await countRecords(t);
      await t.call('GET', '/v1/keys/%E0%A4%A/datakey');
      expect(await countRecords(t)).toBe(before + 1);
    });

    it('a key with the longest allowed name (128 characters) can be used by URL, and the use is audited', async () => {
      await open();
      const name = `k${'x'.repeat(127)}`;
      await createKey(t, name);
      const { response, record } = await auditedCall(t, 'POST', `/v1/keys/${name}/datakey`);
      expect(response.status).toBe(200);
      expect(record).toMatchObject({ keyName: name, outcome: 'ok' });
    });

    it('body errors found after routing are recorded: malformed JSON, an unsupported media type, an oversized body', async () => {
      await open();
      await createKey(t, 'k');
      const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };
      const cases: Array<[InjectOptions, number, string]> = [
        [{ method: 'POST', url: '/v1/keys/k/datakey', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"a":' }, 400, 'KH_ERR_VALIDATION'],
        [{ method: 'POST', url: '/v1/keys/k/datakey', headers: { ...auth, 'content-type': 'text/plain' }, payload: 'hello' }, 415, 'KH_ERR_UNSUPPORTED_MEDIA_TYPE'],
        [
          { method: 'POST', url: '/v1/keys/k/encrypt', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ plaintext: 'A'.repeat(2_000_000) }) },
          413,
          'KH_ERR_PAYLOAD_TOO_LARGE',
        ],
      ];
      for (const [request, status, outcome] of cases) {
        const before = await countRecords(t);
        const response = await t.app.inject(request);
        expect(response.statusCode).toBe(status);
        expect(await countRecords(t)).toBe(before + 1);
        expect(await lastRecord(t)).toMatchObject({ principalId: ADMIN_PRINCIPAL, keyName: 'k', outcome, status });
      }
    });

    it('liveness, readiness and the OpenAPI document are not audited', async () => {
      await open();
      const before = await countRecords(t);
      expect((await t.call('GET', '/healthz', undefined, null)).status).toBe(200);
      expect((await t.call('GET', '/readyz', undefined, null)).status).toBe(200);
      expect((await t.call('GET', '/openapi.yaml', undefined, null)).status).toBe(200);
      expect(await countRecords(t)).toBe(before);
    });

    it('the records of a run form one dense chain that verifies', async () => {
      await open();
      await createKey(t, 'k');
      await t.call('POST', '/v1/keys/k/datakey');
      await t.call('GET', '/v1/whoami', undefined, null);
      const records = (await auditRecords(t)).filter((record) => record.replicaId === replicaOf(t));
      expect(records.map((record) => record.sequence)).toEqual(records.map((_, i) => i + 1));
      expect(await verifyViaApi(t)).toEqual({
        ok: true,
        chains: [{ replicaId: replicaOf(t), ok: true, records: records.length, lastSequence: records.length, ...LIVE }],
      });
    });
  });

  describe('batch records and operation names', () => {
    /** A ciphertext of `key` at its current primary version, made by the admin. */
    async function ciphertextOf(key: string, context?: Record<string, string>): Promise<string> {
      const response = await t.call('POST', `/v1/keys/${key}/encrypt`, { plaintext: 'AAAA', context });
      expect(response.status, response.text).toBe(200);
      return response.body.ciphertext as string;
    }

    /** The records `GET /v1/audit?key=KEY` answers, paged `limit` at a time. */
    async function recordsForKey(key: string, limit = 100): Promise<AuditRecord[]> {
      const found: AuditRecord[] = [];
      let cursor = '';
      for (;;) {
        const response = await t.call('GET', `/v1/audit?key=${key}&limit=${limit}${cursor}`);
        expect(response.status, response.text).toBe(200);
        found.push(...(response.body.records as AuditRecord[]));
        if (response.body.nextCursor === undefined) return found;
        cursor = `&cursor=${response.body.nextCursor as string}`;
      }
    }

    it('a batch of decrypts over several keys and versions, with refusals and failures, is found by ?key= for each key, with its counts', async () => {
      await open();
      const orders = await createKey(t, 'orders');
      const billing = await createKey(t, 'billing');
      await createKey(t, 'hr-salaries');
      const ordersV1 = await ciphertextOf('orders');
      expect((await t.call('POST', '/v1/keys/orders/rotate')).status).toBe(200);
      const ordersV2 = await ciphertextOf('orders');
      const salaries = await ciphertextOf('hr-salaries');
      const billed = await ciphertextOf('billing', { tenant: 'a' });
      const worker = await issueToken(t, 'worker');
      await putPolicy(t, 'worker', [{ effect: 'allow', principals: ['token:worker'], actions: ['decrypt'], keys: ['orders', 'billing'] }]);
      const items = [
        ...Array.from({ length: 3 }, () => ({ op: 'decrypt', ciphertext: ordersV1 })),
        { op: 'decrypt', ciphertext: salaries },
        ...Array.from({ length: 2 }, () => ({ op: 'decrypt', ciphertext: ordersV2 })),
        { op: 'decrypt', ciphertext: billed, context: { tenant: 'b' } },
        { op: 'decrypt', ciphertext: billed, context: { tenant: 'a' } },
        { op: 'decrypt', key: 'billing', ciphertext: 'kh1:AAAA' },
        { op: 'decrypt', ciphertext: salaries },
      ];
      const { response, record } = await auditedCall(t, 'POST', '/v1/batch', { items }, worker.token);
      expect(response.status, response.text).toBe(207);
      expect(record).toMatchObject({
        principalId: 'token:worker',
        action: 'batch',
        keyName: null,
        decision: 'deny',
        decisionReason: 'no-matching-allow',
        outcome: 'ok',
        status: 207,
      });
      expect(record.batch).toEqual({
        items: 10,
        part: 1,
        parts: 1,
        entries: [
          { action: 'decrypt', keyName: 'orders', keyId: orders.id, keyVersion: 1, outcome: 'ok', count: 3 },
          // Denied: the worker uses no grant on hr-salaries, so it was answered as for a ciphertext of no key.
          { action: 'decrypt', keyName: 'hr-salaries', keyId: null, keyVersion: null, outcome: 'KH_ERR_DECRYPTION_FAILED', count: 2 },
          { action: 'decrypt', keyName: 'orders', keyId: orders.id, keyVersion: 2, outcome: 'ok', count: 2 },
          { action: 'decrypt', keyName: 'billing', keyId: billing.id, keyVersion: 1, outcome: 'KH_ERR_DECRYPTION_FAILED', count: 1 },
          { action: 'decrypt', keyName: 'billing', keyId: billing.id, keyVersion: 1, outcome: 'ok', count: 1 },
          { action: 'decrypt', keyName: 'billing', keyId: null, keyVersion: null, outcome: 'KH_ERR_DECRYPTION_FAILED', count: 1 },
        ],
      });
      for (const key of ['orders', 'hr-salaries', 'billing']) {
        const found = await recordsForKey(key);
        expect(found.filter((r) => r.requestId === record.requestId), key).toEqual([{ ...record, time: record.time.toISOString() }]);
        // The key's own records (its creation, the admin's encrypts) are still found beside the batch's, newest first.
        const expectedIds = (await auditRecords(t))
          .filter((r) => r.keyName === key || r.batch?.entries.some((entry) => entry.keyName === key))
          .reverse()
          .map((r) => r.requestId);
        expect(found.map((r) => r.requestId), key).toEqual(expectedIds);
        expect((await recordsForKey(key, 1)).map((r) => r.requestId), `${key}, a page of one at a time`).toEqual(expectedIds);
      }
      expect((await recordsForKey('absent')).map((r) => r.requestId)).toEqual([]);
      expect((await chainReport(t)).ok).toBe(true);
    });

    it('the key filter combines with the others on batch records too', async () => {
      await open();
      await createKey(t, 'orders');
      const worker = await issueToken(t, 'worker');
      await putPolicy(t, 'worker', [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey'], keys: ['orders'] }]);
      const { record: byWorker } = await auditedCall(t, 'POST', '/v1/batch', { items: [{ op: 'datakey', key: 'orders' }] }, worker.token);
      await auditedCall(t, 'POST', '/v1/batch', { items: [{ op: 'datakey', key: 'orders' }] });
      const response = await t.call('GET', '/v1/audit?key=orders&principal=token%3Aworker&action=batch');
      expect(response.status, response.text).toBe(200);
      expect((response.body.records as AuditRecord[]).map((r) => r.requestId)).toEqual([byWorker.requestId]);
    });

    it('a batch whose summary is longer than one record allows is written as several records, every key found', async () => {
      await open();
      // Keys that do not exist: each item is its own summary line, refused with KH_ERR_KEY_NOT_FOUND.
      const items = Array.from({ length: 150 }, (_, i) => ({ op: 'datakey', key: `absent-${i}` }));
      const before = await countRecords(t);
      const response = await t.call('POST', '/v1/batch', { items });
      expect(response.status, response.text).toBe(207);
      expect(await countRecords(t)).toBe(before + 3);
      const parts = (await auditRecords(t)).filter((r) => r.requestId === response.headers['x-request-id']);
      expect(parts.map((r) => [r.batch?.part, r.batch?.parts, r.batch?.items, r.batch?.entries.length])).toEqual([
        [1, 3, 150, 64],
        [2, 3, 150, 64],
        [3, 3, 150, 22],
      ]);
      expect(parts.flatMap((r) => r.batch!.entries.map((entry) => [entry.keyName, entry.outcome, entry.count]))).toEqual(
        items.map((item) => [item.key, 'KH_ERR_KEY_NOT_FOUND', 1]),
      );
      for (const [key, part] of [['absent-0', 1], ['absent-100', 2], ['absent-149', 3]] as const) {
        expect((await recordsForKey(key)).map((r) => r.batch?.part), key).toEqual([part]);
      }
      expect((await chainReport(t)).ok).toBe(true);
    });

    it('version disable and enable, and scheduling and cancelling a deletion, are recorded by operation, decided by their policy action', async () => {
      await open();
      await createKey(t, 'orders');
      const worker = await issueToken(t, 'worker');
      await putPolicy(t, 'worker', [
        { effect: 'allow', principals: ['token:worker'], actions: ['keys:disable', 'keys:enable', 'keys:delete'], keys: ['orders'] },
      ]);
      const steps: Array<[string, string]> = [
        ['/v1/keys/orders/versions/1/disable', 'keys:disable-version'],
        ['/v1/keys/orders/versions/1/enable', 'keys:enable-version'],
        ['/v1/keys/orders/schedule-deletion', 'keys:schedule-deletion'],
        ['/v1/keys/orders/cancel-deletion', 'keys:cancel-deletion'],
      ];
      for (const [url, action] of steps) {
        const { response, record } = await auditedCall(t, 'POST', url, undefined, worker.token);
        expect(response.status, `${url}: ${response.text}`).toBe(200);
        expect(record, url).toMatchObject({ action, keyName: 'orders', decision: 'allow', policy: 'worker', statement: 0, outcome: 'ok' });
        expect((await t.call('GET', `/v1/audit?action=${action}`)).body.records.map((r: AuditRecord) => r.requestId), url).toEqual([
          record.requestId,
        ]);
      }
    });

    it('a refused operation is recorded under its own name too', async () => {
      await open();
      await createKey(t, 'orders');
      const worker = await issueToken(t, 'worker');
      const { response, record } = await auditedCall(t, 'POST', '/v1/keys/orders/versions/1/disable', undefined, worker.token);
      expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
      expect(record).toMatchObject({ action: 'keys:disable-version', keyName: 'orders', decision: 'deny', outcome: 'KH_ERR_FORBIDDEN' });
    });
  });

  describe('secrets', () => {
    it('no plaintext, data key, ciphertext, token or context value reaches a record, a checkpoint, a log line or the audit file', async () => {
      const fileDir = mkdtempSync(join(tmpdir(), 'keyhold-audit-file-'));
      cleanups.push(async () => rmSync(fileDir, { recursive: true, force: true }));
      const auditFile = join(fileDir, 'audit.jsonl');
      await open({ KEYHOLD_AUDIT_FILE: auditFile });
      const plaintext = 'known-plaintext-4f1c9a7e';
      const contextValue = 'context-value-8e2b7d31';
      const bogusToken = `kh_not_a_real_token_${'z'.repeat(32)}`;
      await createKey(t, 'secrets');

      const encrypted = await t.call('POST', '/v1/keys/secrets/encrypt', {
        plaintext: Buffer.from(plaintext).toString('base64'),
        context: { tenant: contextValue },
      });
      expect(encrypted.status).toBe(200);
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.body.ciphertext, context: { tenant: contextValue } });
      expect(Buffer.from(decrypted.body.plaintext, 'base64').toString()).toBe(plaintext);
      const dataKey = await t.call('POST', '/v1/keys/secrets/datakey', { context: { tenant: contextValue } });
      expect(dataKey.status).toBe(200);
      const dataKeyBytes = Buffer.from(dataKey.body.plaintext as string, 'base64');
      const issued = await issueToken(t, 'secret-bearer');
      expect((await t.call('GET', '/v1/whoami', undefined, issued.token)).status).toBe(200);
      // Refused requests that carry secrets: a denied workload, an unknown token, bad input around a plaintext.
      expect((await t.call('POST', '/v1/keys/secrets/datakey', { context: { tenant: contextValue } }, issued.token)).status).toBe(403);
      expect((await t.call('GET', '/v1/whoami', undefined, bogusToken)).status).toBe(401);
      const badInput = await t.call('POST', '/v1/keys/secrets/encrypt', {
        plaintext: Buffer.from(plaintext).toString('base64'),
        context: { tenant: contextValue },
        extra: plaintext,
      });
      expect(badInput.status).toBe(400);
      await t.services.auditWriter!.flush();

      const forbidden: Record<string, string> = {
        plaintext,
        'plaintext base64': Buffer.from(plaintext).toString('base64'),
        'plaintext hex': Buffer.from(plaintext).toString('hex'),
        'data key base64': dataKeyBytes.toString('base64'),
        'data key base64url': dataKeyBytes.toString('base64url'),
        'data key hex': dataKeyBytes.toString('hex'),
        'data key ciphertext': dataKey.body.ciphertext as string,
        ciphertext: encrypted.body.ciphertext as string,
        'context value': contextValue,
        'issued token': issued.token,
        'issued token base64': Buffer.from(issued.token).toString('base64'),
        'admin token': TEST_ADMIN_TOKEN,
        'admin token base64': Buffer.from(TEST_ADMIN_TOKEN).toString('base64'),
        'unknown token': bogusToken,
      };
      const records = JSON.stringify(await auditRows(t)) + JSON.stringify(await checkpointRows(t));
      const logs = t.logs.text();
      const file = readFileSync(auditFile, 'utf8');
      // The haystacks are real: the records name the requests, and the logs hold request lines.
      expect(records).toContain('token:secret-bearer');
      expect(logs).toContain(dataKey.headers['x-request-id'] as string);
      expect(auditFileLines(auditFile).records.length).toBe(await countRecords(t));
      for (const [what, secret] of Object.entries(forbidden)) {
        expect(records.includes(secret), `${what} in audit_records`).toBe(false);
        expect(logs.includes(secret), `${what} in the logs`).toBe(false);
        expect(file.includes(secret), `${what} in the audit file`).toBe(false);
      }
    });
  });

  describe('fail closed', () => {
    it('the failure is logged without the secrets of the refused request', async () => {
      await open();
      await createKey(t, 'k');
      await breakAuditInserts();
      const contextValue = 'context-value-under-failure-51c0';
      const plaintext = Buffer.from('plaintext-under-failure-9a7d').toString('base64');
      expectProblem(await t.call('POST', '/v1/keys/k/datakey', { context: { tenant: contextValue } }), 503, 'KH_ERR_UNAVAILABLE');
      expectProblem(await t.call('POST', '/v1/keys/k/encrypt', { plaintext, context: { tenant: contextValue } }), 503, 'KH_ERR_UNAVAILABLE');
      const logs = t.logs.text();
      expect(logs).toContain('audit records could not be committed');
      for (const secret of [contextValue, plaintext, TEST_ADMIN_TOKEN]) expect(logs).not.toContain(secret);
      await repairAuditInserts();
    });

    it('when the audit insert fails, datakey answers 503 with Retry-After and no key material, and recovers once it works', async () => {
      await open();
      await createKey(t, 'k');
      const before = await countRecords(t);
      await breakAuditInserts();

      const refused = await t.call('POST', '/v1/keys/k/datakey', { context: { a: 'b' } });
      expectProblem(refused, 503, 'KH_ERR_UNAVAILABLE');
      expect(refused.headers['retry-after']).toBe('5');
      expect(Object.keys(refused.body).sort()).toEqual(['code', 'detail', 'requestId', 'status', 'title', 'type']);
      expect(refused.text).not.toMatch(/plaintext|ciphertext|kh1:/);
      expect(refused.headers.etag).toBeUndefined();
      expect(await countRecords(t)).toBe(before);
      expect(t.services.auditWriter!.metrics.commitFailures).toBe(1);
      expect(t.logs.text()).toContain('audit records could not be committed');

      await repairAuditInserts();
      const recovered = await t.call('POST', '/v1/keys/k/datakey', { context: { a: 'b' } });
      expect(recovered.status).toBe(200);
      expect(recovered.body.plaintext).toEqual(expect.any(String));
      expect(await countRecords(t)).toBe(before + 1);
      const report = await chainReport(t);
      expect(report).toMatchObject({ ok: true, records: before + 1, lastSequence: before + 1 });
    });

    it('every answer waits for its record: decrypt, encrypt and even a 404 fail with 503 while the audit log is down', async () => {
      await open();
      await createKey(t, 'k');
      const secret = Buffer.from('fail-closed-plaintext').toString('base64');
      const encrypted = await t.call('POST', '/v1/keys/k/encrypt', { plaintext: secret });
      await breakAuditInserts();
      const decrypted = await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.body.ciphertext });
      expectProblem(decrypted, 503, 'KH_ERR_UNAVAILABLE');
      expect(decrypted.text).not.toContain(secret);
      const reencrypted = await t.call('POST', '/v1/keys/k/encrypt', { plaintext: secret });
      expectProblem(reencrypted, 503, 'KH_ERR_UNAVAILABLE');
      expect(reencrypted.text).not.toContain('kh1:');
      expectProblem(await t.call('GET', '/v1/nowhere'), 503, 'KH_ERR_UNAVAILABLE');
      expectProblem(await t.call('GET', '/v1/whoami', undefined, null), 503, 'KH_ERR_UNAVAILABLE');
      // Liveness is not audited, so it stays up.
      expect((await t.call('GET', '/healthz', undefined, null)).status).toBe(200);
      await repairAuditInserts();
      expect((await t.call('POST', '/v1/decrypt', { ciphertext: encrypted.body.ciphertext })).status).toBe(200);
      expect(await chainReport(t)).toMatchObject({ ok: true });
    });

    it('concurrent requests all fail while the audit log is down, and the chain resumes densely after the failure', async () => {
      await open();
      await createKey(t, 'k');
      const before = await countRecords(t);
      await breakAuditInserts();
      const refused = await Promise.all([1, 2, 3, 4].map(() => t.call('POST', '/v1/keys/k/datakey')));
      for (const response of refused) expectProblem(response, 503, 'KH_ERR_UNAVAILABLE');
      await repairAuditInserts();
      const accepted = await Promise.all([1, 2, 3].map(() => t.call('POST', '/v1/keys/k/datakey')));
      for (const response of accepted) expect(response.status).toBe(200);
      const sequences = (await auditRecords(t)).map((record) => record.sequence);
      expect(sequences).toEqual(Array.from({ length: before + 3 }, (_, i) => i + 1));
      expect(await chainReport(t)).toMatchObject({ ok: true, records: before + 3 });
    });

    it.runIf(kind === 'postgres')('a hung audit table answers 503 within the audit timeout, and recovers when released', async () => {
      await open({ KEYHOLD_AUDIT_TIMEOUT_MS: '300', KEYHOLD_DATABASE_TIMEOUT_MS: '20000' });
      await createKey(t, 'k');
      const other = knexFactory({ client: 'pg', connection: process.env.KEYHOLD_TEST_DATABASE_URL, searchPath: [t.store.schema] });
      cleanups.push(() => other.destroy());
      const lock = await other.transaction();
      try {
        await lock.raw('LOCK TABLE audit_records IN ACCESS EXCLUSIVE MODE');
        const started = Date.now();
        const refused = await t.call('POST', '/v1/keys/k/datakey');
        const elapsed = Date.now() - started;
        expectProblem(refused, 503, 'KH_ERR_UNAVAILABLE');
        expect(refused.text).not.toMatch(/plaintext|ciphertext/);
        // Far below the 20 s database timeout: the audit timeout bounded the wait.
        expect(elapsed).toBeLessThan(5000);
      } finally {
        await lock.rollback();
      }
      // The timed-out commit may land once the lock is gone; the writer reads the head back and continues from it.
      let recovered = await t.call('POST', '/v1/keys/k/datakey');
      for (let attempt = 0; attempt < 20 && recovered.status !== 200; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        recovered = await t.call('POST', '/v1/keys/k/datakey');
      }
      expect(recovered.status).toBe(200);
      expect(await chainReport(t)).toMatchObject({ ok: true });
    });
  });

  describe('tamper evidence', () => {
    /** A handful of requests: the chain has at least 6 records. */
    async function activity(clock?: ManualClock): Promise<{ replicaId: string; last: number }> {
      await open({}, clock);
      await createKey(t, 'k');
      for (let i = 0; i < 4; i += 1) await t.call('POST', '/v1/keys/k/datakey');
      await t.call('GET', '/v1/whoami', undefined, null);
      const replicaId = replicaOf(t);
      const last = (await lastRecord(t)).sequence;
      expect(last).toBeGreaterThanOrEqual(6);
      return { replicaId, last };
    }

    function records(replicaId: string) {
      return t.db('audit_records').where({ replica_id: replicaId });
    }

    it('an edited record is reported at its sequence as a hash mismatch', async () => {
      const { replicaId } = await activity();
      expect(await records(replicaId).where({ sequence: 3 }).update({ outcome: 'KH_ERR_FORBIDDEN' })).toBe(1);
      expect(await verifyViaApi(t)).toEqual({
        ok: false,
        chains: [{ replicaId, ok: false, records: 0, firstBadSequence: 3, problem: 'hash-mismatch', ...LIVE }],
      });
    });

    it('a deleted record in the middle is reported missing at its sequence', async () => {
      const { replicaId } = await activity();
      expect(await records(replicaId).where({ sequence: 4 }).delete()).toBe(1);
      expect(await chainReport(t)).toMatchObject({ ok: false, firstBadSequence: 4, problem: 'missing' });
    });

    it('two records swapped are reported at the first of them', async () => {
      const { replicaId } = await activity();
      await records(replicaId).where({ sequence: 2 }).update({ sequence: -2 });
      await records(replicaId).where({ sequence: 3 }).update({ sequence: 2 });
      await records(replicaId).where({ sequence: -2 }).update({ sequence: 3 });
      expect(await chainReport(t)).toMatchObject({ ok: false, firstBadSequence: 2, problem: 'hash-mismatch' });
    });

    it('a truncated tail is reported against the head checkpoint, at the first record lost', async () => {
      const { replicaId, last } = await activity();
      expect(await records(replicaId).where('sequence', '>', last - 2).delete()).toBe(2);
      expect(await chainReport(t)).toMatchObject({ ok: false, firstBadSequence: last - 1, problem: 'truncated' });
    });

    // The head checkpoint is also the writer's compare-and-set anchor, so tampering with it fails the next commit
    // (and so GET /v1/audit/verify itself) closed; these cases ask the verifier directly, as the CLI does.
    it('a truncated tail with its head checkpoint lowered to match is reported as an invalid checkpoint', async () => {
      const { replicaId, last } = await activity();
      const survivor = (await records(replicaId).where({ sequence: last - 2 }).first()) as { hash: string };
      await records(replicaId).where('sequence', '>', last - 2).delete();
      await t.db('audit_checkpoints')
        .where({ replica_id: replicaId, kind: 'head' })
        .update({ sequence: last - 2, hash: survivor.hash });
      expect(await verifyDirectly(t)).toEqual({
        ok: false,
        chains: [{ replicaId, ok: false, records: 0, firstBadSequence: last - 2, problem: 'checkpoint-invalid', ...LIVE }],
      });
    });

    it('a deleted head checkpoint is reported', async () => {
      const { replicaId, last } = await activity();
      expect(await t.db('audit_checkpoints').where({ replica_id: replicaId, kind: 'head' }).delete()).toBe(1);
      expect((await verifyDirectly(t)).chains).toEqual([
        { replicaId, ok: false, records: last, firstBadSequence: last, problem: 'missing-head', ...LIVE },
      ]);
    });

    it('tampering with the head checkpoint fails the next request closed rather than extending a chain it cannot vouch for', async () => {
      await activity();
      await t.db('audit_checkpoints').where({ replica_id: replicaOf(t), kind: 'head' }).delete();
      expectProblem(await t.call('POST', '/v1/keys/k/datakey'), 503, 'KH_ERR_UNAVAILABLE');
    });

    it('a truncated tail stays evident after the server goes on serving, even with the head checkpoint deleted', async () => {
      const { replicaId, last } = await activity();
      await records(replicaId).where('sequence', '>', last - 2).delete();
      await t.db('audit_checkpoints').where({ replica_id: replicaId, kind: 'head' }).delete();
      for (let i = 0; i < 3; i += 1) await t.call('POST', '/v1/keys/k/datakey');
      const report = await verifyDirectly(t);
      expect(report.ok).toBe(false);
    });

    it('a forged record appended after the head fails the next commit closed, and is reported', async () => {
      const { replicaId, last } = await activity();
      const row = (await records(replicaId).where({ sequence: last }).first()) as Record<string, unknown>;
      await t.db('audit_records').insert({ ...row, sequence: last + 1, request_id: 'forged', hash: 'f'.repeat(64) });
      // The writer's next record would take the forged row's sequence: the insert fails, and so does the request.
      expectProblem(await t.call('POST', '/v1/keys/k/datakey'), 503, 'KH_ERR_UNAVAILABLE');
      expect(await chainReport(t)).toMatchObject({ ok: false, firstBadSequence: last + 1, problem: 'hash-mismatch' });
    });

    it('a raw control character written into a record is reported as malformed', async () => {
      const { replicaId } = await activity();
      await records(replicaId).where({ sequence: 2 }).update({ key_name: 'k\n' });
      expect(await chainReport(t)).toMatchObject({ ok: false, firstBadSequence: 2, problem: 'malformed' });
    });

    it('each replica is reported on its own: tampering with one chain leaves the other intact', async () => {
      const store = new TestStore(kind);
      const first = await buildTestApp(kind, { store });
      let second: TestApp | undefined;
      cleanups.push(async () => {
        await second?.app.close();
        await store.destroy();
      });
      await createKey(first, 'k');
      await first.call('POST', '/v1/keys/k/datakey');
      const firstReplica = replicaOf(first);
      second = await first.restart();
      t = second;
      await second.call('POST', '/v1/keys/k/datakey');
      const secondReplica = replicaOf(second);
      expect(secondReplica).not.toBe(firstReplica);
      await second.db('audit_records').where({ replica_id: firstReplica, sequence: 1 }).update({ status: 500 });
      const report = await verifyViaApi(second);
      expect(report.ok).toBe(false);
      const byReplica = Object.fromEntries(report.chains.map((chain) => [chain.replicaId, chain]));
      expect(byReplica[firstReplica]).toMatchObject({ ok: false, firstBadSequence: 1, problem: 'hash-mismatch' });
      expect(byReplica[secondReplica]).toMatchObject({ ok: true });
    });

    // Runs the built CLI; skipped, not failed, before `npm run build`.
    it.skipIf(!CLI_IS_BUILT)('keyhold audit verify (dist) exits 0 on an intact store and 1 with the first bad sequence on a tampered one', async () => {
      // The CLI judges liveness by the system clock.
      const { replicaId } = await activity(new ManualClock(Date.now()));
      const intact = await runAuditVerifyCli(t);
      expect(intact.code, intact.stderr).toBe(0);
      expect(JSON.parse(intact.stdout)).toMatchObject({ ok: true, chains: [{ replicaId, ok: true }] });

      await records(replicaId).where({ sequence: 3 }).update({ outcome: 'ok', status: 299 });
      const tampered = await runAuditVerifyCli(t);
      expect(tampered.code, tampered.stderr).toBe(1);
      expect(JSON.parse(tampered.stdout)).toEqual({
        ok: false,
        chains: [{ replicaId, ok: false, records: 0, firstBadSequence: 3, problem: 'hash-mismatch', ...LIVE }],
      });
    });
  });

  describe('log injection', () => {
    const INJECTED_KEY = 'evil%0A%1B%5B31m%7B%22outcome%22%3A%22ok%22%7D';
    const INJECTED_KEY_DECODED = 'evil\n\u001b[31m{"outcome":"ok"}';

    async function openWithFile(): Promise<string> {
      const fileDir = mkdtempSync(join(tmpdir(), 'keyhold-audit-file-'));
      cleanups.push(async () => rmSync(fileDir, { recursive: true, force: true }));
      const auditFile = join(fileDir, 'audit.jsonl');
      await open({ KEYHOLD_AUDIT_FILE: auditFile });
      return auditFile;
    }

    async function expectOneParsableLinePerRecord(auditFile: string): Promise<void> {
      await t.services.auditWriter!.flush();
      const { records: lines, statements } = auditFileLines(auditFile);
      const stored = await auditRecords(t);
      expect(lines).toHaveLength(stored.length);
      expect(lines.map((line) => parseJsonLine(line).sequence)).toEqual(stored.map((record) => record.sequence));
      for (const line of [...lines, ...statements]) expect(RAW_CONTROL.test(line)).toBe(false);
    }

    it('a key name with a newline, an ANSI escape and a JSON fragment is refused, and recorded escaped', async () => {
      const auditFile = await openWithFile();
      const { response, record } = await auditedCall(t, 'POST', `/v1/keys/${INJECTED_KEY}/datakey`);
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
      expect(record.keyName).toBe(sanitizeAuditString(INJECTED_KEY_DECODED));
      expect(record.keyName).toBe('evil\\u000a\\u001b[31m{"outcome":"ok"}');
      expect(record.outcome).toBe('KH_ERR_VALIDATION');
      for (const value of Object.values(record)) {
        if (typeof value === 'string') expect(RAW_CONTROL.test(value)).toBe(false);
      }
      await expectOneParsableLinePerRecord(auditFile);
      // The log stream is JSON lines too: the request line keeps the URL percent-encoded.
      for (const line of t.logs.lines) expect(() => JSON.parse(line)).not.toThrow();
      expect(t.logs.text()).not.toContain('\u001b');
    });

    it('line and paragraph separators and bidirectional overrides in a key name are escaped', async () => {
      const auditFile = await openWithFile();
      const { response, record } = await auditedCall(t, 'GET', '/v1/keys/a%E2%80%A8b%E2%80%AEc%C2%85d');
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
      expect(record.keyName).toBe('a\\u2028b\\u202ec\\u0085d');
      await expectOneParsableLinePerRecord(auditFile);
    });

    it('a token name with an injection string is refused, and the record holds nothing of it', async () => {
      const auditFile = await openWithFile();
      const name = 'bot\n{"principalId":"token:root","outcome":"ok"}\u001b[2J\r';
      const { response, record } = await auditedCall(t, 'POST', '/v1/tokens', { name });
      expectProblem(response, 400, 'KH_ERR_VALIDATION');
      expect(record).toMatchObject({ route: '/v1/tokens', principalId: ADMIN_PRINCIPAL, keyName: null, outcome: 'KH_ERR_VALIDATION' });
      expect(JSON.stringify(await auditRows(t))).not.toContain('token:root');
      await expectOneParsableLinePerRecord(auditFile);
      expect(readFileSync(auditFile, 'utf8')).not.toContain('token:root');
    });

    it('an X-Request-Id carrying an injection is replaced, so the record keeps one line', async () => {
      const auditFile = await openWithFile();
      const response = await t.app.inject({
        method: 'GET',
        url: '/v1/whoami',
        headers: { 'x-request-id': '"}\n{"outcome":"ok', authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      });
      expect(response.statusCode).toBe(200);
      const record = await lastRecord(t);
      expect(record.requestId).not.toContain('outcome');
      await expectOneParsableLinePerRecord(auditFile);
    });
  });

  describe('GET /v1/audit', () => {
    /** Three minutes of activity by the admin and a workload; returns the minute marks. */
    async function history(): Promise<{ worker: { id: string; token: string }; marks: Date[] }> {
      await open();
      await createKey(t, 'alpha');
      await createKey(t, 'beta');
      const worker = await issueToken(t, 'worker');
      await putPolicy(t, 'worker', [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey'], keys: ['alpha'] }]);
      const marks = [t.clock.now()];
      t.clock.advance(60_000);
      marks.push(t.clock.now());
      await t.call('POST', '/v1/keys/alpha/datakey');
      expect((await t.call('POST', '/v1/keys/alpha/datakey', {}, worker.token)).status).toBe(200);
      expect((await t.call('POST', '/v1/keys/beta/datakey', {}, worker.token)).status).toBe(403);
      t.clock.advance(60_000);
      marks.push(t.clock.now());
      await t.call('POST', '/v1/keys/beta/datakey');
      await t.call('POST', '/v1/keys/beta/datakey');
      await t.call('POST', '/v1/keys/alpha/encrypt', { plaintext: 'AAAA' });
      return { worker, marks };
    }

    /** What the API should answer: the stored records that `keep`, newest first. */
    async function expected(keep: (record: AuditRecord) => boolean): Promise<string[]> {
      return (await auditRecords(t))
        .filter(keep)
        .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.replicaId < b.replicaId ? 1 : a.replicaId > b.replicaId ? -1 : 0) || b.sequence - a.sequence)
        .map((record) => record.requestId);
    }

    async function query(params: string, token?: string): Promise<{ requestIds: string[]; body: any }> {
      const response = await t.call('GET', `/v1/audit?${params}`, undefined, token);
      expect(response.status, response.text).toBe(200);
      return { requestIds: (response.body.records as Array<{ requestId: string }>).map((r) => r.requestId), body: response.body };
    }

    it('filters by principal, key, action and outcome', async () => {
      await history();
      const byPrincipal = await expected((r) => r.principalId === 'token:worker');
      expect(byPrincipal).toHaveLength(2);
      expect((await query('principal=token%3Aworker')).requestIds).toEqual(byPrincipal);
      const byKey = await expected((r) => r.keyName === 'beta');
      expect(byKey.length).toBeGreaterThanOrEqual(3);
      expect((await query('key=beta')).requestIds).toEqual(byKey);
      const byAction = await expected((r) => r.action === 'datakey');
      expect(byAction).toHaveLength(5);
      expect((await query('action=datakey')).requestIds).toEqual(byAction);
      const byOutcome = await expected((r) => r.outcome === 'KH_ERR_FORBIDDEN');
      expect(byOutcome).toHaveLength(1);
      expect((await query('outcome=KH_ERR_FORBIDDEN')).requestIds).toEqual(byOutcome);
      const combined = await expected((r) => r.principalId === ADMIN_PRINCIPAL && r.keyName === 'alpha' && r.action === 'datakey');
      expect(combined).toHaveLength(1);
      expect((await query(`principal=${encodeURIComponent(ADMIN_PRINCIPAL)}&key=alpha&action=datakey&outcome=ok`)).requestIds).toEqual(combined);
    });

    it('filters by time: since is inclusive, until exclusive', async () => {
      const { marks } = await history();
      const [, minute1, minute2] = marks as [Date, Date, Date];
      const window = await expected((r) => r.time >= minute1 && r.time < minute2);
      expect(window).toHaveLength(3);
      expect((await query(`since=${minute1.toISOString()}&until=${minute2.toISOString()}`)).requestIds).toEqual(window);
      const before = await expected((r) => r.time < minute1);
      expect((await query(`until=${minute1.toISOString()}`)).requestIds).toEqual(before);
    });

    it('answers newest first, and returns records as stored, with their hashes', async () => {
      await history();
      const { body } = await query('limit=500');
      const times = (body.records as Array<{ time: string }>).map((r) => Date.parse(r.time));
      expect(times).toEqual([...times].sort((a, b) => b - a));
      const stored = await auditRecords(t);
      const newest = body.records[0];
      const same = stored.find((r) => r.requestId === newest.requestId)!;
      expect(newest).toEqual({ ...same, time: same.time.toISOString(), contextKeys: [...same.contextKeys] });
    });

    it('pages with limit and cursor, without duplicates or gaps, also across records of the same time', async () => {
      await history();
      // More records at one instant, so pages break inside a run of equal times.
      for (let i = 0; i < 4; i += 1) await t.call('POST', '/v1/keys/alpha/datakey');
      const all = await expected((r) => r.action === 'datakey');
      expect(all).toHaveLength(9);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const { requestIds, body } = await query(`action=datakey&limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`);
        expect(requestIds.length).toBeLessThanOrEqual(2);
        seen.push(...requestIds);
        cursor = body.nextCursor;
        pages += 1;
      } while (cursor !== undefined && pages < 20);
      expect(pages).toBe(5);
      expect(seen).toEqual(all);
    });

    it('pages across the chains of two replicas at the same instant without duplicates or gaps', async () => {
      const store = new TestStore(kind);
      const first = await buildTestApp(kind, { store });
      let second: TestApp | undefined;
      cleanups.push(async () => {
        await second?.app.close();
        await store.destroy();
      });
      await createKey(first, 'k');
      for (let i = 0; i < 3; i += 1) await first.call('POST', '/v1/keys/k/datakey');
      second = await first.restart();
      t = second;
      for (let i = 0; i < 3; i += 1) await second.call('POST', '/v1/keys/k/datakey');
      const all = (await query('action=datakey&limit=500')).requestIds;
      expect(all).toHaveLength(6);
      expect(new Set((await auditRecords(t)).map((record) => record.replicaId)).size).toBe(2);
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const { requestIds, body } = await query(`action=datakey&limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`);
        seen.push(...requestIds);
        cursor = body.nextCursor;
      } while (cursor !== undefined && seen.length < 20);
      expect(seen).toEqual(all);
      const report = await verifyViaApi(t);
      expect(report.ok).toBe(true);
      expect(report.chains).toHaveLength(2);
    });

    it('needs audit:read: a workload without it is refused and recorded, and a grant on keys ["*"] lets it read', async () => {
      const { worker } = await history();
      const { response, record } = await auditedCall(t, 'GET', '/v1/audit', undefined, worker.token);
      expectProblem(response, 403, 'KH_ERR_FORBIDDEN');
      expect(record).toMatchObject({ action: 'audit:read', decision: 'deny', decisionReason: 'no-matching-allow', principalId: 'token:worker' });
      expectProblem(await t.call('GET', '/v1/audit/verify', undefined, worker.token), 403, 'KH_ERR_FORBIDDEN');
      // A grant scoped to some keys never reaches the audit log.
      await putPolicy(t, 'auditor', [{ effect: 'allow', principals: ['token:worker'], actions: ['audit:read'], keys: ['alpha'] }]);
      expectProblem(await t.call('GET', '/v1/audit', undefined, worker.token), 403, 'KH_ERR_FORBIDDEN');
      await putPolicy(t, 'auditor', [{ effect: 'allow', principals: ['token:worker'], actions: ['audit:read'], keys: ['*'] }]);
      const allowed = await t.call('GET', '/v1/audit?limit=1', undefined, worker.token);
      expect(allowed.status).toBe(200);
      expect(allowed.body.records).toHaveLength(1);
      expect((await t.call('GET', '/v1/audit/verify', undefined, worker.token)).status).toBe(200);
      expect(await lastRecord(t)).toMatchObject({ action: 'audit:read', decision: 'allow', decisionReason: 'allowed', policy: 'auditor', statement: 0 });
    });

    it('refuses a bad cursor, an inverted time range and an out-of-range limit with 400', async () => {
      await open();
      expectProblem(await t.call('GET', '/v1/audit?cursor=notacursor'), 400, 'KH_ERR_VALIDATION');
      const wrongShape = Buffer.from(JSON.stringify(['x', 'y'])).toString('base64url');
      expectProblem(await t.call('GET', `/v1/audit?cursor=${wrongShape}`), 400, 'KH_ERR_VALIDATION');
      expectProblem(await t.call('GET', '/v1/audit?cursor=a%2Fb'), 400, 'KH_ERR_VALIDATION');
      expectProblem(
        await t.call('GET', '/v1/audit?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z'),
        400,
        'KH_ERR_VALIDATION',
      );
      expectProblem(await t.call('GET', '/v1/audit?since=yesterday'), 400, 'KH_ERR_VALIDATION');
      expectProblem(await t.call('GET', '/v1/audit?limit=0'), 400, 'KH_ERR_VALIDATION');
      expectProblem(await t.call('GET', '/v1/audit?limit=501'), 400, 'KH_ERR_VALIDATION');
      expectProblem(await t.call('GET', '/v1/audit?colour=red'), 400, 'KH_ERR_VALIDATION');
    });
  });

  describe('file sink', () => {
    it('KEYHOLD_AUDIT_FILE receives one JSON line per committed record, equal to the stored record', async () => {
      const fileDir = mkdtempSync(join(tmpdir(), 'keyhold-audit-file-'));
      cleanups.push(async () => rmSync(fileDir, { recursive: true, force: true }));
      const auditFile = join(fileDir, 'audit.jsonl');
      await open({ KEYHOLD_AUDIT_FILE: auditFile });
      await createKey(t, 'k');
      await Promise.all([1, 2, 3].map(() => t.call('POST', '/v1/keys/k/datakey', { context: { x: '1' } })));
      await t.call('GET', '/v1/whoami', undefined, null);
      await t.services.auditWriter!.flush();
      const lines = auditFileLines(auditFile).records;
      const stored = await auditRecords(t);
      expect(lines.map(parseJsonLine)).toEqual(stored.map((record) => ({ ...record, contextKeys: [...record.contextKeys] })));
      expect(statSync(auditFile).mode & 0o777).toBe(0o600);
    });

    it('an unwritable file sink neither fails requests nor the database log; the failure is logged and counted', async () => {
      const fileDir = mkdtempSync(join(tmpdir(), 'keyhold-audit-file-'));
      cleanups.push(async () => rmSync(fileDir, { recursive: true, force: true }));
      // A directory cannot be appended to.
      await open({ KEYHOLD_AUDIT_FILE: fileDir });
      await createKey(t, 'k');
      const response = await t.call('POST', '/v1/keys/k/datakey');
      expect(response.status).toBe(200);
      expect(response.body.plaintext).toEqual(expect.any(String));
      const writer = t.services.auditWriter!;
      await writer.flush();
      expect(writer.metrics.fileFailures).toBeGreaterThanOrEqual(2);
      expect(writer.metrics.commitFailures).toBe(0);
      expect(t.logs.text()).toContain('audit file sink failed');
      expect(await chainReport(t)).toMatchObject({ ok: true, records: await countRecords(t) - 1 });
    });
  });

  describe('retention', () => {
    it('a purge deletes the old records, records its cut, keeps the newer ones, and the chain still verifies', async () => {
      await open();
      await createKey(t, 'k');
      await t.call('POST', '/v1/keys/k/datakey');
      await t.call('POST', '/v1/keys/k/datakey');
      const old = await auditRecords(t);
      await advanceClock(t, 10 * DAY_MS);
      await t.call('POST', '/v1/keys/k/datakey');
      await t.call('POST', '/v1/keys/k/datakey');
      const replicaId = replicaOf(t);
      const cut = old[old.length - 1]!;

      expect(await t.services.auditLog.purgeOlderThan(5)).toEqual([{ replicaId, deleted: old.length }]);
      const remaining = await auditRecords(t);
      expect(remaining.map((r) => r.sequence)).toEqual([cut.sequence + 1, cut.sequence + 2]);
      expect(remaining.every((r) => r.time.getTime() === t.clock.now().getTime())).toBe(true);
      const purge = (await checkpointRows(t)).find((row) => row.kind === 'purge');
      expect(purge).toMatchObject({ replica_id: replicaId, sequence: cut.sequence, hash: cut.hash });
      expect(await chainReport(t)).toEqual({ replicaId, ok: true, records: 2, lastSequence: cut.sequence + 2, ...LIVE });
      // The chain goes on after the cut.
      await t.call('POST', '/v1/keys/k/datakey');
      expect(await chainReport(t)).toMatchObject({ ok: true, records: 4 });
    });

    it('a purge deletes the key index rows of the batch records it deletes, and keeps those of newer ones', async () => {
      await open();
      const batch = { items: [{ op: 'datakey', key: 'gone' }, { op: 'datakey', key: 'kept' }] };
      const { record: old } = await auditedCall(t, 'POST', '/v1/batch', batch);
      t.clock.advance(10 * DAY_MS);
      const { record: recent } = await auditedCall(t, 'POST', '/v1/batch', batch);
      const indexed = async (): Promise<number[]> =>
        ((await t.db('audit_record_keys').where({ key_name: 'gone' }).orderBy('sequence')) as Array<{ sequence: number | string }>).map(
          (row) => Number(row.sequence),
        );
      expect(await indexed()).toEqual([old.sequence, recent.sequence]);
      await t.services.auditLog.purgeOlderThan(5);
      expect(await indexed()).toEqual([recent.sequence]);
      expect((await t.call('GET', '/v1/audit?key=gone')).body.records.map((r: AuditRecord) => r.requestId)).toEqual([recent.requestId]);
    });

    it('a purge of every record leaves an empty chain that verifies and continues', async () => {
      await open();
      await createKey(t, 'k');
      await t.call('POST', '/v1/keys/k/datakey');
      const last = await lastRecord(t);
      await advanceClock(t, 10 * DAY_MS);
      expect(await t.services.auditLog.purgeOlderThan(5)).toEqual([{ replicaId: replicaOf(t), deleted: 2 }]);
      expect(await countRecords(t)).toBe(0);
      expect(await chainReport(t)).toEqual({ replicaId: replicaOf(t), ok: true, records: 0, lastSequence: last.sequence, ...LIVE });
      await t.call('POST', '/v1/keys/k/datakey');
      expect(await chainReport(t)).toMatchObject({ ok: true, records: 2, lastSequence: last.sequence + 2 });
    });

    it('a purge leaves newer records alone, and nothing is purged when nothing is old enough', async () => {
      await open();
      await createKey(t, 'k');
      expect(await t.services.auditLog.purgeOlderThan(1)).toEqual([]);
      expect(await countRecords(t)).toBe(1);
    });

    it('a forged purge checkpoint cannot hide deleted records', async () => {
      await open();
      await createKey(t, 'k');
      await t.call('POST', '/v1/keys/k/datakey');
      await advanceClock(t, 10 * DAY_MS);
      await t.call('POST', '/v1/keys/k/datakey');
      await t.call('POST', '/v1/keys/k/datakey');
      await t.services.auditLog.purgeOlderThan(5);
      const replicaId = replicaOf(t);
      const first = (await auditRecords(t))[0]!;
      // Delete one more record and move the cut over it.
      await t.db('audit_records').where({ replica_id: replicaId, sequence: first.sequence }).delete();
      await t.db('audit_checkpoints')
        .where({ replica_id: replicaId, kind: 'purge' })
        .update({ sequence: first.sequence, hash: first.hash });
      expect(await chainReport(t)).toMatchObject({ ok: false, firstBadSequence: first.sequence, problem: 'checkpoint-invalid' });
    });

    it('a row forged below the purge cut is reported, though no query walks there', async () => {
      await open();
      await createKey(t, 'k');
      await t.call('POST', '/v1/keys/k/datakey');
      await advanceClock(t, 10 * DAY_MS);
      await t.call('POST', '/v1/keys/k/datakey');
      await t.services.auditLog.purgeOlderThan(5);
      const replicaId = replicaOf(t);
      const survivor = (await auditRows(t))[0]!;
      await t.db('audit_records').insert({ ...survivor, sequence: 0, request_id: 'forged', outcome: 'ok' });
      expect(await chainReport(t)).toMatchObject({ replicaId, ok: false });
    });

    it('deleting the head checkpoint and every record after the purge cut is reported', async () => {
      await open();
      await createKey(t, 'k');
      await t.call('POST', '/v1/keys/k/datakey');
      await advanceClock(t, 10 * DAY_MS);
      await t.call('POST', '/v1/keys/k/datakey');
      await t.services.auditLog.purgeOlderThan(5);
      await t.services.auditWriter!.flush();
      const replicaId = replicaOf(t);
      await t.db('audit_records').where({ replica_id: replicaId }).delete();
      await t.db('audit_checkpoints').where({ replica_id: replicaId, kind: 'head' }).delete();
      expect(await verifyDirectly(t)).toMatchObject({ ok: false, chains: [{ replicaId, ok: false, problem: 'missing-head' }] });
    });

    it('a purge does not carry away evidence: a chain tampered with before the cut is not purged', async () => {
      await open();
      await createKey(t, 'k');
      await t.call('POST', '/v1/keys/k/datakey');
      await advanceClock(t, 10 * DAY_MS);
      await t.call('POST', '/v1/keys/k/datakey');
      const replicaId = replicaOf(t);
      await t.db('audit_records').where({ replica_id: replicaId, sequence: 1 }).update({ outcome: 'KH_ERR_INTERNAL' });
      expect(await t.services.auditLog.purgeOlderThan(5)).toEqual([]);
      expect(await countRecords(t)).toBe(3);
      expect(await chainReport(t)).toMatchObject({ ok: false, firstBadSequence: 1, problem: 'hash-mismatch' });
    });
  });
});
