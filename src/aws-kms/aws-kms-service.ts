import { randomUUID } from 'node:crypto';
import type { Caller } from '../context/caller.js';
import { parseCiphertext, TEXT_PREFIX } from '../crypto/ciphertext-format.js';
import type { EncryptionContext } from '../crypto/encryption-context.js';
import { DecryptionFailedError, KeyholdError, ValidationError } from '../errors.js';
import type { EnvelopeService } from '../keys/envelope-service.js';
import type { KeyRecord, KeySummary } from '../keys/key-record.js';
import type { KeyService } from '../keys/key-service.js';
import { MAX_PENDING_WINDOW_DAYS, MIN_PENDING_WINDOW_DAYS } from '../keys/lifecycle.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { Action } from '../context/actions.js';
import type { Principal } from '../context/principal.js';
import { AwsKmsError } from './aws-errors.js';
import type { RequestQuota } from './request-quota.js';
import type { ReceivedRequest, SigV4Verifier } from './sigv4.js';

/** The only algorithm of a symmetric key, in AWS's name. */
export const SYMMETRIC_DEFAULT = 'SYMMETRIC_DEFAULT';
/** A tag that names the Keyhold key CreateKey makes; without it the key is named by its id. */
export const NAME_TAG = 'keyhold:name';
/** The data-key sizes AWS names by key spec. */
const KEY_SPEC_BYTES = { AES_256: 32, AES_128: 16 } as const;
const MIN_ROTATION_DAYS = 90;
const MAX_ROTATION_DAYS = 2560;
const DEFAULT_ROTATION_DAYS = 365;
const DAY_SECONDS = 24 * 3600;
/** AWS pages hold up to 1000 entries; Keyhold's listing answers up to 500 and says when there are more. */
const MAX_LIST_PAGE = 500;
const DEFAULT_LIST_PAGE = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const LABEL_KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;

/** The caller's own key lookups: the key cache, so that a key id on the hot path costs no query. */
export interface KeyLookup {
  getById(id: string): Promise<{ readonly key: KeyRecord } | undefined>;
  getByName(name: string): Promise<{ readonly key: KeyRecord } | undefined>;
}

export interface AwsKmsServiceOptions {
  readonly verifier: SigV4Verifier;
  /** Requests per access key, as AWS's request quotas. */
  readonly quota: RequestQuota;
  readonly keys: KeyService;
  readonly envelope: EnvelopeService;
  readonly authorizer: Authorizer;
  readonly lookup: KeyLookup;
  readonly region: string;
  readonly accountId: string;
}

type Tag = { readonly TagKey: string; readonly TagValue: string };

export interface DataKeyRequest {
  readonly KeyId: string;
  readonly NumberOfBytes?: number | undefined;
  readonly KeySpec?: keyof typeof KEY_SPEC_BYTES | undefined;
  readonly EncryptionContext?: EncryptionContext | undefined;
}
export interface EncryptRequest {
  readonly KeyId: string;
  readonly Plaintext: Buffer;
  readonly EncryptionContext?: EncryptionContext | undefined;
}
export interface DecryptRequest {
  readonly CiphertextBlob: Buffer;
  readonly KeyId?: string | undefined;
  readonly EncryptionContext?: EncryptionContext | undefined;
}
export interface ReEncryptRequest {
  readonly CiphertextBlob: Buffer;
  readonly SourceKeyId?: string | undefined;
  readonly SourceEncryptionContext?: EncryptionContext | undefined;
  readonly DestinationKeyId: string;
  readonly DestinationEncryptionContext?: EncryptionContext | undefined;
}
export interface KeyIdRequest {
  readonly KeyId: string;
}
export interface PageRequest {
  readonly Limit?: number | undefined;
  readonly Marker?: string | undefined;
}
export interface CreateKeyRequest {
  readonly Description?: string | undefined;
  readonly Tags?: readonly Tag[] | undefined;
}

