/** One row of stored material to move to another root key: a key version's, a system secret's or an AWS secret key's. */
export type WrappedRow =
  | { readonly table: 'key_versions'; readonly keyId: string; readonly version: number; readonly rootKeyId: string; readonly material: Buffer }
  | { readonly table: 'system_secrets'; readonly name: string; readonly rootKeyId: string; readonly material: Buffer }
  | { readonly table: 'aws_credentials'; readonly accessKeyId: string; readonly rootKeyId: string; readonly material: Buffer };

/** Gives a row's material wrapped under the target root key. */
export type Rewrap = (row: WrappedRow) => Promise<Buffer>;

/**
 * The storage side of a root key rotation: finds material wrapped under other root keys and moves it, a batch at a
 * time. A row's material and root key change together, so every row is wholly under its old key or wholly under the
 * new one, whenever the process stops.
 */
export interface RootRewrapRepository {
  /** Material (destroyed versions hold none; revoked AWS keys are still counted) wrapped under any recorded root key but `rootKeyId`. */
  countOutside(rootKeyId: string): Promise<number>;
  /**
   * Moves up to `limit` rows (system secrets first, then AWS secret keys, then key versions) from other recorded root keys to `rootKeyId` in one commit, and
   * returns how many it moved; 0 means none was left that a concurrent run did not hold.
   */
  rewrapBatch(rootKeyId: string, limit: number, rewrap: Rewrap, at: Date): Promise<number>;
}
