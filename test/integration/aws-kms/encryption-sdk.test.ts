import { buildClient, CommitmentPolicy, getClient, KmsKeyringNode } from '@aws-crypto/client-node';
import { KMS } from '@aws-sdk/client-kms';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDatabase } from '../../helpers/app.js';
import { allow, issueAwsCredential, startAwsKmsServer, type AwsCredential, type AwsKmsServer } from '../../helpers/aws-kms.js';

const WORKLOAD = 'k8s:billing:invoices';

describeEachDatabase('the AWS Encryption SDK (KmsKeyringNode) through the endpoint', (kind) => {
  let server: AwsKmsServer;
  let credential: AwsCredential;
  let keyArn: string;

  beforeEach(async () => {
    server = await startAwsKmsServer(kind);
    const { t } = server;
    const created = await t.call('POST', '/v1/keys', { name: 'invoices' });
    keyArn = `arn:aws:kms:us-east-1:000000000000:key/${created.body.id}`;
    await allow(t, 'invoices', [WORKLOAD], ['datakey', 'encrypt', 'decrypt'], ['invoices']);
    credential = await issueAwsCredential(t, 'invoices', WORKLOAD);
  });
  afterEach(async () => server.close());

  /** The Encryption SDK's client supplier must give it the aggregated `KMS` client, pointed at Keyhold. */
  function keyring(): KmsKeyringNode {
    const clientProvider = getClient(KMS, { endpoint: server.endpoint, credentials: credential });
    return new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider });
  }

  it('encrypts a message, and decrypts it after the key was rotated in Keyhold', async () => {
    const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
    const plaintext = Buffer.from('invoice 2026-12 for ACME: 1,204.00 EUR');
    const context = { tenant: 'acme', stage: 'prod' };
    const { result, messageHeader } = await encrypt(keyring(), plaintext, { encryptionContext: context });
    // The SDK stores the key ARN it was answered with, and requires the same string to decrypt.
    expect(messageHeader.encryptedDataKeys.map((edk) => edk.providerInfo)).toEqual([keyArn]);

    expect((await server.t.call('POST', '/v1/keys/invoices/rotate')).status).toBe(200);
    const decrypted = await decrypt(keyring(), result);
    expect(Buffer.from(decrypted.plaintext)).toEqual(plaintext);
    expect(decrypted.messageHeader.encryptionContext).toMatchObject(context);

    // A message written after the rotation is under the new version, and decrypts as well.
    const after = await encrypt(keyring(), plaintext, { encryptionContext: context });
    expect(Buffer.from((await decrypt(keyring(), after.result)).plaintext)).toEqual(plaintext);
  });

  it('cannot decrypt once the workload loses decrypt in Keyhold', async () => {
    const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
    const { result } = await encrypt(keyring(), Buffer.from('secret'));
    await allow(server.t, 'invoices', [WORKLOAD], ['datakey', 'encrypt'], ['invoices']);
    await expect(decrypt(keyring(), result)).rejects.toThrow();
  });
});
