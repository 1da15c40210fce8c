import { rootKeyNotHeld, type RootKey } from './root-key.js';
import type { SecretBytes } from '../crypto/secret-bytes.js';

const SYSTEM_SECRET_AAD_LABEL = Buffer.from('keyhold/system-secret/v1\0', 'ascii');

/**
 * The AAD under which a root key wraps a stored system secret (the audit key). It binds the secret's name, so
 * wrapped material copied onto another secret's row fails to unwrap, and its label differs from a key version's,
 * so neither can stand in for the other.
 */
export function systemSecretWrapAad(name: string): Buffer {
  return Buffer.concat([SYSTEM_SECRET_AAD_LABEL, Buffer.from(name, 'utf8')]);
}

const AWS_CREDENTIAL_AAD_LABEL = Buffer.from('keyhold/aws-credential/v1\0', 'ascii');

/**
 * The AAD under which a root key wraps an AWS secret access key. It binds the access key id, so a secret copied onto
 * another credential's row fails to unwrap, and its label differs from a system secret's and a key version's.
 */
export function awsCredentialWrapAad(accessKeyId: string): Buffer {
  return Buffer.concat([AWS_CREDENTIAL_AAD_LABEL, Buffer.from(accessKeyId, 'utf8')]);
}

/**
 * The root keys of a rotation, as Vault's barrier keyring and AWS KMS's backing keys work: the primary wraps
 * everything new, and the previous keys only unwrap what is still recorded under them until the rewrap has moved
 * it. It is itself a {@link RootKey} that acts as its primary, so the key service and cache need not know whether
 * a rotation is under way; only {@link RootKeyring.unwrapRecorded} looks past the primary.
 */
export class RootKeyring implements RootKey {
  readonly primary: RootKey;
  readonly #byId: ReadonlyMap<string, RootKey>;

  constructor(primary: RootKey, previous: readonly RootKey[] = []) {
    const byId = new Map<string, RootKey>([[primary.id, primary]]);
    for (const key of previous) {
      // Two entries for one id would make the choice by id ambiguous; the caller has configured one key twice.
      if (byId.has(key.id)) throw new RangeError(`Root key ${key.id} is in the keyring twice`);
      byId.set(key.id, key);
    }
    this.primary = primary;
    this.#byId = byId;
  }

  get id(): string {
    return this.primary.id;
  }

  get checkValue(): string {
    return this.primary.checkValue;
  }

  get derivable(): boolean {
    return this.primary.derivable;
  }

  /** Every held key's public id, the primary's first. */
  get ids(): readonly string[] {
    return [...this.#byId.keys()];
  }

  /** The held key with this public id, if any. */
  get(rootKeyId: string): RootKey | undefined {
    return this.#byId.get(rootKeyId);
  }

  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    return this.primary.wrap(plaintext, aad);
  }

  unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    return this.primary.unwrap(wrapped, aad);
  }

  unwrapRecorded(rootKeyId: string, wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    const key = this.#byId.get(rootKeyId);
    if (key === undefined) return Promise.reject(rootKeyNotHeld(rootKeyId));
    return key.unwrap(wrapped, aad);
  }

  /**
   * Derives from the primary, so the result changes with every rotation: a key that must outlive rotations (the
   * audit key) is stored wrapped instead, and derived from a named key of the ring only once.
   */
  deriveKey(derive: (rootKey: Uint8Array) => SecretBytes): Promise<SecretBytes> {
    return this.primary.deriveKey(derive);
  }

  /** Releases every held key (an HSM key's sessions and library). The owner of the keys calls it, once. */
  async close(): Promise<void> {
    await Promise.all([...this.#byId.values()].map((key) => key.close?.()));
  }
}
