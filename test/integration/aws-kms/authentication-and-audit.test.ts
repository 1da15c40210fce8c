import { DescribeKeyCommand, GenerateDataKeyCommand, KMSServiceException } from '@aws-sdk/client-kms';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { auditRecords, breakAuditInserts, repairAuditInserts } from '../../helpers/audit.js';
import { allow, issueAwsCredential, kmsClient, startAwsKmsServer, type AwsCredential, type AwsKmsServer } from '../../helpers/aws-kms.js';

const PAYMENTS = 'k8s:payments:api';
const ORDERS = 'k8s:orders:api';

async function awsError(promise: Promise<unknown>): Promise<KMSServiceException> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(KMSServiceException);
  return error as KMSServiceException;
}

describeEachDatabase('the AWS KMS endpoint: who may sign, and what the audit log says', (kind) => {
  let server: AwsKmsServer;
  let payments: AwsCredential;

  beforeEach(async () => {
    server = await startAwsKmsServer(kind);
    const { t } = server;
    for (const name of ['payments', 'orders']) expect((await t.call('POST', '/v1/keys', { name })).status).toBe(201);
    await allow(t, 'payments', [PAYMENTS], ['datakey', 'keys:read'], ['payments']);
    await allow(t, 'orders', [ORDERS], ['datakey'], ['orders']);
    payments = await issueAwsCredential(t, 'payments-api', PAYMENTS);
  });
  afterEach(async () => server.close());

  const dataKey = (credential: AwsCredential, KeyId = 'alias/payments', options: { maxAttempts?: number; systemClockOffset?: number } = {}) => {
    const kms = kmsClient(server.endpoint, credential, { maxAttempts: 1, ...options });
    return kms.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256', EncryptionContext: { tenant: 'acme' } })).finally(() => kms.destroy());
  };

  it('refuses a wrong secret (InvalidSignatureException) and a revoked key (UnrecognizedClientException), with status 400 as AWS', async () => {
    // Change the first character to one it is not: replacing it with a fixed one left the secret intact 1 time in 64.
    const first = payments.secretAccessKey[0] === 'x' ? 'y' : 'x';
    const wrong = await awsError(dataKey({ ...payments, secretAccessKey: `${first}${payments.secretAccessKey.slice(1)}` }));
    expect(wrong.name).toBe('InvalidSignatureException');
    expect(wrong.$metadata.httpStatusCode).toBe(400);
    expect(wrong.message).not.toContain(payments.secretAccessKey);
    await dataKey(payments);

    expect((await server.t.call('DELETE', `/v1/aws-credentials/${payments.accessKeyId}`)).status).toBe(204);
    const revoked = await awsError(dataKey(payments));
    expect(revoked.name).toBe('UnrecognizedClientException');
    expect(revoked.$metadata.httpStatusCode).toBe(400);
    const unknown = await awsError(dataKey({ accessKeyId: 'KHAKAAAAAAAAAAAAAAAA', secretAccessKey: payments.secretAccessKey }));
    expect(unknown.name).toBe('UnrecognizedClientException');
  });

  it("lets an SDK whose clock is 20 minutes off correct it from the answer's Date and succeed on its retry", async () => {
    const skewed = await awsError(dataKey(payments, 'alias/payments', { systemClockOffset: -20 * 60_000 }));
    expect(skewed.name).toBe('InvalidSignatureException');
    const corrected = await dataKey(payments, 'alias/payments', { systemClockOffset: -20 * 60_000, maxAttempts: 3 });
    expect(corrected.$metadata.attempts).toBe(2);
  });

  it("denies one workload's access key another workload's key, and audits both calls as the AWS operation", async () => {
    const { t } = server;
    await dataKey(payments);
    const orders = await issueAwsCredential(t, 'orders-api', ORDERS);
    const denied = await awsError(dataKey(orders, 'alias/payments'));
    expect(denied.name).toBe('AccessDeniedException');
    const kms = kmsClient(server.endpoint, orders);
    expect((await awsError(kms.send(new DescribeKeyCommand({ KeyId: 'alias/orders' })))).name).toBe('AccessDeniedException');
    kms.destroy();

    const records = (await auditRecords(t)).filter((record) => record.route?.startsWith('aws-kms') === true);
    expect(records).toEqual([
      expect.objectContaining({
        route: 'aws-kms:GenerateDataKey',
        method: 'POST',
        principalId: PAYMENTS,
        principalType: 'kubernetes',
        tokenId: payments.accessKeyId,
        action: 'datakey',
        keyName: 'payments',
        keyVersion: 1,
        contextKeys: ['tenant'],
        decision: 'allow',
        outcome: 'ok',
        status: 200,
      }),
      expect.objectContaining({
        route: 'aws-kms:GenerateDataKey',
        principalId: ORDERS,
        tokenId: orders.accessKeyId,
        action: 'datakey',
        keyName: 'payments',
        decision: 'deny',
        decisionReason: 'no-matching-allow',
        outcome: 'KH_ERR_FORBIDDEN',
        status: 400,
      }),
      expect.objectContaining({ route: 'aws-kms:DescribeKey', action: 'keys:read', keyName: 'orders', decision: 'deny', outcome: 'KH_ERR_FORBIDDEN' }),
    ]);
  });

  it("names the access key in the record, never the token of the caller that created it, whose revocation it outlives", async () => {
    const { t } = server;
    const token = await t.call('POST', '/v1/tokens', { name: 'ci' });
    await allow(t, 'ci', ['token:ci'], ['aws-credentials:write', 'datakey'], ['*']);
    const created = await t.call('POST', '/v1/aws-credentials', { name: 'ci-key' }, token.body.token);
    expect(created.status, created.text).toBe(201);
    const own = { accessKeyId: created.body.accessKeyId, secretAccessKey: created.body.secretAccessKey };
    expect((await t.call('DELETE', `/v1/tokens/${token.body.id}`)).status).toBe(204);
    await dataKey(own);
    const record = (await auditRecords(t)).filter((r) => r.route === 'aws-kms:GenerateDataKey').at(-1);
    expect(record).toMatchObject({ principalId: 'token:ci', tokenId: own.accessKeyId });
  });

  it('audits a refused signature with its reason, and never logs or records a secret or a data key', async () => {
    const { t } = server;
    const issued = await dataKey(payments);
    await awsError(dataKey({ ...payments, secretAccessKey: 'wrong-secret-0000000000000000000000000000' }));
    const refused = (await auditRecords(t)).find((record) => record.outcome === 'KH_ERR_UNAUTHENTICATED');
    expect(refused).toMatchObject({ route: 'aws-kms:GenerateDataKey', principalId: null, decisionReason: 'invalid-signature', status: 400 });
    const everything = t.logs.text() + JSON.stringify(await auditRecords(t));
    for (const secret of [payments.secretAccessKey, Buffer.from(issued.Plaintext!).toString('base64')]) expect(everything).not.toContain(secret);
  });

  it('fails closed when the audit record cannot be committed: DependencyTimeoutException (503), no key material', async () => {
    await breakAuditInserts(server.t);
    try {
      const refused = await awsError(dataKey(payments));
      expect(refused.name).toBe('DependencyTimeoutException');
      expect(refused.$metadata.httpStatusCode).toBe(503);
      expect(JSON.stringify(refused)).not.toMatch(/Plaintext|CiphertextBlob/);
    } finally {
      await repairAuditInserts(server.t);
    }
    await dataKey(payments);
  });
});
