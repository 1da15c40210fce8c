import type { Caller } from '../context/caller.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { Clock } from '../lib/clock.js';
import { parseCiphertext, type ParsedCiphertext } from '../crypto/ciphertext-format.js';
import { assertNoReservedContextKeys, type EncryptionContext } from '../crypto/encryption-context.js';
import { openWithKeyVersion, sealWithKeyVersion } from '../crypto/key-version-cipher.js';
import { randomBytesPooled } from '../crypto/random.js';
import type { SecretBytes } from '../crypto/secret-bytes.js';
import { DecryptionFailedError, KeyholdError, UnavailableError } from '../errors.js';
import { boundContextOf } from './bound-context.js';
import type { CachedKey, KeyCache } from './key-cache.js';
import type { KeyRecord } from './key-record.js';
import { checkCanDecrypt, checkCanEncrypt, checkCanRewrapRevoked } from './lifecycle.js';

export const MAX_ENCRYPT_PLAINTEXT_BYTES = 4096;
/**
 * How often a request fetches a key again when a concurrent write or refresh evicted (and zeroed) the entry it had
 * just been given. Evictions that fast mean the key is changing under load; the caller gets 503 and retries.
 */
const MAX_KEY_FETCHES = 3;
/** A cached key younger than this is not read again for a ciphertext that names a newer version than it knows. */
const STALE_VERSION_RELOAD_MS = 250;
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

export interface RewrapRevokedInput {
  readonly ciphertext: string;
  /** The context the ciphertext is bound to; the new ciphertext is bound to the same. */
  readonly context?: EncryptionContext | undefined;
}

export type CryptoOperation = 'datakey' | 'encrypt' | 'decrypt' | 'rewrap' | 'rewrap-revoked';

/** Told of every operation's end; the metrics module implements it (`src/metrics/`). */
export interface CryptoObserver {
  /**
   * `keyName` and `keyVersion` are those of a stored key the operation used (the destination, for a rewrap), undefined
   * when it failed before finding one or on a version it could not vouch for; `outcome` is `ok` or the error code.
   */
  operationEnded(operation: CryptoOperation, keyName: string | undefined, keyVersion: number | undefined, outcome: string): void;
}

export interface EnvelopeServiceOptions {
  readonly cache: KeyCache;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
  readonly observer?: CryptoObserver | undefined;
}

/**
 * Opens a ciphertext and seals its plaintext under the destination key's primary version; the plaintext never leaves
 * this function and is zeroed before it returns.
 */
