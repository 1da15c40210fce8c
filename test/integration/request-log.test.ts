import { afterEach, expect, it } from 'vitest';
import { buildTestApp, describeEachDatabase, type TestApp } from '../helpers/app.js';

/** The request log: off by default (the audit log records every request), on with KEYHOLD_ACCESS_LOG=on. */
describeEachDatabase('the access log', (kind) => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  async function datakeyRequestId(access: 'on' | 'off' | undefined): Promise<{ requestId: string; logs: string }> {
    // The test store turns the access log on; `undefined` here takes the server's default instead.
    t = await buildTestApp(kind, { env: { KEYHOLD_ACCESS_LOG: access } });
    expect((await t.call('POST', '/v1/keys', { name: 'logged' })).status).toBe(201);
    t.logs.lines.length = 0;
    const response = await t.call('POST', '/v1/keys/logged/datakey', {});
    expect(response.status).toBe(200);
    return { requestId: response.headers['x-request-id'] as string, logs: t.logs.text() };
  }

  it('is off by default: an answered request writes no log line, yet its audit record names it', async () => {
    const { requestId, logs } = await datakeyRequestId(undefined);
    expect(logs).not.toContain(requestId);
    expect(logs).not.toContain('request completed');
    const audited = await t!.call('GET', `/v1/audit?limit=5`);
    expect(audited.body.records.map((record: { requestId: string }) => record.requestId)).toContain(requestId);
  });

  it('logs every request and its answer with KEYHOLD_ACCESS_LOG=on', async () => {
    const { requestId, logs } = await datakeyRequestId('on');
    const lines = logs.trim().split('\n').map((line) => JSON.parse(line) as { reqId?: string; msg: string });
    expect(lines.filter((line) => line.reqId === requestId).map((line) => line.msg)).toEqual(['incoming request', 'request completed']);
  });
});
