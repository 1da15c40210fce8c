import type { PrincipalType } from '../context/principal.js';

/** The principal an AWS access key acts as: what was vouched for when the key was issued. */
export interface BoundPrincipal {
  readonly id: string;
  readonly type: PrincipalType;
  readonly attributes: Readonly<Record<string, string>>;
}

/** An AWS access key as lists show it: never its secret. */
export interface AwsCredentialRecord {
  /** `KHAK` and 16 base32 characters: AWS's 20-character shape. */
  readonly accessKeyId: string;
  readonly name: string;
  readonly principal: BoundPrincipal;
  /** The id of the principal that issued the key. */
  readonly createdBy: string;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

/** An AWS access key as stored: its secret wrapped under the root key `rootKeyId`, never in the clear. */
export interface StoredAwsCredential extends AwsCredentialRecord {
  readonly rootKeyId: string;
  /** Wrapped with the AAD `awsCredentialWrapAad(accessKeyId)` (root-keys/root-keyring.ts). */
  readonly wrappedSecret: Buffer;
}

/** Where a page of live access keys starts: after this name and access key id. */
export interface AwsCredentialCursor {
  readonly name: string;
  readonly accessKeyId: string;
}

/** Persistence of AWS access keys. */
export interface AwsCredentialRepository {
  /**
   * Stores a new, live access key. Throws `KH_ERR_AWS_CREDENTIAL_EXISTS` when its access key id, or its name among
   * the live keys, is stored already.
   */
  insert(credential: StoredAwsCredential): Promise<void>;
  /** The access key, revoked or not, with its wrapped secret. */
  find(accessKeyId: string): Promise<StoredAwsCredential | undefined>;
  /** Live access keys (not revoked), ordered by name then access key id, after the cursor; secrets are not read. */
  list(query: { after?: AwsCredentialCursor | undefined; limit: number }): Promise<AwsCredentialRecord[]>;
  /**
   * Revokes a live access key and, in the same commit, records an `aws-credential` `revoke` change so every replica
   * forgets it. False when no live key has this id.
   */
  revoke(accessKeyId: string, at: Date): Promise<boolean>;
}
