import type { Authorizer } from '../auth/authorizer.js';
import type { Clock } from '../clock.js';
import type { Principal } from '../auth/principal.js';
import { parseCiphertext, type ParsedCiphertext } from '../crypto/ciphertext-format.js';
import { assertNoReservedContextKeys, type EncryptionContext } from '../crypto/encryption-context.js';
import { openWithKeyVersion, sealWithKeyVersion } from '../crypto/key-version-cipher.js';
import { randomBytesPooled } from '../crypto/random.js';
import type { SecretBytes } from '../crypto/secret-bytes.js';
import { DecryptionFailedError, KeyholdError, UnavailableError } from '../errors.js';
import type { CachedKey, KeyCache } from './key-cache.js';
import { checkCanDecrypt, checkCanEncrypt } from './lifecycle.js';

export const MAX_ENCRYPT_PLAINTEXT_BYTES = 4096;
/**
 * How often a request fetches a key again when a concurrent write or refresh evicted (and zeroed) the entry it had
 * just been given. Evictions that fast mean the key is changing under load; the caller gets 503 and retries.
 */
const MAX_KEY_FETCHES = 3;
export const MIN_DATA_KEY_BYTES = 16;
export const MAX_DATA_KEY_BYTES = 64;

export interface KeyVersionRef {
  readonly keyId: string;
  readonly keyName: string;
  readonly keyVersion: number;
}

export interface CiphertextResult extends KeyVersionRef {
  readonly ciphertext: string;
}

export interface DataKeyResult extends CiphertextResult {
  /** Absent when the caller asked for the wrapped key only. */
  readonly plaintext?: Buffer;
}

export interface DecryptResult extends KeyVersionRef {
  readonly plaintext: Buffer;
}

export interface DataKeyInput {
  readonly context?: EncryptionContext | undefined;
  readonly includePlaintext?: boolean | undefined;
  readonly bytes?: number | undefined;
}

export interface EncryptInput {
  /** Zeroed once it is sealed: the caller hands it over. */
  readonly plaintext: Buffer;
  readonly context?: EncryptionContext | undefined;
}

export interface DecryptInput {
  readonly ciphertext: string;
  readonly context?: EncryptionContext | undefined;
  /** When set, a ciphertext of any other key fails as any other decryption failure does. */
  readonly keyName?: string | undefined;
}

export interface RewrapInput {
  readonly ciphertext: string;
  readonly context?: EncryptionContext | undefined;
  /** The context for the new ciphertext; defaults to `context`. */
  readonly destinationContext?: EncryptionContext | undefined;
}

export interface CryptoServiceOptions {
  readonly cache: KeyCache;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
}

/**
 * Data keys, encrypt, decrypt and rewrap. Keys come from the in-memory cache, so the hot path runs no query; all
 * crypto is synchronous node:crypto once the key is in hand, so material cannot change under a request.
 */
export class CryptoService {
  readonly #cache: KeyCache;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;

  constructor(options: CryptoServiceOptions) {
    this.#cache = options.cache;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
  }

  async generateDataKey(principal: Principal, keyName: string, input: DataKeyInput): Promise<DataKeyResult> {
    this.#authorizer.authorize(principal, 'datakey', { keyName }, input.context);
    assertNoReservedContextKeys(input.context);
    const bytes = input.bytes ?? 32;
    if (!Number.isInteger(bytes) || bytes < MIN_DATA_KEY_BYTES || bytes > MAX_DATA_KEY_BYTES) {
      throw new KeyholdError('KH_ERR_VALIDATION', `bytes must be between ${MIN_DATA_KEY_BYTES} and ${MAX_DATA_KEY_BYTES}`);
    }
    const { cached, versionKey } = await this.#primaryFor(keyName);
    const plaintext = randomBytesPooled(bytes);
    const ciphertext = sealWithKeyVersion({
      keyId: cached.key.id,
      keyVersion: cached.key.primaryVersion,
      versionKey,
      plaintext,
      context: input.context,
    });
    const { id, name, primaryVersion } = cached.key;
    if (input.includePlaintext === false) {
      plaintext.fill(0);
      return { keyId: id, keyName: name, keyVersion: primaryVersion, ciphertext };
    }
    return { keyId: id, keyName: name, keyVersion: primaryVersion, ciphertext, plaintext };
  }