export interface KeyMetadata {
  readonly AWSAccountId: string;
  readonly KeyId: string;
  readonly Arn: string;
  /** Seconds since the epoch, as the AWS JSON protocol writes timestamps. */
  readonly CreationDate: number;
  readonly Enabled: boolean;
  readonly Description: string;
  readonly KeyUsage: 'ENCRYPT_DECRYPT';
  readonly KeyState: 'Enabled' | 'Disabled' | 'PendingDeletion';
  readonly DeletionDate?: number;
  readonly Origin: 'AWS_KMS';
  readonly KeyManager: 'CUSTOMER';
  readonly CustomerMasterKeySpec: typeof SYMMETRIC_DEFAULT;
  readonly KeySpec: typeof SYMMETRIC_DEFAULT;
  readonly EncryptionAlgorithms: readonly [typeof SYMMETRIC_DEFAULT];
  readonly MultiRegion: false;
}

/** The wire form of a Keyhold ciphertext: the bytes of its `kh1` text, which AWS clients store as a blob. */
export function blobOfCiphertext(text: string): Buffer {
  return Buffer.from(text.slice(TEXT_PREFIX.length), 'base64url');
}

export function ciphertextOfBlob(blob: Buffer): string {
  return TEXT_PREFIX + blob.toString('base64url');
}

function seconds(date: Date): number {
  return date.getTime() / 1000;
}

function notFound(message: string): AwsKmsError {
  return new AwsKmsError('NotFoundException', 'KH_ERR_KEY_NOT_FOUND', message);
}

function unsupported(message: string): AwsKmsError {
  return new AwsKmsError('UnsupportedOperationException', 'KH_ERR_VALIDATION', message);
}

/** Where a KeyId points: a key name (from an alias), or a key id (from a UUID or key ARN). */
type KeyReference = { readonly name: string; readonly id?: undefined } | { readonly id: string; readonly name?: undefined };

/**
 * The AWS KMS operations on Keyhold's key services: the same policies, key states, revocation and audit trail as the
 * native API, in AWS's names and shapes. Keys are named in ARNs by their id; `alias/NAME` is the Keyhold key NAME.
 */
export class AwsKmsService {
  readonly #verifier: SigV4Verifier;
  readonly #quota: RequestQuota;
  readonly #keys: KeyService;
  readonly #envelope: EnvelopeService;
  readonly #authorizer: Authorizer;
  readonly #lookup: KeyLookup;
  readonly #arnPrefix: string;
  readonly #accountId: string;

  constructor(options: AwsKmsServiceOptions) {
    this.#verifier = options.verifier;
    this.#quota = options.quota;
    this.#keys = options.keys;
    this.#envelope = options.envelope;
    this.#authorizer = options.authorizer;
    this.#lookup = options.lookup;
    this.#arnPrefix = `arn:aws:kms:${options.region}:${options.accountId}:`;
    this.#accountId = options.accountId;
  }

  /**
   * The principal a signed request acts as: its SigV4 signature verified against the access key's secret, then its
   * access key's request quota taken.
   */
  async authenticate(request: ReceivedRequest): Promise<Principal> {
    const principal = await this.#verifier.verify(request);
    if (!this.#quota.take(principal.attributes.accessKeyId ?? principal.id)) {
      throw new AwsKmsError('ThrottlingException', 'KH_ERR_THROTTLED', 'Rate exceeded');
    }
    return principal;
  }

  keyArn(id: string): string {
    return `${this.#arnPrefix}key/${id}`;
  }

  aliasArn(name: string): string {
    return `${this.#arnPrefix}alias/${name}`;
  }

  async generateDataKey(caller: Caller, request: DataKeyRequest, includePlaintext: boolean): Promise<{ CiphertextBlob: Buffer; Plaintext?: Buffer; KeyId: string }> {
    if ((request.NumberOfBytes === undefined) === (request.KeySpec === undefined)) {
      throw new ValidationError('Specify either KeySpec or NumberOfBytes, but not both');
    }
    const bytes = request.NumberOfBytes ?? KEY_SPEC_BYTES[request.KeySpec ?? 'AES_256'];
    const name = await this.#nameOf(caller, request.KeyId, 'datakey');
    const result = await this.#envelope.generateDataKey(caller, name, { context: request.EncryptionContext, bytes, includePlaintext });
    const answer = { CiphertextBlob: blobOfCiphertext(result.ciphertext), KeyId: this.keyArn(result.keyId) };
    return result.plaintext === undefined ? answer : { ...answer, Plaintext: result.plaintext };
  }

