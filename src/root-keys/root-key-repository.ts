export interface RootKeyEntry {
  readonly id: string;
  readonly checkValue: string;
}

/** How much stored material is wrapped under one root key. */
export interface WrappedUnder {
  readonly keyVersions: number;
  readonly systemSecrets: number;
  readonly awsCredentials: number;
}

/** The root keys the store has been wrapped with, by public id and check value, oldest first. */
export interface RootKeyRepository {
  /** The recorded root keys in the order they were recorded. */
  list(): Promise<RootKeyEntry[]>;
  /**
   * Records `entry` as the store's root key if the store has none yet, and returns the root keys recorded after.
   * Replicas that start together on an empty store serialise here, so they cannot each record a different key.
   */
  recordIfFirst(entry: RootKeyEntry, at: Date): Promise<RootKeyEntry[]>;
  /**
   * Records `entry` as the next root key of a rotation, unless it is recorded already, and returns the root keys
   * recorded after. Throws when `vouchedBy`, the key the caller proved it holds, is not recorded. A key recorded
   * later always sorts later, so the first recorded key stays first.
   */
  recordNext(entry: RootKeyEntry, vouchedBy: string, at: Date): Promise<RootKeyEntry[]>;
  /** How much material (destroyed versions hold none) is wrapped under `rootKeyId`. */
  wrappedUnder(rootKeyId: string): Promise<WrappedUnder>;
  /** How many keys the store holds, in any state. */
  keyCount(): Promise<number>;
}
