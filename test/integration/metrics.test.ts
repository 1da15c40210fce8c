import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, TEST_ADMIN_TOKEN, type TestApp } from '../helpers/app.js';
import { parseSamples, sumOf, type Sample } from '../helpers/prometheus-text.js';
import { MAX_KEY_LABELS } from '../../src/metrics/keyhold-metrics.js';
import { httpCall } from '../helpers/http.js';

const METRICS_ENV = { KEYHOLD_METRICS_PORT: '0' };

/** A call over real HTTP to the app's API port. */
const call = (base: string, method: string, path: string, body?: unknown, token: string = TEST_ADMIN_TOKEN) => httpCall(base, method, path, token, body);

async function scrape(url: string): Promise<Sample[]> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseSamples(await response.text());
}

describeEachDatabase('Prometheus metrics', (kind) => {
  let t: TestApp;
  let api: string;
  let metricsUrl: string;
  let samples: Sample[];

  beforeAll(async () => {
    t = await buildTestApp(kind, { env: METRICS_ENV });
    api = await t.app.listen({ host: '127.0.0.1', port: 0 });
    metricsUrl = await t.metrics!.listen();
    expect((await call(api, 'POST', '/v1/keys', { name: 'payments', rotationPeriodSeconds: 3600 })).status).toBe(201);
    const worker = (await call(api, 'POST', '/v1/tokens', { name: 'worker' })).body.token as string;
    const grant = { statements: [{ effect: 'allow', principals: ['token:worker'], actions: ['datakey'], keys: ['payments'] }] };
    expect((await call(api, 'PUT', '/v1/policies/worker', grant)).status).toBe(201);
    const dataKey = await call(api, 'POST', '/v1/keys/payments/datakey', { context: { tenant: 't-1' } });
    expect(dataKey.status).toBe(200);
    expect((await call(api, 'POST', '/v1/keys/payments/datakey', {}, worker)).status).toBe(200);
    // A denial: the worker may make data keys, not decrypt.
    expect((await call(api, 'POST', '/v1/decrypt', { ciphertext: dataKey.body.ciphertext, context: { tenant: 't-1' } }, worker)).status).toBe(403);
    // A decryption failure: the wrong context.
    expect((await call(api, 'POST', '/v1/decrypt', { ciphertext: dataKey.body.ciphertext, context: { tenant: 't-2' } })).status).toBe(400);
    expect((await call(api, 'GET', '/v1/keys/no-such-key')).status).toBe(404);
    samples = await scrape(metricsUrl);
  });
  afterAll(async () => t?.close());

  it('the API port serves no /metrics', async () => {
    const response = await fetch(`${api}/metrics`);
    expect(response.status).toBe(404);
    // With credentials too: it is not a route at all.
    expect((await call(api, 'GET', '/metrics')).body.code).toBe('KH_ERR_ROUTE_NOT_FOUND');
  });

  it('the metrics listener serves only GET /metrics', async () => {
    expect((await fetch(metricsUrl.replace('/metrics', '/v1/keys'))).status).toBe(404);
    expect((await fetch(metricsUrl, { method: 'POST' })).status).toBe(404);
  });

  it('counts requests by route pattern, status class and problem code', () => {
    const name = 'keyhold_http_request_duration_seconds_count';
    expect(sumOf(samples, name, { method: 'POST', route: '/v1/keys/:name/datakey', status: '2xx', code: 'ok' })).toBe(2);
    expect(sumOf(samples, name, { method: 'POST', route: '/v1/decrypt', status: '4xx', code: 'KH_ERR_FORBIDDEN' })).toBe(1);
    expect(sumOf(samples, name, { method: 'POST', route: '/v1/decrypt', status: '4xx', code: 'KH_ERR_DECRYPTION_FAILED' })).toBe(1);
    expect(sumOf(samples, name, { method: 'GET', route: '/v1/keys/:name', status: '4xx', code: 'KH_ERR_KEY_NOT_FOUND' })).toBe(1);
    // No URL is a label: only route patterns.
    expect(samples.some((sample) => sample.labels.route?.includes('payments') === true)).toBe(false);
    const bucket = samples.find((s) => s.name === 'keyhold_http_request_duration_seconds_bucket' && s.labels.route === '/v1/decrypt' && s.labels.le === '+Inf');
    expect(bucket?.value).toBeGreaterThanOrEqual(1);
  });

  it('counts requests that matched no route as one unmatched series', async () => {
    await fetch(`${api}/no/such/${'x'.repeat(20)}`);
    const after = await scrape(metricsUrl);
    expect(sumOf(after, 'keyhold_http_request_duration_seconds_count', { route: 'unmatched', code: 'KH_ERR_ROUTE_NOT_FOUND' })).toBeGreaterThanOrEqual(1);
  });

  it('counts denials by principal type, principal and action', () => {
    expect(sumOf(samples, 'keyhold_authorization_denials_total', { principal_type: 'token', principal: 'token:worker', action: 'decrypt' })).toBe(1);
  });

  it('counts crypto operations by key, version and outcome', () => {
    const name = 'keyhold_crypto_operations_total';
    expect(sumOf(samples, name, { operation: 'datakey', key: 'payments', version: '1', outcome: 'ok' })).toBe(2);
    // A decryption failure names the key but not a version, which a made-up ciphertext could choose.
    expect(sumOf(samples, name, { operation: 'decrypt', key: 'payments', version: 'none', outcome: 'KH_ERR_DECRYPTION_FAILED' })).toBe(1);
  });

  it('keeps the audit writer counters under their names, with commit latency, batch size and queue depth', () => {
    expect(sumOf(samples, 'keyhold_audit_records_total')).toBeGreaterThanOrEqual(8);
    expect(sumOf(samples, 'keyhold_audit_commits_total')).toBeGreaterThanOrEqual(1);
    expect(sumOf(samples, 'keyhold_audit_commit_failures_total')).toBe(0);
    expect(sumOf(samples, 'keyhold_audit_file_failures_total')).toBe(0);
    expect(sumOf(samples, 'keyhold_audit_commit_duration_seconds_count', { result: 'committed' })).toBe(sumOf(samples, 'keyhold_audit_commits_total'));
    expect(sumOf(samples, 'keyhold_audit_commit_batch_size_sum', { result: 'committed' })).toBe(sumOf(samples, 'keyhold_audit_records_total'));
    expect(samples.some((s) => s.name === 'keyhold_audit_queue_depth')).toBe(true);
  });

  it('reports the caches, the database pool, the event streams and the Node process', () => {
    expect(sumOf(samples, 'keyhold_key_cache_lookups_total', { result: 'hit' })).toBeGreaterThanOrEqual(1);
    expect(sumOf(samples, 'keyhold_key_cache_lookups_total', { result: 'miss' })).toBeGreaterThanOrEqual(1);
    expect(sumOf(samples, 'keyhold_token_cache_lookups_total', { result: 'miss' })).toBeGreaterThanOrEqual(1);
    expect(sumOf(samples, 'keyhold_db_pool_connections', { state: 'max' })).toBeGreaterThanOrEqual(1);
    expect(sumOf(samples, 'keyhold_event_streams_open')).toBe(0);
    expect(samples.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
    expect(samples.some((s) => s.name === 'nodejs_eventloop_lag_seconds')).toBe(true);
  });

  it('reports key age and the seconds to the next scheduled rotation', () => {
    const age = sumOf(samples, 'keyhold_key_primary_version_age_seconds', { key: 'payments' });
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(60);
    // The test clock does not move: the rotation is an hour away.
    expect(sumOf(samples, 'keyhold_key_next_rotation_seconds', { key: 'payments' })).toBeCloseTo(3600 - age, 0);
  });

  it('counts a commit failure, whose request got 503', async () => {
    const failing = await buildTestApp(kind, { env: { ...METRICS_ENV, KEYHOLD_AUDIT_TIMEOUT_MS: '50' } });
    try {
      const url = await failing.metrics!.listen();
      await failing.call('GET', '/v1/keys');
      // Every commit from now on fails: the audit table is gone.
      await failing.db.schema.renameTable('audit_records', 'audit_records_gone');
      expect((await failing.call('GET', '/v1/keys')).status).toBe(503);
      const after = await scrape(url);
      expect(sumOf(after, 'keyhold_audit_commit_failures_total')).toBe(1);
      expect(sumOf(after, 'keyhold_audit_commit_duration_seconds_count', { result: 'failed' })).toBe(1);
      await failing.db.schema.renameTable('audit_records_gone', 'audit_records');
    } finally {
      await failing.close();
    }
  });
});

describe('metrics cardinality', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp('sqlite', { env: METRICS_ENV, deps: { processMetrics: false } });
  });
  afterAll(async () => t?.close());

  it(`keeps ${MAX_KEY_LABELS} keys under their own label and counts the rest as other`, async () => {
    const url = await t.metrics!.listen();
    const keys = MAX_KEY_LABELS + 20;
    for (let i = 0; i < keys; i += 1) {
      const name = `k-${String(i).padStart(3, '0')}`;
      expect((await t.call('POST', '/v1/keys', { name })).status).toBe(201);
      expect((await t.call('POST', `/v1/keys/${name}/datakey`, {})).status).toBe(200);
    }
    const samples = await scrape(url);
    const crypto = samples.filter((s) => s.name === 'keyhold_crypto_operations_total');
    expect(new Set(crypto.map((s) => s.labels.key)).size).toBe(MAX_KEY_LABELS + 1);
    expect(sumOf(crypto, 'keyhold_crypto_operations_total', { key: 'other', version: 'other' })).toBe(20);
    expect(sumOf(crypto, 'keyhold_crypto_operations_total')).toBe(keys);
    const ages = samples.filter((s) => s.name === 'keyhold_key_primary_version_age_seconds');
    expect(ages).toHaveLength(MAX_KEY_LABELS + 1);
  });

  it('closes the metrics listener with the app', async () => {
    const other = await buildTestApp('sqlite', { env: METRICS_ENV, deps: { processMetrics: false } });
    const url = await other.metrics!.listen();
    expect((await fetch(url)).status).toBe(200);
    await other.close();
    expect(other.metrics!.listening).toBe(false);
    await expect(fetch(url)).rejects.toThrow();
  });

  it('is off without KEYHOLD_METRICS_PORT', async () => {
    const plain = await buildTestApp('sqlite');
    try {
      expect(plain.metrics).toBeUndefined();
    } finally {
      await plain.close();
    }
  });
});
