import { createHmac, randomBytes } from 'node:crypto';
import { aesGcmOpen, aesGcmSeal, AES_256_KEY_BYTES, GCM_IV_BYTES } from '../crypto/aes-gcm.js';
import { KeyholdError } from '../errors.js';
import { SecretBytes } from '../crypto/secret-bytes.js';

/**
 * The key-encryption key that wraps every key version at rest. It is an interface, as Tink's envelope AEAD takes
 * its KEK as just another `Aead`, so a file key, an environment key and an HSM or cloud KMS are interchangeable.
 */
export interface RootKey {
  /** A short public identifier recorded beside every wrapped version. */
  readonly id: string;
  /**
   * A public value that proves which key this is without revealing it. The store keeps it, and start-up refuses
   * a root key whose check value differs, instead of unwrapping garbage.
   */
  readonly checkValue: string;
  /** Wraps under the key named by {@link RootKey.id}: the id to record beside the result. */
  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  /**
   * Unwraps material the store records as wrapped under the root key `rootKeyId`. The recorded id chooses the key,
   * never trial decryption, so a key that is not held fails plainly instead of as a tampered ciphertext. A single
   * key holds only its own id; a `RootKeyring` holds its primary and the previous keys of a rotation.
   */
  unwrapRecorded(rootKeyId: string, wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  /**
   * Whether {@link RootKey.deriveKey} can run: false for a key whose bytes never leave its device (an HSM through
   * PKCS#11, whose v2.40 tokens have no HKDF to run inside), which refuses.
   */
  readonly derivable: boolean;
  /**
   * A key derived from the root key for one purpose (`derive` gets the root key's bytes inside the boundary and
   * returns the subkey), so that holding the database alone never yields it. Only when {@link RootKey.derivable}.
   */
  deriveKey(derive: (rootKey: Uint8Array) => SecretBytes): Promise<SecretBytes>;
  /** Releases what the key holds outside the process's memory (an HSM's sessions); a key in memory has nothing to release. */
  close?(): Promise<void>;
}

/** The HMAC labels of a root key's public id and check value. */
export const ROOT_KEY_ID_LABEL = 'keyhold/root-key/id/v1';
export const ROOT_KEY_CHECK_LABEL = 'keyhold/root-key/check/v1';

/** A root key held in process memory: AES-256-GCM with a random IV, stored as `iv || ciphertext || tag`. */
export class LocalRootKey implements RootKey {
  readonly id: string;
  readonly checkValue: string;
  readonly derivable = true;
  readonly #key: SecretBytes;

  constructor(key: SecretBytes) {
    if (key.length !== AES_256_KEY_BYTES) throw new RangeError('The root key must be 32 bytes');
    this.#key = key;
    this.id = key.use((bytes) => createHmac('sha256', bytes).update(ROOT_KEY_ID_LABEL).digest('hex').slice(0, 16));
    this.checkValue = key.use((bytes) => createHmac('sha256', bytes).update(ROOT_KEY_CHECK_LABEL).digest('hex'));
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    const iv = randomBytes(GCM_IV_BYTES);
    const sealed = this.#key.use((key) => aesGcmSeal(key, iv, plaintext, aad));
    return Buffer.concat([iv, sealed]);
  }

  async deriveKey(derive: (rootKey: Uint8Array) => SecretBytes): Promise<SecretBytes> {
    return this.#key.use(derive);
  }

  async unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    const buffer = Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength);
    return this.#key.use((key) => aesGcmOpen(key, buffer.subarray(0, GCM_IV_BYTES), buffer.subarray(GCM_IV_BYTES), aad));
  }

  async unwrapRecorded(rootKeyId: string, wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    if (rootKeyId !== this.id) throw rootKeyNotHeld(rootKeyId);
    return this.unwrap(wrapped, aad);
  }
}

/**
 * Material recorded under a root key this process was not given. Start-up refuses such a store, so this only
 * happens when another process moved rows to a key this one lacks: an operator error, hence internal (5xx), with
 * the public id in the logged detail so the operator knows which key to configure.
 */
export function rootKeyNotHeld(rootKeyId: string): KeyholdError {
  return new KeyholdError('KH_ERR_INTERNAL', `The material is wrapped under root key ${rootKeyId}, which this process does not hold`);
}

/** Parses the base64 text form of a root key (environment variable or key file). */
export function parseRootKeyText(text: string): SecretBytes | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(trimmed)) return undefined;
  const bytes = Buffer.from(trimmed, 'base64');
  // Only the canonical encoding: trailing bits that a decoder would drop make the same key under two spellings.
  if (bytes.length !== AES_256_KEY_BYTES || bytes.toString('base64') !== trimmed) return undefined;
  return SecretBytes.adopt(bytes);
}

/** Where the primary root key comes from, as configured. */
export type RootKeySource =
  | { readonly kind: 'inline'; readonly key: SecretBytes }
  | { readonly kind: 'file'; readonly path: string }
  /** The dev-mode default: `DATA_DIR/root.key`, generated when the store is empty. */
  | { readonly kind: 'data-dir'; readonly path: string }
  /** `KEYHOLD_ROOT_KEY_PROVIDER=pkcs11`: the AES key of this label in the configured token. */
  | { readonly kind: 'pkcs11'; readonly keyLabel: string };

/** During a root key rotation, the old root key, accepted only to unwrap: a key file, or a key in the configured token. */
export type PreviousRootKeySource = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'pkcs11'; readonly keyLabel: string };
