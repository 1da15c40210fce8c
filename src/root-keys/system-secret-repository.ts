/** A service secret as stored: wrapped under the root key named by `rootKeyId`. */
export interface WrappedSystemSecret {
  readonly name: string;
  readonly rootKeyId: string;
  readonly material: Buffer;
}

/** The service's own secrets (the audit key), wrapped under a root key like key versions are. */
export interface SystemSecretRepository {
  find(name: string): Promise<WrappedSystemSecret | undefined>;
  /**
   * Stores `secret` unless one of that name is stored already, and returns the one stored after: replicas that
   * start together each try, the first wins and the others get its secret.
   */
  insertIfAbsent(secret: WrappedSystemSecret, at: Date): Promise<WrappedSystemSecret>;
}
