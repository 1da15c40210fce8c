import type { Principal } from '../context/principal.js';

/**
 * A live AWS access key as SigV4 verification needs it: the secret to re-sign the request with, and the principal
 * the request then acts as. Built once per lookup, frozen, and shared by every request signed with the key.
 */
export interface SigningCredential {
  readonly accessKeyId: string;
  /** The secret access key, unwrapped from the store; never logged, never answered again after issue. */
  readonly secretAccessKey: string;
  /**
   * The principal the key is bound to (its id, type and attributes as they were vouched for when the key was
   * issued), never an admin, with the attribute `accessKeyId` added so the audit record names the key that signed.
   */
  readonly principal: Principal;
}

/** Finds the live credential of an access key id: undefined when it is unknown, revoked or expired. */
export interface SigningCredentialSource {
  signingCredential(accessKeyId: string): SigningCredential | undefined | Promise<SigningCredential | undefined>;
}
