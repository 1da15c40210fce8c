import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

const PUBLIC = new Set(['/healthz', '/readyz', '/openapi.yaml']);
const document = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as {
  paths: Record<string, Record<string, unknown>>;
};
const SAMPLE_PARAMS: Record<string, string> = {
  name: 'some-key',
  version: '1',
  id: '00000000-0000-4000-8000-000000000000',
};

const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
  Object.keys(methods).flatMap((method) => {
    const url = path.replace(/\{(\w+)\}/g, (_match, name: string) => SAMPLE_PARAMS[name] ?? 'x');
    const calls = [[method.toUpperCase(), url] as const];
    // fastify answers HEAD for every GET route; those must authenticate too.
    return method === 'get' ? [...calls, ['HEAD', url] as const] : calls;
  }),
);

describe('every route but the public ones authenticates', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp('sqlite');
  });
  afterAll(async () => t.close());

  it('the contract lists the routes this test walks', () => {
    expect(operations.length).toBeGreaterThanOrEqual(25);
  });

  it.each(operations.filter(([, url]) => !PUBLIC.has(url)))('%s %s without credentials → 401', async (method, url) => {
    const response = await t.call(method, url, method === 'GET' || method === 'HEAD' || method === 'DELETE' ? undefined : {}, null);
    expect(response.status).toBe(401);
    if (method !== 'HEAD') expectProblem(response, 401, 'KH_ERR_UNAUTHENTICATED');
  });

  it.each(operations.filter(([, url]) => !PUBLIC.has(url)))('%s %s with an unknown token → 401', async (method, url) => {
    const response = await t.call(method, url, method === 'GET' || method === 'HEAD' || method === 'DELETE' ? undefined : {}, 'kh_not_a_real_token');
    expect(response.status).toBe(401);
  });

  it.each([...PUBLIC])('%s needs no credentials', async (url) => {
    expect((await t.call('GET', url, undefined, null)).status).toBe(200);
  });
});
