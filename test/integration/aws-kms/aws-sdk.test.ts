import {
  CancelKeyDeletionCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisabledException,
  DisableKeyCommand,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateDataKeyWithoutPlaintextCommand,
  GetKeyRotationStatusCommand,
  IncorrectKeyException,
  InvalidCiphertextException,
  KMSInvalidStateException,
  KMSServiceException,
  ListAliasesCommand,
  ListKeysCommand,
  NotFoundException,
  ReEncryptCommand,
  ScheduleKeyDeletionCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { allow, issueAwsCredential, kmsClient, startAwsKmsServer, type AwsCredential, type AwsKmsServer } from '../../helpers/aws-kms.js';

const REGION_ARN = 'arn:aws:kms:us-east-1:000000000000';
const PAYMENTS = 'k8s:payments:api';
const ORDERS = 'k8s:orders:api';

/**
 * AccessDeniedException and ValidationException are AWS's common errors, not in the KMS model: the SDK raises them as
 * its service exception under that name, as it does against AWS.
 */
function expectCommonError(error: Error, name: 'AccessDeniedException' | 'ValidationException' | 'UnsupportedOperationException'): void {
  expect(error).toBeInstanceOf(KMSServiceException);
  expect(error.name).toBe(name);
}

async function rejection(promise: Promise<unknown>): Promise<Error & { name: string; $metadata?: { httpStatusCode?: number } }> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(Error);
  return error as Error & { name: string };
}

