import { DecryptionError, ServiceError } from '../errors.js';
import { contextObject, type CanonicalContext } from '../format/encryption-context.js';
import type { Transport } from '../transport/http-transport.js';
import type { DataKey, DataKeySource, GenerateOptions, SourceCallOptions, UnwrappedDataKey } from './data-key-source.js';
import { decodeWrappedKey, encodeWrappedKey } from './wrapped-key.js';

interface DataKeyAnswer {
  readonly keyId?: unknown;
  readonly keyName?: unknown;
  readonly keyVersion?: unknown;
  readonly ciphertext?: unknown;
  readonly plaintext?: unknown;
}

const DATA_KEY_BYTES = 32;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Data keys from the Keyhold service: `POST /v1/keys/{name}/datakey` and `POST /v1/decrypt`. The encryption context
 * goes to the service with both calls, so the wrapped key is bound to it there as well as in the message.
 */
export class ServiceDataKeySource implements DataKeySource {
  constructor(private readonly transport: Transport) {}

  async generate(keyName: string, context: CanonicalContext, options: GenerateOptions = {}): Promise<DataKey> {
    const answer = await this.transport.request<DataKeyAnswer>(
      'POST',
      `/v1/keys/${encodeURIComponent(keyName)}/datakey`,
      { context: contextObject(context), bytes: DATA_KEY_BYTES },
      { signal: options.signal, timeoutMs: options.timeoutMs },
    );
    const wrapped = typeof answer.ciphertext === 'string' ? decodeWrappedKey(answer.ciphertext) : undefined;
    const plaintext = decodeKey(answer.plaintext);
    if (wrapped === undefined || plaintext === undefined || typeof answer.keyId !== 'string' || typeof answer.keyName !== 'string'
      || typeof answer.keyVersion !== 'number') {
      plaintext?.fill(0);
      throw new ServiceError('KH_SDK_SERVICE_ERROR', { status: 200 }, 'The service answered a data key request with an unexpected body');
    }
    return { keyName: answer.keyName, keyId: answer.keyId, keyVersion: answer.keyVersion, wrapped, plaintext };
  }

  async unwrap(wrapped: Uint8Array, context: CanonicalContext, options: SourceCallOptions = {}): Promise<UnwrappedDataKey> {
    const answer = await this.#readWrapped<DataKeyAnswer>('/v1/decrypt', wrapped, context, options);
    const plaintext = decodeKey(answer.plaintext);
    if (plaintext === undefined || typeof answer.keyId !== 'string' || typeof answer.keyName !== 'string') {
      plaintext?.fill(0);
      throw new DecryptionError();
    }
    return { keyName: answer.keyName, keyId: answer.keyId, plaintext };
  }

  /**
   * `POST /v1/keys/{name}/rewrap-revoked`: the same data key, wrapped under the primary version of `keyName` with the
   * same context, whatever version wrapped it before (disabled and below-minimum ones included). Needs the
   * `rewrap-revoked` action on the key; the data key's plaintext does not travel.
   */
  async rewrapRevoked(keyName: string, wrapped: Uint8Array, context: CanonicalContext, options: SourceCallOptions = {}): Promise<RewrappedDataKey> {
    const answer = await this.#readWrapped<DataKeyAnswer>(`/v1/keys/${encodeURIComponent(keyName)}/rewrap-revoked`, wrapped, context, options);
    const rewrapped = typeof answer.ciphertext === 'string' ? decodeWrappedKey(answer.ciphertext) : undefined;
    if (rewrapped === undefined || typeof answer.keyId !== 'string' || typeof answer.keyName !== 'string' || typeof answer.keyVersion !== 'number') {
      throw new ServiceError('KH_SDK_SERVICE_ERROR', { status: 200 }, 'The service answered a rewrap request with an unexpected body');
    }
    return { keyName: answer.keyName, keyId: answer.keyId, keyVersion: answer.keyVersion, wrapped: rewrapped };
  }

  /** Sends a wrapped data key with its context to a route that reads it. */
  async #readWrapped<T>(path: string, wrapped: Uint8Array, context: CanonicalContext, options: SourceCallOptions): Promise<T> {
    try {
      return await this.transport.request<T>(
        'POST',
        path,
        { ciphertext: encodeWrappedKey(wrapped), context: contextObject(context) },
        { signal: options.signal, timeoutMs: options.timeoutMs },
      );
    } catch (error) {
      // A tampered wrapped key reads to the service as a failed decryption, an unknown key or an unknown version;
      // to the caller all three are the one decryption error, like any other tampering.
      if (error instanceof ServiceError && (error.serviceCode === 'KH_ERR_DECRYPTION_FAILED' || error.serviceCode === 'KH_ERR_VALIDATION'
        || error.serviceCode === 'KH_ERR_KEY_NOT_FOUND' || error.serviceCode === 'KH_ERR_KEY_VERSION_NOT_FOUND')) {
        throw new DecryptionError();
      }
      throw error;
    }
  }
}

/** A wrapped data key moved to the primary version of its key; see {@link ServiceDataKeySource.rewrapRevoked}. */
export interface RewrappedDataKey {
  readonly keyName: string;
  readonly keyId: string;
  readonly keyVersion: number;
  readonly wrapped: Uint8Array;
}

/** A data key from its base64, into memory of its own (not Node's shared pool), so zeroing it zeroes every copy. */
function decodeKey(value: unknown): Uint8Array | undefined {
  if (typeof value !== 'string' || !BASE64.test(value)) return undefined;
  const pooled = Buffer.from(value, 'base64');
  if (pooled.length !== DATA_KEY_BYTES) {
    pooled.fill(0);
    return undefined;
  }
  const key = Buffer.alloc(DATA_KEY_BYTES);
  key.set(pooled);
  pooled.fill(0);
  return key;
}