function resealUnderPrimary(
  parsed: ParsedCiphertext,
  sourceKey: SecretBytes,
  openContext: EncryptionContext | undefined,
  destination: KeyRecord,
  destinationKey: SecretBytes,
  sealContext: EncryptionContext | undefined,
): CiphertextResult {
  const plaintext = openWithKeyVersion(parsed, sourceKey, openContext);
  try {
    const ciphertext = sealWithKeyVersion({
      keyId: destination.id,
      keyVersion: destination.primaryVersion,
      versionKey: destinationKey,
      plaintext,
      context: sealContext,
    });
    return { keyId: destination.id, keyName: destination.name, keyVersion: destination.primaryVersion, ciphertext };
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Data keys, encrypt, decrypt and rewrap. Keys come from the in-memory cache, so the hot path runs no query; all
 * crypto is synchronous node:crypto once the key is in hand, so material cannot change under a request.
 */
export class EnvelopeService {
  readonly #cache: KeyCache;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;
  readonly #observer: CryptoObserver | undefined;

  constructor(options: EnvelopeServiceOptions) {
    this.#cache = options.cache;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
    this.#observer = options.observer;
  }

  /**
   * Runs one operation and tells the observer how it ended. A failure names the key the caller's trail used, which is
   * always a stored key, never a name the caller made up; its version only when the failure is not a decryption
   * failure, which is also what a made-up version gets: the labels stay among what exists.
   */
  async #observed<T extends KeyVersionRef>(operation: CryptoOperation, caller: Caller, work: () => Promise<T>): Promise<T> {
    const observer = this.#observer;
    if (observer === undefined) return work();
    let result: T;
    try {
      result = await work();
    } catch (error) {
      const { keyId, keyName, keyVersion } = caller.trail;
      const code = error instanceof KeyholdError ? error.code : 'KH_ERR_INTERNAL';
      const found = keyId !== undefined;
      observer.operationEnded(operation, found ? keyName : undefined, found && code !== 'KH_ERR_DECRYPTION_FAILED' ? keyVersion : undefined, code);
      throw error;
    }
    observer.operationEnded(operation, result.keyName, result.keyVersion, 'ok');
    return result;
  }

  generateDataKey(caller: Caller, keyName: string, input: DataKeyInput): Promise<DataKeyResult> {
    return this.#observed('datakey', caller, () => this.#generateDataKey(caller, keyName, input));
  }

  encrypt(caller: Caller, keyName: string, input: EncryptInput): Promise<CiphertextResult> {
    return this.#observed('encrypt', caller, () => this.#encrypt(caller, keyName, input));
  }

  decrypt(caller: Caller, input: DecryptInput): Promise<DecryptResult> {
    return this.#observed('decrypt', caller, () => this.#decrypt(caller, input));
  }

  rewrap(caller: Caller, keyName: string, input: RewrapInput): Promise<CiphertextResult> {
    return this.#observed('rewrap', caller, () => this.#rewrap(caller, keyName, input));
  }

  rewrapRevoked(caller: Caller, keyName: string, input: RewrapRevokedInput): Promise<CiphertextResult> {
    return this.#observed('rewrap-revoked', caller, () => this.#rewrapRevoked(caller, keyName, input));
  }

  async #generateDataKey(caller: Caller, keyName: string, input: DataKeyInput): Promise<DataKeyResult> {
    this.#authorizer.authorize(caller, 'datakey', { keyName }, input.context);
    assertNoReservedContextKeys(input.context);
    const bytes = input.bytes ?? 32;
    if (!Number.isInteger(bytes) || bytes < MIN_DATA_KEY_BYTES || bytes > MAX_DATA_KEY_BYTES) {
      throw new KeyholdError('KH_ERR_VALIDATION', `bytes must be between ${MIN_DATA_KEY_BYTES} and ${MAX_DATA_KEY_BYTES}`);
    }
    return this.#withPrimary(caller, keyName, ({ key }, versionKey) => {
      const context = boundContextOf(key, caller.principal, 'datakey', input.context);
      const plaintext = randomBytesPooled(bytes);
      const ciphertext = sealWithKeyVersion({
        keyId: key.id,
        keyVersion: key.primaryVersion,
        versionKey,
        plaintext,
        context,
      });
      if (input.includePlaintext === false) {
        plaintext.fill(0);
        return { keyId: key.id, keyName: key.name, keyVersion: key.primaryVersion, ciphertext };
      }
      return { keyId: key.id, keyName: key.name, keyVersion: key.primaryVersion, ciphertext, plaintext };
    });
  }

  async #encrypt(caller: Caller, keyName: string, input: EncryptInput): Promise<CiphertextResult> {
    try {
      this.#authorizer.authorize(caller, 'encrypt', { keyName }, input.context);
      assertNoReservedContextKeys(input.context);
      if (input.plaintext.length > MAX_ENCRYPT_PLAINTEXT_BYTES) {
        throw new KeyholdError('KH_ERR_VALIDATION', `plaintext must be at most ${MAX_ENCRYPT_PLAINTEXT_BYTES} bytes`);
      }
      return await this.#withPrimary(caller, keyName, ({ key }, versionKey) => ({
        keyId: key.id,
        keyName: key.name,
        keyVersion: key.primaryVersion,
        ciphertext: sealWithKeyVersion({
          keyId: key.id,
          keyVersion: key.primaryVersion,
          versionKey,
          plaintext: input.plaintext,
          context: boundContextOf(key, caller.principal, 'encrypt', input.context),
        }),
      }));
    } finally {
      input.plaintext.fill(0);
    }
  }

  async #decrypt(caller: Caller, input: DecryptInput): Promise<DecryptResult> {
    assertNoReservedContextKeys(input.context);
    const parsed = parseCiphertext(input.ciphertext);
    return this.#withSource(caller, parsed, input.keyName, input.context, ({ key }, versionKey) => ({
      keyId: key.id,
      keyName: key.name,
      keyVersion: parsed.keyVersion,
      plaintext: openWithKeyVersion(parsed, versionKey, boundContextOf(key, caller.principal, 'decrypt', input.context)),
    }));
  }

  /** Decrypts and encrypts again under the destination's primary version; the plaintext never leaves the server. */
  async #rewrap(caller: Caller, keyName: string, input: RewrapInput): Promise<CiphertextResult> {
    const destinationContext = input.destinationContext ?? input.context;
    assertNoReservedContextKeys(input.context);
    const parsed = parseCiphertext(input.ciphertext);
    // Authorise and check the source before anything about the destination is revealed.
    await this.#withSource(caller, parsed, undefined, input.context, () => undefined);
    const rewrapDecision = this.#authorizer.authorize(caller, 'rewrap', { keyName }, destinationContext);
    assertNoReservedContextKeys(destinationContext);
    return this.#withPrimary(caller, keyName, ({ key: destination }, destinationKey) =>
      // Fetched again, and used in the same synchronous step as the destination key, so neither can be evicted
      // between its check and its use; the source is in the cache from the check above.
      this.#withSource(caller, parsed, undefined, input.context, ({ key: source }, sourceKey) => {
        if (destinationKey.isZeroed) throw new UnavailableError('The key changed during the request; retry');
        const sealContext = boundContextOf(destination, caller.principal, 'rewrap', destinationContext);
        const openContext = boundContextOf(source, caller.principal, 'decrypt', input.context);
        const result = resealUnderPrimary(parsed, sourceKey, openContext, destination, destinationKey, sealContext);
        // The source was authorised and noted again just above; the record is of the rewrap into the destination.
        caller.trail.decided('rewrap', destination.name, rewrapDecision);
        caller.trail.usedKey(destination.id, destination.name, destination.primaryVersion);
        return result;
      }),
    );
  }

  /**
   * A ciphertext names its key, and the caller chose the ciphertext: a caller that may not use that key in any
   * context is refused as for a ciphertext of no key at all, so it learns neither the key's name nor that it exists.
   * The denial is still noted in its audit trail.
   */
  #authorizeDecrypt(caller: Caller, keyName: string, context: EncryptionContext | undefined): void {
    try {
      this.#authorizer.authorize(caller, 'decrypt', { keyName }, context);
    } catch (error) {
      if (error instanceof KeyholdError && error.code === 'KH_ERR_FORBIDDEN' && !this.#authorizer.mayEverUseKey(caller.principal, keyName)) {
        throw new DecryptionFailedError();
      }
      throw error;
    }
  }

  /**
   * Moves a ciphertext of `keyName`, under any version that still has material (disabled and below-minimum ones
   * included, of an enabled or a disabled key), to that key's primary version, with the same context. This is how
   * data under a revoked version is migrated while every workload stays refused: it needs the `rewrap-revoked`
   * action, which `*` never grants. The plaintext never leaves the server, and the audit record names the version
   * read. Both versions are unwrapped for this request alone and zeroed before it returns: the cache holds only
   * what workloads may use.
   */
  async #rewrapRevoked(caller: Caller, keyName: string, input: RewrapRevokedInput): Promise<CiphertextResult> {
    // Authorised on the key in the URL before the ciphertext is looked at, so a caller without the grant learns
    // nothing about it; the ciphertext must then be of that key.
    this.#authorizer.authorize(caller, 'rewrap-revoked', { keyName }, input.context);
    assertNoReservedContextKeys(input.context);
    const parsed = parseCiphertext(input.ciphertext);
    for (let fetches = 1; ; fetches += 1) {
      const cached = await this.#cache.getById(parsed.keyId);
      if (cached === undefined || cached.key.name !== keyName) throw new DecryptionFailedError();
      const { key } = cached;
      caller.trail.usedKey(key.id, key.name, parsed.keyVersion);
      if (checkCanRewrapRevoked(key, parsed.keyVersion, this.#clock.now()) === 'unknown-version') {
        if (fetches === 1 && parsed.keyVersion > key.primaryVersion) {
          this.#cache.invalidateIfOlderThan(key, STALE_VERSION_RELOAD_MS);
          continue;
        }
        throw new DecryptionFailedError();
      }
      const context = boundContextOf(key, caller.principal, 'rewrap-revoked', input.context);
      const versionKeys = await this.#cache.unwrapUncached(key, [parsed.keyVersion, key.primaryVersion]);
      try {
        const sourceKey = versionKeys.get(parsed.keyVersion);
        const destinationKey = versionKeys.get(key.primaryVersion);
        if (sourceKey === undefined || destinationKey === undefined) {
          // Destroyed after the key was read: read it again, so the refusal names its new state.
          this.#cache.invalidate(key);
          if (fetches === MAX_KEY_FETCHES) throw new UnavailableError('The key changed during the request; retry');
          continue;
        }
        return resealUnderPrimary(parsed, sourceKey, context, key, destinationKey, context);
      } finally {
        for (const material of versionKeys.values()) material.zero();
      }
    }
  }

  /**
   * Runs `use` with the key's primary version, synchronously right after checking that its material is intact: an
   * entry evicted (and zeroed) by a concurrent write or refresh while the cache answered is fetched again, a few
   * times at most.
   */
  async #withPrimary<T>(
    caller: Caller,
    keyName: string,
    use: (cached: CachedKey, versionKey: SecretBytes) => T,
  ): Promise<Awaited<T>> {
    for (let fetches = 1; ; fetches += 1) {
      const cached = await this.#cache.getByName(keyName);
      if (cached === undefined) throw new KeyholdError('KH_ERR_KEY_NOT_FOUND');
      caller.trail.usedKey(cached.key.id, cached.key.name, cached.key.primaryVersion);
      checkCanEncrypt(cached.key, this.#clock.now());
      const versionKey = cached.versionKeys.get(cached.key.primaryVersion);
      if (versionKey === undefined) throw new KeyholdError('KH_ERR_INTERNAL');
      if (!versionKey.isZeroed) return await use(cached, versionKey);
      if (fetches === MAX_KEY_FETCHES) throw new UnavailableError('The key changed during the request; retry');
    }
  }

  /** As {@link #withPrimary}, for the key and version a ciphertext names, after authorising decrypt on that key. */
  async #withSource<T>(
    caller: Caller,
    parsed: ParsedCiphertext,
    expectedKeyName: string | undefined,
    context: EncryptionContext | undefined,
    use: (cached: CachedKey, versionKey: SecretBytes) => T,
  ): Promise<Awaited<T>> {
    // A caller that no statement could allow to decrypt is refused (403, naming no key, the same for any ciphertext)
    // before the key is looked up: made-up key ids, each a cache miss, would otherwise cost it a query apiece.
    if (!this.#authorizer.maySomeKeyBeAllowed(caller.principal, 'decrypt')) this.#authorizer.authorize(caller, 'decrypt', {}, context);
    for (let fetches = 1; ; fetches += 1) {
      const cached = await this.#cache.getById(parsed.keyId);
      if (cached === undefined) throw new DecryptionFailedError();
      if (expectedKeyName !== undefined && cached.key.name !== expectedKeyName) throw new DecryptionFailedError();
      // Authorise against the key the ciphertext names, never only the one in the URL.
      this.#authorizeDecrypt(caller, cached.key.name, context);
      caller.trail.usedKey(cached.key.id, cached.key.name, parsed.keyVersion);
      if (checkCanDecrypt(cached.key, parsed.keyVersion, this.#clock.now()) === 'unknown-version') {
        // Another replica may have rotated after this one cached the key, and the change feed not yet told it.
        if (fetches === 1 && parsed.keyVersion > cached.key.primaryVersion) {
          this.#cache.invalidateIfOlderThan(cached.key, STALE_VERSION_RELOAD_MS);
          continue;
        }
        throw new DecryptionFailedError();
      }
      const versionKey = cached.versionKeys.get(parsed.keyVersion);
      if (versionKey === undefined) throw new DecryptionFailedError();
      if (!versionKey.isZeroed) return await use(cached, versionKey);
      if (fetches === MAX_KEY_FETCHES) throw new UnavailableError('The key changed during the request; retry');
    }
  }
}