describeEachDatabase('the AWS KMS endpoint, driven by @aws-sdk/client-kms', (kind) => {
  let server: AwsKmsServer;
  let payments: AwsCredential;
  let kms: KMSClient;
  let paymentsKeyId: string;

  beforeEach(async () => {
    server = await startAwsKmsServer(kind);
    const { t } = server;
    const created = await t.call('POST', '/v1/keys', { name: 'payments' });
    expect(created.status).toBe(201);
    paymentsKeyId = created.body.id;
    expect((await t.call('POST', '/v1/keys', { name: 'orders' })).status).toBe(201);
    await allow(t, 'payments', [PAYMENTS], ['*'], ['payments', 'payments-*']);
    await allow(t, 'payments-list', [PAYMENTS], ['keys:create'], ['payments-*']);
    await allow(t, 'orders', [ORDERS], ['*'], ['orders']);
    payments = await issueAwsCredential(t, 'payments-api', PAYMENTS);
    kms = kmsClient(server.endpoint, payments);
  });
  afterEach(async () => {
    kms.destroy();
    await server.close();
  });

  it('issues data keys by alias, key ARN, key id and alias ARN, and decrypts them with the context in any order', async () => {
    for (const KeyId of ['alias/payments', `${REGION_ARN}:key/${paymentsKeyId}`, paymentsKeyId, `${REGION_ARN}:alias/payments`]) {
      const context = { tenant: 't-1', purpose: 'orders-table' };
      const dataKey = await kms.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256', EncryptionContext: context }));
      expect(dataKey.KeyId).toBe(`${REGION_ARN}:key/${paymentsKeyId}`);
      expect(dataKey.Plaintext).toHaveLength(32);
      // The blob is a binary Keyhold ciphertext: format 1, then the key id.
      expect(dataKey.CiphertextBlob?.[0]).toBe(0x01);
      const decrypted = await kms.send(
        new DecryptCommand({ CiphertextBlob: dataKey.CiphertextBlob, EncryptionContext: { purpose: 'orders-table', tenant: 't-1' } }),
      );
      expect(Buffer.from(decrypted.Plaintext!)).toEqual(Buffer.from(dataKey.Plaintext!));
      expect(decrypted.KeyId).toBe(dataKey.KeyId);
      expect(decrypted.EncryptionAlgorithm).toBe('SYMMETRIC_DEFAULT');
    }
    const sized = await kms.send(new GenerateDataKeyCommand({ KeyId: 'alias/payments', NumberOfBytes: 48 }));
    expect(sized.Plaintext).toHaveLength(48);
    const wrapped = await kms.send(new GenerateDataKeyWithoutPlaintextCommand({ KeyId: 'alias/payments', KeySpec: 'AES_128' }));
    expect(wrapped).not.toHaveProperty('Plaintext');
    expect((await kms.send(new DecryptCommand({ CiphertextBlob: wrapped.CiphertextBlob }))).Plaintext).toHaveLength(16);
  });

  it('encrypts, decrypts with and without KeyId, and re-encrypts under another key and context', async () => {
    await server.t.call('POST', '/v1/keys', { name: 'payments-archive' });
    const secret = Buffer.from('card 4111 1111 1111 1111');
    const encrypted = await kms.send(new EncryptCommand({ KeyId: 'alias/payments', Plaintext: secret, EncryptionContext: { a: '1' } }));
    const byKey = await kms.send(new DecryptCommand({ CiphertextBlob: encrypted.CiphertextBlob, KeyId: paymentsKeyId, EncryptionContext: { a: '1' } }));
    expect(Buffer.from(byKey.Plaintext!)).toEqual(secret);
    const moved = await kms.send(
      new ReEncryptCommand({
        CiphertextBlob: encrypted.CiphertextBlob,
        SourceEncryptionContext: { a: '1' },
        SourceKeyId: 'alias/payments',
        DestinationKeyId: 'alias/payments-archive',
        DestinationEncryptionContext: { b: '2' },
      }),
    );
    expect(moved.SourceKeyId).toBe(`${REGION_ARN}:key/${paymentsKeyId}`);
    expect(moved.KeyId).not.toBe(moved.SourceKeyId);
    const back = await kms.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob, EncryptionContext: { b: '2' } }));
    expect(Buffer.from(back.Plaintext!)).toEqual(secret);
    expect(back.KeyId).toBe(moved.KeyId);
    // Without a destination context, the new ciphertext has none (AWS's rule), not the source's.
    const bare = await kms.send(new ReEncryptCommand({ CiphertextBlob: moved.CiphertextBlob, SourceEncryptionContext: { b: '2' }, DestinationKeyId: 'alias/payments' }));
    expect((await kms.send(new DecryptCommand({ CiphertextBlob: bare.CiphertextBlob }))).KeyId).toBe(`${REGION_ARN}:key/${paymentsKeyId}`);
  });

  it('answers typed errors: NotFound, InvalidCiphertext, IncorrectKey, AccessDenied, Validation', async () => {
    const unknownId = '0b9e2c4a-5f6d-4e8a-9c1b-2d3e4f5a6b7c';
    expect((await rejection(kms.send(new GenerateDataKeyCommand({ KeyId: unknownId, KeySpec: 'AES_256' }))))).toBeInstanceOf(NotFoundException);
    expect(await rejection(kms.send(new DescribeKeyCommand({ KeyId: 'not-a-key-id' })))).toBeInstanceOf(NotFoundException);
    expect(await rejection(kms.send(new DescribeKeyCommand({ KeyId: 'arn:aws:kms:eu-west-1:000000000000:key/' + paymentsKeyId })))).toBeInstanceOf(NotFoundException);

    const { CiphertextBlob } = await kms.send(new EncryptCommand({ KeyId: 'alias/payments', Plaintext: Buffer.from('x'), EncryptionContext: { a: '1' } }));
    const tampered = Buffer.from(CiphertextBlob!);
    tampered[tampered.length - 1]! ^= 1;
    expect(await rejection(kms.send(new DecryptCommand({ CiphertextBlob: tampered, EncryptionContext: { a: '1' } })))).toBeInstanceOf(InvalidCiphertextException);
    expect(await rejection(kms.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { a: '2' } })))).toBeInstanceOf(InvalidCiphertextException);
    expect(await rejection(kms.send(new DecryptCommand({ CiphertextBlob: Buffer.from('garbage') })))).toBeInstanceOf(InvalidCiphertextException);

    await server.t.call('POST', '/v1/keys', { name: 'payments-other' });
    const wrongKey = await rejection(kms.send(new DecryptCommand({ CiphertextBlob, KeyId: 'alias/payments-other', EncryptionContext: { a: '1' } })));
    expect(wrongKey).toBeInstanceOf(IncorrectKeyException);

    // Policies apply as to native calls: the payments workload may not use the orders key.
    const denied = await rejection(kms.send(new GenerateDataKeyCommand({ KeyId: 'alias/orders', KeySpec: 'AES_256' })));
    expectCommonError(denied, 'AccessDeniedException');
    expect(denied.$metadata?.httpStatusCode).toBe(400);
    // A key id of a key it may never use answers as one that does not exist.
    const ordersId = (await server.t.call('GET', '/v1/keys/orders')).body.id as string;
    expect(await rejection(kms.send(new DescribeKeyCommand({ KeyId: ordersId })))).toBeInstanceOf(NotFoundException);

    expectCommonError(await rejection(kms.send(new GenerateDataKeyCommand({ KeyId: 'alias/payments', NumberOfBytes: 8 }))), 'ValidationException');
    expectCommonError(await rejection(kms.send(new GenerateDataKeyCommand({ KeyId: 'alias/payments' }))), 'ValidationException');
    expectCommonError(await rejection(kms.send(new EncryptCommand({ KeyId: 'alias/payments', Plaintext: Buffer.alloc(4097) }))), 'ValidationException');
  });

  it('creates, describes, lists, rotates, disables, enables and schedules the deletion of keys', async () => {
    const created = await kms.send(
      new CreateKeyCommand({ Description: 'ledger', Tags: [{ TagKey: 'keyhold:name', TagValue: 'payments-ledger' }, { TagKey: 'team', TagValue: 'payments' }] }),
    );
    const id = created.KeyMetadata!.KeyId!;
    expect(created.KeyMetadata).toMatchObject({ Arn: `${REGION_ARN}:key/${id}`, Enabled: true, KeyState: 'Enabled', KeySpec: 'SYMMETRIC_DEFAULT', Description: 'ledger', MultiRegion: false });
    expect((await server.t.call('GET', '/v1/keys/payments-ledger')).body).toMatchObject({ id, labels: { team: 'payments' } });
    const described = await kms.send(new DescribeKeyCommand({ KeyId: 'alias/payments-ledger' }));
    expect(described.KeyMetadata?.CreationDate).toBeInstanceOf(Date);

    const firstPage = await kms.send(new ListKeysCommand({ Limit: 1 }));
    expect(firstPage.Keys).toHaveLength(1);
    expect(firstPage.Truncated).toBe(true);
    const rest = await kms.send(new ListKeysCommand({ Marker: firstPage.NextMarker }));
    expect(rest.Truncated).toBe(false);
    // The workload lists what it may read: the payments keys, never the orders key.
    expect([...firstPage.Keys!, ...rest.Keys!].map((key) => key.KeyId).sort()).toEqual([paymentsKeyId, id].sort());
    const aliases = await kms.send(new ListAliasesCommand({}));
    expect(aliases.Aliases?.map((alias) => alias.AliasName).sort()).toEqual(['alias/payments', 'alias/payments-ledger']);
    expect((await kms.send(new ListAliasesCommand({ KeyId: id }))).Aliases).toEqual([
      expect.objectContaining({ AliasName: 'alias/payments-ledger', AliasArn: `${REGION_ARN}:alias/payments-ledger`, TargetKeyId: id }),
    ]);

    expect((await kms.send(new GetKeyRotationStatusCommand({ KeyId: id }))).KeyRotationEnabled).toBe(false);
    await kms.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: 90 }));
    expect(await kms.send(new GetKeyRotationStatusCommand({ KeyId: id }))).toMatchObject({ KeyRotationEnabled: true, RotationPeriodInDays: 90 });
    expectCommonError(await rejection(kms.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: 10 }))), 'ValidationException');
    await kms.send(new DisableKeyRotationCommand({ KeyId: id }));
    expect((await kms.send(new GetKeyRotationStatusCommand({ KeyId: id }))).KeyRotationEnabled).toBe(false);

    await kms.send(new DisableKeyCommand({ KeyId: id }));
    expect(await rejection(kms.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' })))).toBeInstanceOf(DisabledException);
    await kms.send(new EnableKeyCommand({ KeyId: id }));
    await kms.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' }));

    const scheduled = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: 7 }));
    expect(scheduled).toMatchObject({ KeyState: 'PendingDeletion', PendingWindowInDays: 7, KeyId: `${REGION_ARN}:key/${id}` });
    expect(scheduled.DeletionDate!.getTime()).toBe(server.t.clock.now().getTime() + 7 * 86_400_000);
    expect(await rejection(kms.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') })))).toBeInstanceOf(KMSInvalidStateException);
    await kms.send(new CancelKeyDeletionCommand({ KeyId: id }));
    expect((await kms.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata?.KeyState).toBe('Disabled');

    // An operator granted only keys:disable finds the key by its ARN (it may act on it), and no other key.
    await allow(server.t, 'operator', ['k8s:ops:operator'], ['keys:disable'], ['payments-*']);
    const operator = kmsClient(server.endpoint, await issueAwsCredential(server.t, 'operator', 'k8s:ops:operator'));
    await operator.send(new DisableKeyCommand({ KeyId: `${REGION_ARN}:key/${id}` }));
    expect(await rejection(operator.send(new DisableKeyCommand({ KeyId: paymentsKeyId })))).toBeInstanceOf(NotFoundException);
    operator.destroy();

    // CreateKey is refused under a name the policy does not cover, and for what Keyhold keys are not.
    expectCommonError(await rejection(kms.send(new CreateKeyCommand({ Tags: [{ TagKey: 'keyhold:name', TagValue: 'orders-2' }] }))), 'AccessDeniedException');
    expect((await rejection(kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', Tags: [{ TagKey: 'keyhold:name', TagValue: 'payments-rsa' }] })))).name).toBe('UnsupportedOperationException');
    expect((await rejection(kms.send(new CreateKeyCommand({ Policy: '{}', Tags: [{ TagKey: 'keyhold:name', TagValue: 'payments-p' }] })))).name).toBe('UnsupportedOperationException');
  });
});

describe('the AWS KMS endpoint under request quotas', () => {
  let server: AwsKmsServer;
  afterEach(async () => server.close());

  it('answers ThrottlingException over the quota, which the AWS SDK retries until the request passes', async () => {
    server = await startAwsKmsServer('sqlite', { KEYHOLD_AWS_KMS_REQUESTS_PER_SECOND: '2' });
    const { t } = server;
    await t.call('POST', '/v1/keys', { name: 'payments' });
    await allow(t, 'payments', [PAYMENTS], ['datakey'], ['payments']);
    const credential = await issueAwsCredential(t, 'payments-api', PAYMENTS);
    // The test app's clock stands still, so the bucket refills only when the test moves it.
    const once = kmsClient(server.endpoint, credential, { maxAttempts: 1 });
    await once.send(new GenerateDataKeyCommand({ KeyId: 'alias/payments', KeySpec: 'AES_256' }));
    await once.send(new GenerateDataKeyCommand({ KeyId: 'alias/payments', KeySpec: 'AES_256' }));
    const throttled = await rejection(once.send(new GenerateDataKeyCommand({ KeyId: 'alias/payments', KeySpec: 'AES_256' })));
    expect(throttled.name).toBe('ThrottlingException');
    once.destroy();

    const retrying = kmsClient(server.endpoint, credential, { maxAttempts: 5 });
    const refill = setInterval(() => t.clock.advance(250), 100);
    try {
      const result = await retrying.send(new GenerateDataKeyCommand({ KeyId: 'alias/payments', KeySpec: 'AES_256' }));
      expect(result.$metadata.attempts).toBeGreaterThan(1);
    } finally {
      clearInterval(refill);
      retrying.destroy();
    }
  });
});
