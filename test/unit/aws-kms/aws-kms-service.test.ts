import { describe, expect, it } from 'vitest';
import { AwsKmsError } from '../../../src/aws-kms/aws-errors.js';
import { AwsKmsService, blobOfCiphertext, ciphertextOfBlob } from '../../../src/aws-kms/aws-kms-service.js';
import { RequestQuota } from '../../../src/aws-kms/request-quota.js';
import { SigV4Verifier } from '../../../src/aws-kms/sigv4.js';
import { PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { PolicySet } from '../../../src/policy/evaluate.js';
import { compilePolicy } from '../../../src/policy/policy.js';
import { ManualClock } from '../../helpers/clock.js';
import { keyWorld, WORKER } from '../../helpers/fakes/key-world.js';

const ARN = 'arn:aws:kms:eu-central-1:123456789012';

/** The key services in memory, with the AWS operations over them; `token:worker` may use keys `app-*` only. */
async function world() {
  const base = keyWorld([{ actions: ['*'], keys: ['app-*'] }]);
  const authorizer = new PolicyAuthorizer(
    () => new PolicySet([compilePolicy('p', { statements: [{ effect: 'allow', principals: [WORKER.id], actions: ['*'], keys: ['app-*'] }] })]),
  );
  const service = new AwsKmsService({
    verifier: new SigV4Verifier({ credentials: { signingCredential: () => undefined }, region: 'eu-central-1', service: 'kms', clock: base.clock }),
    quota: new RequestQuota(0, base.clock),
    keys: base.keys,
    envelope: base.envelope,
    authorizer,
    lookup: base.cache,
    region: 'eu-central-1',
    accountId: '123456789012',
  });
  const app = await base.keys.create(base.admin(), { name: 'app-orders' });
  const hidden = await base.keys.create(base.admin(), { name: 'hr-payroll' });
  return { ...base, service, app, hidden };
}

async function failure(promise: Promise<unknown>): Promise<{ type: string; code: string }> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  if (error instanceof AwsKmsError) return { type: error.awsType, code: error.code };
  const { code } = error as { code: string };
  return { type: '(Keyhold error)', code };
}

