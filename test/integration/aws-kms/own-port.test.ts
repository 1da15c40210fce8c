import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildAwsKmsApp } from '../../../src/app.js';
import { describeEachDatabase, buildTestApp, type TestApp } from '../../helpers/app.js';
import { auditRecords } from '../../helpers/audit.js';

describeEachDatabase('the AWS KMS endpoint on a port of its own', (kind) => {
  let t: TestApp;
  let aws: FastifyInstance;

  beforeEach(async () => {
    t = await buildTestApp(kind, { env: { KEYHOLD_AWS_KMS_PORT: '0' } });
    aws = await buildAwsKmsApp(t.services, { logger: pino({ level: 'silent' }), clock: t.clock });
  });
  afterEach(async () => {
    await aws.close();
    await t.close();
  });

  it('answers a URL fastify cannot decode in AWS shape, as its other errors, and audits it', async () => {
    const response = await aws.inject({ method: 'POST', url: '/%zz', headers: { 'content-type': 'application/x-amz-json-1.1' }, payload: '{}' });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/x-amz-json-1\.1/);
    expect(response.headers['x-amzn-errortype']).toBe('ValidationException');
    expect(JSON.parse(response.body)).toEqual({ __type: 'ValidationException', message: expect.any(String) });
    const record = (await auditRecords(t)).find((r) => r.requestId === response.headers['x-amzn-requestid']);
    expect(record).toMatchObject({ method: 'POST', outcome: 'KH_ERR_VALIDATION', status: 400, principalId: null });
  });
});
