import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { allow, issueAwsCredential, signedFetch, startAwsKmsServer, type AwsCredential, type AwsKmsServer } from '../../helpers/aws-kms.js';

const DATA_KEY = JSON.stringify({ KeyId: 'alias/wire', KeySpec: 'AES_256' });

async function awsAnswer(response: Response): Promise<{ status: number; type: string | undefined; message: string }> {
  expect(response.headers.get('content-type')).toMatch(/^application\/x-amz-json-1\.1(;|$)/);
  expect(response.headers.get('x-amzn-requestid')).toMatch(/./);
  const body = (await response.json()) as { __type?: string; message: string };
  expect(response.headers.get('x-amzn-errortype') ?? undefined).toBe(body.__type);
  return { status: response.status, type: body.__type, message: body.message };
}

describeEachDatabase('the AWS KMS endpoint on the wire: bad requests get a clear AWS error', (kind) => {
  let server: AwsKmsServer;
  let credential: AwsCredential;

  beforeEach(async () => {
    server = await startAwsKmsServer(kind);
    await server.t.call('POST', '/v1/keys', { name: 'wire' });
    await allow(server.t, 'wire', ['k8s:wire:client'], ['datakey'], ['wire']);
    credential = await issueAwsCredential(server.t, 'wire', 'k8s:wire:client');
  });
  afterEach(async () => server.close());

  it('answers a signed request in AWS JSON 1.1, and the same without a signature as MissingAuthenticationTokenException', async () => {
    const ok = await signedFetch(server.endpoint, credential, 'TrentService.GenerateDataKey', DATA_KEY);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^application\/x-amz-json-1\.1(;|$)/);
    expect(Object.keys((await ok.json()) as object).sort()).toEqual(['CiphertextBlob', 'KeyId', 'Plaintext']);
    const unsigned = await fetch(server.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.GenerateDataKey' },
      body: DATA_KEY,
    });
    expect(await awsAnswer(unsigned)).toMatchObject({ status: 400, type: 'MissingAuthenticationTokenException' });
  });

  it('refuses an unknown operation, a body that is not a JSON object, and a body of another media type', async () => {
    expect(await awsAnswer(await signedFetch(server.endpoint, credential, 'TrentService.Sign', '{}'))).toMatchObject({ status: 400, type: 'UnknownOperationException' });
    expect(await awsAnswer(await signedFetch(server.endpoint, credential, 'Other.GenerateDataKey', DATA_KEY))).toMatchObject({ type: 'UnknownOperationException' });
    for (const body of ['{"KeyId":', '[1]', '"x"']) {
      expect(await awsAnswer(await signedFetch(server.endpoint, credential, 'TrentService.GenerateDataKey', body)), body).toMatchObject({
        status: 400,
        type: 'SerializationException',
      });
    }
    const asJson = await signedFetch(server.endpoint, credential, 'TrentService.GenerateDataKey', DATA_KEY, { headers: { 'content-type': 'application/json' } });
    expect(await awsAnswer(asJson)).toMatchObject({ status: 400, type: 'SerializationException' });
    const badMember = await signedFetch(server.endpoint, credential, 'TrentService.GenerateDataKey', JSON.stringify({ KeyId: 'alias/wire', KeySpec: 'AES_512' }));
    expect(await awsAnswer(badMember)).toMatchObject({ status: 400, type: 'ValidationException', message: expect.stringContaining("'KeySpec'") });
  });

  it('answers at the path without its trailing slash too (boto3 keeps an endpoint path as given)', async () => {
    const ok = await signedFetch(server.endpoint.replace(/\/$/, ''), credential, 'TrentService.GenerateDataKey', DATA_KEY);
    expect(ok.status).toBe(200);
  });

  it('refuses a CreateKey description the native API would refuse (NUL, over 1024 characters) as ValidationException', async () => {
    await allow(server.t, 'creator', ['k8s:wire:client'], ['keys:create'], ['*']);
    for (const Description of ['a\u0000b', 'x'.repeat(1025)]) {
      const answer = await awsAnswer(await signedFetch(server.endpoint, credential, 'TrentService.CreateKey', JSON.stringify({ Description })));
      expect(answer).toMatchObject({ status: 400, type: 'ValidationException' });
    }
  });

  it('refuses a request signed 20 minutes ago, and answers with the Date an SDK corrects its clock from', async () => {
    const stale = await signedFetch(server.endpoint, credential, 'TrentService.GenerateDataKey', DATA_KEY, { at: new Date(Date.now() - 20 * 60_000) });
    expect(Math.abs(Date.parse(stale.headers.get('date') ?? '') - Date.now())).toBeLessThan(5_000);
    expect(await awsAnswer(stale)).toMatchObject({ status: 400, type: 'InvalidSignatureException' });
  });
});