  async encrypt(caller: Caller, request: EncryptRequest): Promise<{ CiphertextBlob: Buffer; KeyId: string; EncryptionAlgorithm: string }> {
    const name = await this.#nameOf(caller, request.KeyId, 'encrypt');
    const result = await this.#envelope.encrypt(caller, name, { plaintext: request.Plaintext, context: request.EncryptionContext });
    return { CiphertextBlob: blobOfCiphertext(result.ciphertext), KeyId: this.keyArn(result.keyId), EncryptionAlgorithm: SYMMETRIC_DEFAULT };
  }

  async decrypt(caller: Caller, request: DecryptRequest): Promise<{ Plaintext: Buffer; KeyId: string; EncryptionAlgorithm: string }> {
    const ciphertext = ciphertextOfBlob(request.CiphertextBlob);
    if (request.KeyId !== undefined) await this.#checkCiphertextKey(caller, ciphertext, request.KeyId);
    const result = await this.#envelope.decrypt(caller, { ciphertext, context: request.EncryptionContext });
    return { Plaintext: result.plaintext, KeyId: this.keyArn(result.keyId), EncryptionAlgorithm: SYMMETRIC_DEFAULT };
  }

  async reEncrypt(
    caller: Caller,
    request: ReEncryptRequest,
  ): Promise<{ CiphertextBlob: Buffer; SourceKeyId: string; KeyId: string; SourceEncryptionAlgorithm: string; DestinationEncryptionAlgorithm: string }> {
    const ciphertext = ciphertextOfBlob(request.CiphertextBlob);
    if (request.SourceKeyId !== undefined) await this.#checkCiphertextKey(caller, ciphertext, request.SourceKeyId);
    const destination = await this.#nameOf(caller, request.DestinationKeyId, 'rewrap');
    const sourceKeyId = parseCiphertext(ciphertext).keyId;
    const result = await this.#envelope.rewrap(caller, destination, {
      ciphertext,
      context: request.SourceEncryptionContext,
      // AWS seals under the destination context alone: none given means none, not the source's.
      destinationContext: request.DestinationEncryptionContext ?? {},
    });
    return {
      CiphertextBlob: blobOfCiphertext(result.ciphertext),
      SourceKeyId: this.keyArn(sourceKeyId),
      KeyId: this.keyArn(result.keyId),
      SourceEncryptionAlgorithm: SYMMETRIC_DEFAULT,
      DestinationEncryptionAlgorithm: SYMMETRIC_DEFAULT,
    };
  }

  async describeKey(caller: Caller, request: KeyIdRequest): Promise<{ KeyMetadata: KeyMetadata }> {
    return { KeyMetadata: this.#metadataOf(await this.#keys.get(caller, await this.#nameOf(caller, request.KeyId, 'keys:read'))) };
  }

  async listKeys(caller: Caller, request: PageRequest): Promise<{ Keys: { KeyId: string; KeyArn: string }[]; Truncated: boolean; NextMarker?: string }> {
    const page = await this.#page(caller, request);
    return {
      Keys: page.keys.map((key) => ({ KeyId: key.id, KeyArn: this.keyArn(key.id) })),
      ...this.#truncation(page.nextCursor),
    };
  }

  async listAliases(
    caller: Caller,
    request: PageRequest & { readonly KeyId?: string | undefined },
  ): Promise<{ Aliases: { AliasName: string; AliasArn: string; TargetKeyId: string; CreationDate: number; LastUpdatedDate: number }[]; Truncated: boolean; NextMarker?: string }> {
    const alias = (key: KeySummary | KeyRecord) => ({
      AliasName: `alias/${key.name}`,
      AliasArn: this.aliasArn(key.name),
      TargetKeyId: key.id,
      CreationDate: seconds(key.createdAt),
      LastUpdatedDate: seconds(key.createdAt),
    });
    if (request.KeyId !== undefined) {
      if (request.Marker !== undefined) throw new AwsKmsError('InvalidMarkerException', 'KH_ERR_VALIDATION', 'The marker is not valid');
      const key = await this.#keys.get(caller, await this.#nameOf(caller, request.KeyId, 'keys:read'));
      return { Aliases: key.state === 'destroyed' ? [] : [alias(key)], Truncated: false };
    }
    const page = await this.#page(caller, request);
    return { Aliases: page.keys.map(alias), ...this.#truncation(page.nextCursor) };
  }

  async createKey(caller: Caller, request: CreateKeyRequest): Promise<{ KeyMetadata: KeyMetadata }> {
    const id = randomUUID();
    let name: string = id;
    const labels: Record<string, string> = {};
    for (const { TagKey, TagValue } of request.Tags ?? []) {
      if (TagKey === NAME_TAG) {
        if (!KEY_NAME.test(TagValue)) throw new ValidationError(`The ${NAME_TAG} tag must be a key name: ${KEY_NAME.source}`);
        name = TagValue;
      } else if (!LABEL_KEY.test(TagKey) || TagValue.length > 256 || TagValue.includes('\0')) {
        throw new ValidationError(`Tags become key labels: lower-case keys of up to 63 characters (${LABEL_KEY.source}), values of up to 256`);
      } else {
        labels[TagKey] = TagValue;
      }
    }
    const key = await this.#keys.create(caller, { id, name, description: request.Description, labels });
    return { KeyMetadata: this.#metadataOf(key) };
  }

  async enableKeyRotation(caller: Caller, request: KeyIdRequest & { readonly RotationPeriodInDays?: number | undefined }): Promise<Record<string, never>> {
    const days = request.RotationPeriodInDays ?? DEFAULT_ROTATION_DAYS;
    if (!Number.isInteger(days) || days < MIN_ROTATION_DAYS || days > MAX_ROTATION_DAYS) {
      throw new ValidationError(`RotationPeriodInDays must be between ${MIN_ROTATION_DAYS} and ${MAX_ROTATION_DAYS}`);
    }
    await this.#keys.update(caller, await this.#nameOf(caller, request.KeyId, 'keys:update'), { rotationPeriodSeconds: days * DAY_SECONDS });
    return {};
  }

  async disableKeyRotation(caller: Caller, request: KeyIdRequest): Promise<Record<string, never>> {
    await this.#keys.update(caller, await this.#nameOf(caller, request.KeyId, 'keys:update'), { rotationPeriodSeconds: 0 });
    return {};
  }

  async getKeyRotationStatus(
    caller: Caller,
    request: KeyIdRequest,
  ): Promise<{ KeyRotationEnabled: boolean; KeyId: string; RotationPeriodInDays?: number; NextRotationDate?: number }> {
    const key = this.#live(await this.#keys.get(caller, await this.#nameOf(caller, request.KeyId, 'keys:read')));
    const period = key.rotationPeriodSeconds;
    if (period === null) return { KeyRotationEnabled: false, KeyId: this.keyArn(key.id) };
    return {
      KeyRotationEnabled: true,
      KeyId: this.keyArn(key.id),
      // Keyhold periods are in seconds and may be shorter than a day; AWS counts whole days.
      RotationPeriodInDays: Math.max(1, Math.round(period / DAY_SECONDS)),
      ...(key.nextRotationAt === null ? {} : { NextRotationDate: seconds(key.nextRotationAt) }),
    };
  }

  async enableKey(caller: Caller, request: KeyIdRequest): Promise<Record<string, never>> {
    await this.#keys.enable(caller, await this.#nameOf(caller, request.KeyId, 'keys:enable'));
    return {};
  }

  async disableKey(caller: Caller, request: KeyIdRequest): Promise<Record<string, never>> {
    await this.#keys.disable(caller, await this.#nameOf(caller, request.KeyId, 'keys:disable'));
    return {};
  }

  async scheduleKeyDeletion(
    caller: Caller,
    request: KeyIdRequest & { readonly PendingWindowInDays?: number | undefined },
  ): Promise<{ KeyId: string; DeletionDate: number; KeyState: 'PendingDeletion'; PendingWindowInDays: number }> {
    const days = request.PendingWindowInDays ?? MAX_PENDING_WINDOW_DAYS;
    if (!Number.isInteger(days) || days < MIN_PENDING_WINDOW_DAYS || days > MAX_PENDING_WINDOW_DAYS) {
      throw new ValidationError(`PendingWindowInDays must be between ${MIN_PENDING_WINDOW_DAYS} and ${MAX_PENDING_WINDOW_DAYS}`);
    }
    const key = await this.#keys.scheduleDeletion(caller, await this.#nameOf(caller, request.KeyId, 'keys:delete'), days);
    if (key.deletionDate === null) throw new KeyholdError('KH_ERR_INTERNAL');
    return { KeyId: this.keyArn(key.id), DeletionDate: seconds(key.deletionDate), KeyState: 'PendingDeletion', PendingWindowInDays: days };
  }

  async cancelKeyDeletion(caller: Caller, request: KeyIdRequest): Promise<{ KeyId: string }> {
    const key = await this.#keys.cancelDeletion(caller, await this.#nameOf(caller, request.KeyId, 'keys:delete'));
    return { KeyId: this.keyArn(key.id) };
  }

  /**
   * Refuses what AWS KMS offers and Keyhold does not, rather than ignore it: the caller would believe it applied.
   * `request` is the operation's input as sent, before its schema is checked.
   */
  refuseUnsupported(operation: string, request: Readonly<Record<string, unknown>>): void {
    if (request.DryRun === true) throw unsupported('DryRun is not supported');
    if (request.Recipient !== undefined) throw unsupported('Recipient (Nitro Enclaves attestation) is not supported');
    if (operation !== 'CreateKey') return;
    if (request.Policy !== undefined) throw unsupported('Key policies are not supported: Keyhold policies govern keys (docs/aws-kms.md)');
    if (request.MultiRegion === true) throw unsupported('Multi-Region keys are not supported');
    if (request.CustomKeyStoreId !== undefined || request.XksKeyId !== undefined) throw unsupported('Custom key stores are not supported');
    const only: Readonly<Record<string, string>> = {
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeySpec: SYMMETRIC_DEFAULT,
      CustomerMasterKeySpec: SYMMETRIC_DEFAULT,
      Origin: 'AWS_KMS',
    };
    for (const [field, allowed] of Object.entries(only)) {
      const value = request[field];
      if (value !== undefined && value !== allowed) throw unsupported(`${field} ${String(value)} is not supported: Keyhold keys are ${allowed}`);
    }
  }

  /** The Keyhold key name a KeyId stands for, to do `action` on it. */
  async #nameOf(caller: Caller, keyId: string, action: Action): Promise<string> {
    const reference = this.#parseKeyId(keyId);
    if (reference.name !== undefined) return reference.name;
    return (await this.#keyById(caller, reference.id, keyId, action)).name;
  }

  /**
   * A key by id, for a caller that may do `action` on it or use it in some way. Any other key answers as one that
   * does not exist: a caller learns nothing about keys it may not use, as with a ciphertext of such a key. A caller
   * that may do `action` on no key at all is answered so before the key is looked up, so made-up or foreign ids cost
   * it no load, as on the native decrypt path.
   */
  async #keyById(caller: Caller, id: string, asked: string, action: Action): Promise<KeyRecord> {
    const { principal } = caller;
    if (!this.#authorizer.maySomeKeyBeAllowed(principal, action)) throw notFound(`Key '${asked}' does not exist`);
    const key = (await this.#lookup.getById(id))?.key;
    const visible =
      key !== undefined &&
      key.state !== 'destroyed' &&
      (this.#authorizer.mayEverUseKey(principal, key.name) || this.#authorizer.isAllowed(principal, action, { keyName: key.name }));
    if (!visible) throw notFound(`Key '${asked}' does not exist`);
    return key;
  }

  /**
   * A ciphertext names its key; when the caller also names one, they must agree (IncorrectKeyException). A KeyId
   * the caller may never use fails as one that does not exist, before the ciphertext is looked at.
   */
  async #checkCiphertextKey(caller: Caller, ciphertext: string, keyId: string): Promise<void> {
    const reference = this.#parseKeyId(keyId);
    let expected: string;
    if (reference.id !== undefined) {
      expected = (await this.#keyById(caller, reference.id, keyId, 'decrypt')).id;
    } else {
      const key = this.#authorizer.mayEverUseKey(caller.principal, reference.name) ? (await this.#lookup.getByName(reference.name))?.key : undefined;
      if (key === undefined || key.state === 'destroyed') throw notFound(`Alias '${this.aliasArn(reference.name)}' is not found.`);
      expected = key.id;
    }
    let named: string;
    try {
      named = parseCiphertext(ciphertext).keyId;
    } catch {
      throw new DecryptionFailedError();
    }
    if (named !== expected) {
      throw new AwsKmsError('IncorrectKeyException', 'KH_ERR_DECRYPTION_FAILED', 'The key ID in the request does not identify the key that encrypted the ciphertext.');
    }
  }

  /** `alias/NAME`, an alias ARN, a key ARN of this region and account, or a key id. */
  #parseKeyId(keyId: string): KeyReference {
    let rest = keyId;
    if (rest.startsWith('arn:')) {
      if (!rest.startsWith(this.#arnPrefix)) throw notFound(`Invalid arn ${keyId}: not of this region and account`);
      rest = rest.slice(this.#arnPrefix.length);
      if (rest.startsWith('key/') && UUID.test(rest.slice(4))) return { id: rest.slice(4) };
      if (!rest.startsWith('alias/')) throw notFound(`Invalid keyId ${keyId}`);
    }
    if (rest.startsWith('alias/')) {
      const name = rest.slice('alias/'.length);
      if (!KEY_NAME.test(name)) throw notFound(`Alias '${this.aliasArn(name)}' is not found.`);
      return { name };
    }
    if (UUID.test(rest)) return { id: rest };
    throw notFound(`Invalid keyId ${keyId}`);
  }

  async #page(caller: Caller, request: PageRequest) {
    const limit = Math.min(request.Limit ?? DEFAULT_LIST_PAGE, MAX_LIST_PAGE);
    try {
      const page = await this.#keys.list(caller, { cursor: request.Marker, limit });
      return { ...page, keys: page.keys.filter((key) => key.state !== 'destroyed') };
    } catch (error) {
      if (error instanceof KeyholdError && error.code === 'KH_ERR_VALIDATION' && request.Marker !== undefined) {
        throw new AwsKmsError('InvalidMarkerException', 'KH_ERR_VALIDATION', 'The marker is not valid');
      }
      throw error;
    }
  }

  #truncation(nextCursor: string | undefined): { Truncated: boolean; NextMarker?: string } {
    return nextCursor === undefined ? { Truncated: false } : { Truncated: true, NextMarker: nextCursor };
  }

  /** A destroyed key is gone, as a deleted AWS key is. */
  #live(key: KeyRecord): KeyRecord {
    if (key.state === 'destroyed') throw notFound(`Key '${this.keyArn(key.id)}' does not exist`);
    return key;
  }

  #metadataOf(record: KeyRecord): KeyMetadata {
    const key = this.#live(record);
    const state = key.state === 'enabled' ? 'Enabled' : key.state === 'disabled' ? 'Disabled' : 'PendingDeletion';
    return {
      AWSAccountId: this.#accountId,
      KeyId: key.id,
      Arn: this.keyArn(key.id),
      CreationDate: seconds(key.createdAt),
      Enabled: key.state === 'enabled',
      Description: key.description,
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeyState: state,
      ...(key.deletionDate === null ? {} : { DeletionDate: seconds(key.deletionDate) }),
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      CustomerMasterKeySpec: SYMMETRIC_DEFAULT,
      KeySpec: SYMMETRIC_DEFAULT,
      EncryptionAlgorithms: [SYMMETRIC_DEFAULT],
      MultiRegion: false,
    };
  }
}
