import { createHmac, randomBytes } from 'node:crypto';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../crypto/aes-gcm.js';
import type { SecretBytes } from '../crypto/secret-bytes.js';
import { DecryptionFailedError, KeyholdError } from '../errors.js';
import { rootKeyNotHeld, ROOT_KEY_CHECK_LABEL, ROOT_KEY_ID_LABEL, type RootKey } from './root-key.js';

/**
 * An AES-256 key inside a cryptographic token, which seals and opens with AES-GCM there (PKCS#11 `CKM_AES_GCM`) and
 * never shows its bytes. `sealed` is `ciphertext || tag` (16 bytes), as node:crypto's is.
 */
export interface TokenAesKey {
  /** Where the key is, for messages: its label and token's, never anything secret. */
  readonly description: string;
  encrypt(iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer>;
  decrypt(iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer>;
  /** Releases the token connection (its sessions, then the library) once no other key uses it. */
  close(): Promise<void>;
}

/**
 * The one IV reserved for the fingerprint below, never used to wrap: {@link Pkcs11RootKey.wrap} draws again on the
 * (2^-96) chance that a random IV equals it, and unwrap refuses material that carries it. GCM's security rests on an
 * IV never sealing two different messages under one key (NIST SP 800-38D §8); the fingerprint seals one fixed
 * message, always the same, so it may be computed by every process at every start.
 */
export const FINGERPRINT_IV = Buffer.from('kh-root-fp01', 'ascii');
/** The fingerprint's AAD: names its purpose and version. A new scheme takes a new label (and a new reserved IV). */
export const FINGERPRINT_AAD = Buffer.from('keyhold/root-key/pkcs11-fingerprint/v1', 'ascii');
/** One block of zeros: the token refuses an empty plaintext, and the ciphertext block is never used. */
const FINGERPRINT_PLAINTEXT = Buffer.alloc(16);

/**
 * A root key held in an HSM through PKCS#11: key versions are sealed with AES-256-GCM inside the token under a random
 * 96-bit IV drawn here, stored as `iv || ciphertext || tag` like {@link LocalRootKey}'s.
 *
 * Its `id` and `checkValue` must be the same in every process without the key's bytes. They come from a fingerprint
 * computed in the token: the GCM tag of a fixed AAD and plaintext under the reserved {@link FINGERPRINT_IV}. The tag is
 * a pseudo-random function of the key (GHASH masked with AES_K(IV || 1)), so it names the key without revealing it, and
 * it reveals nothing of the GHASH key H that would help forge other messages: that needs two different messages under
 * one IV, and this IV only ever seals the one. The id and check value are HMAC-SHA256 of the usual labels under the
 * fingerprint, as a local key's are under its bytes. (A classic key check value, AES-ECB of a zero block, would be H
 * itself for a GCM key: never publish that.)
 */
export class Pkcs11RootKey implements RootKey {
  readonly id: string;
  readonly checkValue: string;
  readonly derivable = false;
  readonly #key: TokenAesKey;

  private constructor(key: TokenAesKey, fingerprint: Buffer) {
    this.#key = key;
    this.id = createHmac('sha256', fingerprint).update(ROOT_KEY_ID_LABEL).digest('hex').slice(0, 16);
    this.checkValue = createHmac('sha256', fingerprint).update(ROOT_KEY_CHECK_LABEL).digest('hex');
  }

  /** Computes the key's fingerprint in the token (one GCM operation), and so its id and check value. */
  static async open(key: TokenAesKey): Promise<Pkcs11RootKey> {
    const sealed = await key.encrypt(FINGERPRINT_IV, FINGERPRINT_AAD, FINGERPRINT_PLAINTEXT);
    if (sealed.length !== FINGERPRINT_PLAINTEXT.length + GCM_TAG_BYTES) {
      throw new KeyholdError('KH_ERR_INTERNAL', `${key.description} returned ${sealed.length} bytes for a GCM seal of 16`);
    }
    return new Pkcs11RootKey(key, sealed.subarray(FINGERPRINT_PLAINTEXT.length));
  }

  /** Where the key is held: its label and token. */
  get description(): string {
    return this.#key.description;
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    let iv = randomBytes(GCM_IV_BYTES);
    while (iv.equals(FINGERPRINT_IV)) iv = randomBytes(GCM_IV_BYTES);
    const sealed = await this.#key.encrypt(iv, asBuffer(aad), asBuffer(plaintext));
    return Buffer.concat([iv, sealed]);
  }

  async unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    const buffer = asBuffer(wrapped);
    if (buffer.length < GCM_IV_BYTES + GCM_TAG_BYTES) throw new DecryptionFailedError();
    const iv = buffer.subarray(0, GCM_IV_BYTES);
    if (iv.equals(FINGERPRINT_IV)) throw new DecryptionFailedError();
    return this.#key.decrypt(Buffer.from(iv), asBuffer(aad), buffer.subarray(GCM_IV_BYTES));
  }

  async unwrapRecorded(rootKeyId: string, wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    if (rootKeyId !== this.id) throw rootKeyNotHeld(rootKeyId);
    return this.unwrap(wrapped, aad);
  }

  /**
   * Refused: the key's bytes never leave the token, and PKCS#11 v2.40 tokens offer no HKDF to run inside it. Its one
   * caller, the audit key's first derivation, gives a store whose first root key is in an HSM a random audit key
   * instead (`loadAuditKey`).
   */
  async deriveKey(_derive: (rootKey: Uint8Array) => SecretBytes): Promise<SecretBytes> {
    throw new KeyholdError('KH_ERR_INTERNAL', `Root key ${this.id} is held in an HSM (${this.description}) and gives out no bytes to derive from`);
  }

  close(): Promise<void> {
    return this.#key.close();
  }
}

/** The same bytes as a Buffer, without a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
