/** The stored shape of a named key and its versions, independent of HTTP and of the database. */

export const KEY_STATES = ['enabled', 'disabled', 'pending_deletion', 'destroyed'] as const;
export type KeyState = (typeof KEY_STATES)[number];

export const KEY_VERSION_STATES = ['enabled', 'disabled', 'destroyed'] as const;
export type KeyVersionState = (typeof KEY_VERSION_STATES)[number];

/** What a key may bind: the caller's id, or one of the attributes that name where a workload runs. */
export const BOUND_ATTRIBUTES = ['id', 'namespace', 'serviceAccount', 'trustDomain', 'issuer', 'tokenName'] as const;
export type BoundAttribute = (typeof BOUND_ATTRIBUTES)[number];

export const KEY_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';

export interface KeyVersionRecord {
  readonly version: number;
  readonly state: KeyVersionState;
  readonly rootKeyId: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly destroyedAt: Date | null;
}

export interface KeyRecord {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * Principal attributes bound into every encryption context of this key (`kh.ATTRIBUTE=<caller's value>`), so a
   * ciphertext made by one namespace never decrypts for another. Fixed at creation; empty for unbound keys.
   */
  readonly boundContext: readonly BoundAttribute[];
  readonly state: KeyState;
  readonly primaryVersion: number;
  readonly minDecryptionVersion: number;
  readonly rotationPeriodSeconds: number | null;
  /**
   * How many of the newest versions stay decryptable: each rotation raises `minDecryptionVersion` to keep this
   * many. Null keeps every version. Retired versions keep their material, so lowering the minimum restores them.
   */
  readonly retainVersions: number | null;
  readonly nextRotationAt: Date | null;
  readonly deletionDate: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly destroyedAt: Date | null;
  /** Ascending by version. */
  readonly versions: readonly KeyVersionRecord[];
}

/**
 * A key as a listing shows it: the record without its versions, which a key rotated daily for years has thousands
 * of, and what a page of keys needs of them instead.
 */
export interface KeySummary extends Omit<KeyRecord, 'versions'> {
  readonly versionCount: number;
  readonly enabledVersionCount: number;
  /** When the primary version was created: its age is the key's age since its last rotation. */
  readonly primaryVersionCreatedAt: Date;
}

/** A version's wrapped material, as stored: AES-256-GCM under the root key named by `rootKeyId`. */
export interface WrappedKeyVersion {
  readonly version: number;
  readonly rootKeyId: string;
  readonly material: Buffer;
}

export function findVersion(key: KeyRecord, version: number): KeyVersionRecord | undefined {
  // Versions are dense from 1, so the index is the version minus one; the check guards against a gap.
  const candidate = key.versions[version - 1];
  return candidate?.version === version ? candidate : key.versions.find((v) => v.version === version);
}
