/**
 * What a replica must forget when another one writes. Every write that can change what a request is allowed or
 * able to do records one change, in its own transaction, under the next value of the store's change sequence.
 */
export type ChangeKind = 'key' | 'policy' | 'token' | 'aws-credential';

/** The write that caused a change; SSE subscribers and audit readers see it, caches only need the subject. */
export type ChangeAction =
  | 'create'
  | 'update'
  | 'rotate'
  | 'disable'
  | 'enable'
  | 'disable-version'
  | 'enable-version'
  | 'schedule-deletion'
  | 'cancel-deletion'
  | 'destroy'
  | 'put'
  | 'delete'
  | 'revoke';

export interface Change {
  /** The store's change sequence: strictly increasing in commit order, across every replica. */
  readonly seq: number;
  readonly kind: ChangeKind;
  readonly action: ChangeAction;
  /** key: the key id; policy: the policy name; token: the token id; aws-credential: the access key id. */
  readonly subject: string;
  /** The key's name for key changes, otherwise null. */
  readonly keyName: string | null;
  readonly at: Date;
}

/**
 * A replica's view of the change sequence. `resync` means the replica could not vouch for the changes in between
 * (changes pruned before it read them): it dropped every cache, and so should every subscriber.
 */
export type FeedEvent = { readonly type: 'change'; readonly change: Change } | { readonly type: 'resync'; readonly seq: number };

export interface ChangeFeed {
  /** The last sequence this replica has applied. */
  readonly appliedSeq: number;
  /**
   * Called after this replica's caches have applied each event, in sequence order. Returns the unsubscribe
   * function. Listeners must not throw.
   */
  subscribe(listener: (event: FeedEvent) => void): () => void;
  /**
   * The changes after `seq`, oldest first, at most `limit`; `gap` when some of them were already pruned, so the
   * caller cannot replay them and must start over.
   */
  changesSince(seq: number, limit: number): Promise<readonly Change[] | 'gap'>;
}

/**
 * What a request that names a change sequence (`Keyhold-Min-Change`) waits on, so that a client which heard of a
 * change from one replica is not answered from older state by another.
 */
export interface ChangeBarrier {
  /** The last sequence this replica has applied. */
  readonly appliedSeq: number;
  /**
   * Resolves true once this replica has applied `seq`, or has read the whole feed after the call and found nothing
   * newer to apply (a sequence the store has not reached is then satisfied: it cannot hold a replica hostage).
   * Resolves false when neither happens within `timeoutMs` or the feed cannot be read: the caller must not answer
   * from this replica's state then.
   */
  catchUpTo(seq: number, timeoutMs: number): Promise<boolean>;
}