  async encrypt(principal: Principal, keyName: string, input: EncryptInput): Promise<CiphertextResult> {
    this.#authorizer.authorize(principal, 'encrypt', { keyName }, input.context);
    assertNoReservedContextKeys(input.context);
    if (input.plaintext.length > MAX_ENCRYPT_PLAINTEXT_BYTES) {
      throw new KeyholdError('KH_ERR_VALIDATION', `plaintext must be at most ${MAX_ENCRYPT_PLAINTEXT_BYTES} bytes`);
    }
    const { cached, versionKey } = await this.#primaryFor(keyName);
    try {
      const ciphertext = sealWithKeyVersion({
        keyId: cached.key.id,
        keyVersion: cached.key.primaryVersion,
        versionKey,
        plaintext: input.plaintext,
        context: input.context,
      });
      return { keyId: cached.key.id, keyName: cached.key.name, keyVersion: cached.key.primaryVersion, ciphertext };
    } finally {
      input.plaintext.fill(0);
    }
  }

  async decrypt(principal: Principal, input: DecryptInput): Promise<DecryptResult> {
    const parsed = parseCiphertext(input.ciphertext);
    const source = await this.#sourceFor(principal, parsed, input.keyName, input.context);
    const plaintext = openWithKeyVersion(parsed, source.versionKey, input.context);
    return { keyId: source.cached.key.id, keyName: source.cached.key.name, keyVersion: parsed.keyVersion, plaintext };
  }

  /** Decrypts and encrypts again under the destination's primary version; the plaintext never leaves the server. */
  async rewrap(principal: Principal, keyName: string, input: RewrapInput): Promise<CiphertextResult> {
    const destinationContext = input.destinationContext ?? input.context;
    const parsed = parseCiphertext(input.ciphertext);
    const source = await this.#sourceFor(principal, parsed, undefined, input.context);
    this.#authorizer.authorize(principal, 'rewrap', { keyName }, destinationContext);
    assertNoReservedContextKeys(destinationContext);
    const destination = await this.#primaryFor(keyName);
    // Both keys are in hand before any crypto runs, so nothing below awaits while material is borrowed. The source
    // is fetched again only if fetching the destination evicted it (the same key, refreshed in between).
    const sourceKey = source.versionKey.isZeroed
      ? (await this.#sourceFor(principal, parsed, undefined, input.context)).versionKey
      : source.versionKey;
    if (sourceKey.isZeroed || destination.versionKey.isZeroed) {
      throw new UnavailableError('The key changed during the request; retry');
    }
    const plaintext = openWithKeyVersion(parsed, sourceKey, input.context);
    try {
      const ciphertext = sealWithKeyVersion({
        keyId: destination.cached.key.id,
        keyVersion: destination.cached.key.primaryVersion,
        versionKey: destination.versionKey,
        plaintext,
        context: destinationContext,
      });
      return {
        keyId: destination.cached.key.id,
        keyName: destination.cached.key.name,
        keyVersion: destination.cached.key.primaryVersion,
        ciphertext,
      };
    } finally {
      plaintext.fill(0);
    }
  }

  async #primaryFor(keyName: string): Promise<{ cached: CachedKey; versionKey: SecretBytes }> {
    // An entry evicted (and zeroed) by a concurrent write between the cache's answer and our use is fetched again.
    for (let fetches = 1; ; fetches += 1) {
      const cached = await this.#cache.getByName(keyName);
      if (cached === undefined) throw new KeyholdError('KH_ERR_KEY_NOT_FOUND');
      checkCanEncrypt(cached.key, this.#clock.now());
      const versionKey = cached.versionKeys.get(cached.key.primaryVersion);
      if (versionKey === undefined) throw new KeyholdError('KH_ERR_INTERNAL');
      if (!versionKey.isZeroed) return { cached, versionKey };
      if (fetches === MAX_KEY_FETCHES) throw new UnavailableError('The key changed during the request; retry');
    }
  }

  async #sourceFor(
    principal: Principal,
    parsed: ParsedCiphertext,
    expectedKeyName: string | undefined,
    context: EncryptionContext | undefined,
  ): Promise<{ cached: CachedKey; versionKey: SecretBytes }> {
    for (let fetches = 1; ; fetches += 1) {
      const cached = await this.#cache.getById(parsed.keyId);
      if (cached === undefined) throw new DecryptionFailedError();
      if (expectedKeyName !== undefined && cached.key.name !== expectedKeyName) throw new DecryptionFailedError();
      // Authorise against the key the ciphertext names, never only the one in the URL.
      this.#authorizer.authorize(principal, 'decrypt', { keyName: cached.key.name }, context);
      if (checkCanDecrypt(cached.key, parsed.keyVersion, this.#clock.now()) === 'unknown-version') throw new DecryptionFailedError();
      const versionKey = cached.versionKeys.get(parsed.keyVersion);
      if (versionKey === undefined) throw new DecryptionFailedError();
      if (!versionKey.isZeroed) return { cached, versionKey };
      if (fetches === MAX_KEY_FETCHES) throw new UnavailableError('The key changed during the request; retry');
    }
  }
}
