import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { DecryptionError, ServiceError, sdkCodeForService } from '../../src/errors.js';
import type { CanonicalContext } from '../../src/format/encryption-context.js';
import type { DataKey, DataKeySource, GenerateOptions, UnwrappedDataKey } from '../../src/keys/data-key-source.js';

const HEAD_BYTES = 1 + 16 + 4 + 12;
const WRAPPED_BYTES = HEAD_BYTES + 32 + 16;

/**
 * A data-key source without a service: data keys are wrapped locally with AES-256-GCM under a key-encryption key,
 * bound to the context, in the service's `kh1` layout (format byte, 16-byte key id, u32 key version, …). It counts
 * calls and can be told to refuse, so cache tests can see every request that reaches "the service".
 */
export class FakeDataKeySource implements DataKeySource {
  readonly kek = randomBytes(32);
  readonly keyId = randomUUID();
  /** The version new data keys are wrapped under, as the service's primary version; one key-encryption key for all. */
  keyVersion = 1;
  generateCalls = 0;
  unwrapCalls = 0;
  rewrapCalls = 0;
  /** When set, every call fails with this service status and code. */
  refuse: { status: number; code: string } | undefined;
  /** Makes calls wait until released, to test single flight. */
  gate: Promise<void> | undefined;

  async generate(keyName: string, context: CanonicalContext, _options?: GenerateOptions): Promise<DataKey> {
    this.generateCalls += 1;
    await this.gate;
    this.#maybeRefuse();
    const plaintext = randomBytes(32);
    return { keyName, keyId: this.keyId, keyVersion: this.keyVersion, wrapped: this.#wrap(plaintext, context), plaintext };
  }

  async unwrap(wrapped: Uint8Array, context: CanonicalContext): Promise<UnwrappedDataKey> {
    this.unwrapCalls += 1;
    await this.gate;
    this.#maybeRefuse();
    return { keyName: 'fake', keyId: this.keyId, plaintext: this.#unwrap(wrapped, context) };
  }

  /** What the service's rewrap-revoked does: the same data key, wrapped under the current `keyVersion`. */
  async rewrapRevoked(wrapped: Uint8Array, context: CanonicalContext): Promise<DataKey> {
    this.rewrapCalls += 1;
    this.#maybeRefuse();
    const plaintext = this.#unwrap(wrapped, context);
    return { keyName: 'fake', keyId: this.keyId, keyVersion: this.keyVersion, wrapped: this.#wrap(plaintext, context), plaintext };
  }

  #unwrap(wrapped: Uint8Array, context: CanonicalContext): Buffer {
    const bytes = Buffer.from(wrapped);
    if (bytes.length !== WRAPPED_BYTES || bytes[0] !== 1 || bytes.subarray(1, 17).toString('hex') !== this.keyId.replaceAll('-', '')) {
      throw new DecryptionError();
    }
    const decipher = createDecipheriv('aes-256-gcm', this.kek, bytes.subarray(21, HEAD_BYTES));
    decipher.setAAD(Buffer.concat([bytes.subarray(0, HEAD_BYTES), context.encoded]));
    decipher.setAuthTag(bytes.subarray(HEAD_BYTES + 32));
    try {
      return Buffer.concat([decipher.update(bytes.subarray(HEAD_BYTES, HEAD_BYTES + 32)), decipher.final()]);
    } catch {
      throw new DecryptionError();
    }
  }

  #wrap(plaintext: Buffer, context: CanonicalContext): Uint8Array {
    const version = Buffer.alloc(4);
    version.writeUInt32BE(this.keyVersion);
    const head = Buffer.concat([Buffer.from([1]), Buffer.from(this.keyId.replaceAll('-', ''), 'hex'), version, randomBytes(12)]);
    const cipher = createCipheriv('aes-256-gcm', this.kek, head.subarray(21));
    cipher.setAAD(Buffer.concat([head, context.encoded]));
    return Buffer.concat([head, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  #maybeRefuse(): void {
    if (this.refuse !== undefined) {
      throw new ServiceError(sdkCodeForService(this.refuse.status, this.refuse.code), { status: this.refuse.status, serviceCode: this.refuse.code });
    }
  }
}
