import type { Change } from './change.js';

/** A subscription to commit notifications; see {@link ChangeRepository.notifications}. */
export interface ChangeNotifications {
  /** Stops the notifications and releases what carried them. */
  close(): Promise<void>;
}

/**
 * Reads the change feed. Writers record their changes through their own repositories, in the commits that made
 * them, so sequence order is commit order.
 */
export interface ChangeRepository {
  /** The sequence of the last committed change: every change up to it had committed when it was read. */
  latestSeq(): Promise<number>;
  /** The retained changes after `seq`, oldest first. */
  since(seq: number, limit: number): Promise<Change[]>;
  /** Deletes changes recorded before `before`. The sequence keeps counting, so a reader behind them sees a gap. */
  pruneBefore(before: Date): Promise<number>;
  /**
   * Calls `onCommit` soon after a change may have been committed, so a reader need not wait for its next poll. A
   * notification can be lost: readers still poll. If the subscription itself breaks, `onLost` is called once and
   * nothing more is delivered; the reader opens a new one. Rejects when it cannot be opened.
   */
  notifications(onCommit: () => void, onLost: (error?: Error) => void): Promise<ChangeNotifications>;
}

/**
 * The other server processes on this host that share the store: the workers of one `keyhold server` (node:cluster).
 * On SQLite, which has no NOTIFY, a commit in one worker reaches the others' feeds through them, at once rather than
 * at their next poll. Announcements can be lost with a worker; readers still poll.
 */
export interface SiblingProcesses {
  /** Tells the others that this process committed a change. */
  announce(): void;
  /** Calls `listener` whenever another process announced a change. Returns the unsubscribe. */
  onAnnouncement(listener: () => void): () => void;
}