describe('AwsKmsService', () => {
  it('resolves every KeyId form to the same key, and answers its full key ARN', async () => {
    const { service, app, worker } = await world();
    for (const KeyId of [app.id, `${ARN}:key/${app.id}`, 'alias/app-orders', `${ARN}:alias/app-orders`]) {
      const { KeyMetadata } = await service.describeKey(worker(), { KeyId });
      expect(KeyMetadata).toMatchObject({ KeyId: app.id, Arn: `${ARN}:key/${app.id}`, AWSAccountId: '123456789012', KeyState: 'Enabled' });
    }
  });

  it('answers NotFoundException for an ARN of another region or account, a malformed id, and an unknown id', async () => {
    const { service, app, worker } = await world();
    for (const KeyId of [`arn:aws:kms:us-east-1:123456789012:key/${app.id}`, `arn:aws:kms:eu-central-1:999999999999:key/${app.id}`, 'app-orders', 'alias/', `${ARN}:key/not-a-uuid`, '00000000-0000-4000-8000-000000000000']) {
      expect(await failure(service.describeKey(worker(), { KeyId })), KeyId).toEqual({ type: 'NotFoundException', code: 'KH_ERR_KEY_NOT_FOUND' });
    }
  });

  it('answers a key id the caller may never use as not found, and a name it may not use as denied', async () => {
    const { service, hidden, worker } = await world();
    expect(await failure(service.describeKey(worker(), { KeyId: hidden.id }))).toMatchObject({ type: 'NotFoundException' });
    expect(await failure(service.describeKey(worker(), { KeyId: 'alias/hr-payroll' }))).toMatchObject({ code: 'KH_ERR_FORBIDDEN' });
    // Decrypt with a KeyId the caller may never use fails before the ciphertext is looked at.
    const blob = Buffer.alloc(100, 1);
    expect(await failure(service.decrypt(worker(), { CiphertextBlob: blob, KeyId: hidden.id }))).toMatchObject({ type: 'NotFoundException' });
  });

  it('round-trips the blob form of a kh1 ciphertext, and refuses a KeyId that is not the ciphertext key', async () => {
    const { service, keys, admin, worker } = await world();
    await keys.create(admin(), { name: 'app-other' });
    const { CiphertextBlob } = await service.encrypt(worker(), { KeyId: 'alias/app-orders', Plaintext: Buffer.from('hello') });
    expect(ciphertextOfBlob(CiphertextBlob)).toMatch(/^kh1:/);
    expect(blobOfCiphertext(ciphertextOfBlob(CiphertextBlob))).toEqual(CiphertextBlob);
    expect(await failure(service.decrypt(worker(), { CiphertextBlob, KeyId: 'alias/app-other' }))).toEqual({
      type: 'IncorrectKeyException',
      code: 'KH_ERR_DECRYPTION_FAILED',
    });
    expect(Buffer.from((await service.decrypt(worker(), { CiphertextBlob, KeyId: 'alias/app-orders' })).Plaintext).toString()).toBe('hello');
  });

  it('takes KeySpec or NumberOfBytes, not both and not neither', async () => {
    const { service, worker } = await world();
    expect((await service.generateDataKey(worker(), { KeyId: 'alias/app-orders', KeySpec: 'AES_128' }, true)).Plaintext).toHaveLength(16);
    expect((await service.generateDataKey(worker(), { KeyId: 'alias/app-orders', NumberOfBytes: 64 }, true)).Plaintext).toHaveLength(64);
    expect(await service.generateDataKey(worker(), { KeyId: 'alias/app-orders', KeySpec: 'AES_256' }, false)).not.toHaveProperty('Plaintext');
    for (const request of [{}, { KeySpec: 'AES_256' as const, NumberOfBytes: 32 }]) {
      expect(await failure(service.generateDataKey(worker(), { KeyId: 'alias/app-orders', ...request }, true))).toMatchObject({ code: 'KH_ERR_VALIDATION' });
    }
  });

  it('names a created key by its keyhold:name tag, or by its own id, and turns other tags into labels', async () => {
    const { service, keys, admin, worker } = await world();
    const named = await service.createKey(worker(), { Tags: [{ TagKey: 'keyhold:name', TagValue: 'app-ledger' }, { TagKey: 'team', TagValue: 'a' }] });
    expect((await keys.get(admin(), 'app-ledger')).labels).toEqual({ team: 'a' });
    expect(named.KeyMetadata.KeyId).toBe((await keys.get(admin(), 'app-ledger')).id);
    // Without a name tag the key is named by its id, which the worker's grant on app-* does not cover.
    expect(await failure(service.createKey(worker(), {}))).toMatchObject({ code: 'KH_ERR_FORBIDDEN' });
    const unnamed = await service.createKey(admin(), { Description: 'd' });
    expect((await keys.get(admin(), unnamed.KeyMetadata.KeyId)).id).toBe(unnamed.KeyMetadata.KeyId);
    expect(await failure(service.createKey(admin(), { Tags: [{ TagKey: 'Team', TagValue: 'a' }] }))).toMatchObject({ code: 'KH_ERR_VALIDATION' });
  });

  it('refuses what AWS offers and Keyhold does not, as UnsupportedOperationException', () => {
    const { service } = { service: new AwsKmsService({} as never) };
    for (const [operation, request] of [
      ['GenerateDataKey', { DryRun: true }],
      ['Decrypt', { Recipient: {} }],
      ['CreateKey', { Policy: '{}' }],
      ['CreateKey', { KeySpec: 'RSA_2048' }],
      ['CreateKey', { KeyUsage: 'SIGN_VERIFY' }],
      ['CreateKey', { MultiRegion: true }],
      ['CreateKey', { CustomKeyStoreId: 'cks-1' }],
    ] as const) {
      expect(() => service.refuseUnsupported(operation, request)).toThrow(expect.objectContaining({ awsType: 'UnsupportedOperationException' }));
    }
    expect(() => service.refuseUnsupported('CreateKey', { KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT', Origin: 'AWS_KMS' })).not.toThrow();
    // GenerateDataKey's own KeySpec (AES_256) is no CreateKey key spec.
    expect(() => service.refuseUnsupported('GenerateDataKey', { KeySpec: 'AES_256' })).not.toThrow();
  });
});

describe('RequestQuota', () => {
  it('lets a burst of one second through, then the rate, per access key', () => {
    const clock = new ManualClock();
    const quota = new RequestQuota(3, clock);
    expect([1, 2, 3, 4].map(() => quota.take('A'))).toEqual([true, true, true, false]);
    expect(quota.take('B')).toBe(true);
    clock.advance(334);
    expect([quota.take('A'), quota.take('A')]).toEqual([true, false]);
    clock.advance(10_000);
    expect([1, 2, 3, 4].map(() => quota.take('A'))).toEqual([true, true, true, false]);
    expect(new RequestQuota(0, clock).take('A')).toBe(true);
  });
});
