import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { registerSlowRequestLog } from '../../../../src/http/plugins/slow-requests.js';
import { LogCapture } from '../../../helpers/app.js';

async function appWithSlowLog(thresholdMs: number) {
  const logs = new LogCapture();
  const app = Fastify({ loggerInstance: pino({ level: 'info' }, logs) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
  registerSlowRequestLog(app, thresholdMs);
  app.get('/slow/:name', async () => {
    await new Promise((resolve) => setTimeout(resolve, 40));
    return { ok: true };
  });
  app.get('/fast', async () => ({ ok: true }));
  await app.ready();
  return { app, logs };
}

const entries = (logs: LogCapture) => logs.lines.map((line) => JSON.parse(line) as Record<string, unknown>);

describe('the slow-request log', () => {
  it('logs an answer later than the threshold at warn, with its request id, route pattern, status and time', async () => {
    const { app, logs } = await appWithSlowLog(10);
    const response = await app.inject({ method: 'GET', url: '/slow/secret-name?q=value' });
    expect(response.statusCode).toBe(200);
    const [line, ...others] = entries(logs);
    expect(others).toEqual([]);
    expect(line).toMatchObject({ level: 40, msg: 'slow request', method: 'GET', route: '/slow/:name', statusCode: 200, thresholdMs: 10 });
    expect(line!.requestId).toEqual(expect.any(String));
    expect(line!.ms).toBeGreaterThanOrEqual(10);
    // The pattern, never the URL: neither the name in the path nor the query reaches the log.
    expect(logs.text()).not.toContain('secret-name');
    expect(logs.text()).not.toContain('value');
    await app.close();
  });

  it('logs nothing for an answer within the threshold', async () => {
    const { app, logs } = await appWithSlowLog(600_000);
    expect((await app.inject({ method: 'GET', url: '/slow/k' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/fast' })).statusCode).toBe(200);
    expect(logs.lines).toEqual([]);
    await app.close();
  });

  it('names requests no route matched as unmatched', async () => {
    const { app, logs } = await appWithSlowLog(0);
    expect((await app.inject({ method: 'GET', url: '/nowhere' })).statusCode).toBe(404);
    expect(entries(logs)).toEqual([expect.objectContaining({ msg: 'slow request', route: 'unmatched', statusCode: 404 })]);
    await app.close();
  });
});
