import type { Logger } from 'pino';
import { withTimeout } from '../lib/timeout.js';
import type { Change, ChangeBarrier, ChangeFeed, FeedEvent } from './change.js';
import type { ChangeNotifications, ChangeRepository, SiblingProcesses } from './change-repository.js';

/** What a replica holds in memory and must forget when the store changes under it. */
export interface ChangeApplier {
  /** Forget what `change` made stale. Synchronous: requests after it returns must not see the old state. */
  apply(change: Change): void;
  /** Forget everything: the replica cannot vouch for what changed in between. */
  dropAll(): void;
}

export interface DatabaseChangeFeedOptions {
  readonly repository: ChangeRepository;
  readonly appliers: readonly ChangeApplier[];
  readonly logger: Logger;
  /** How often the sequence is read even without a notification; bounds the cost of a lost one. */
  readonly pollIntervalMs: number;
  /** The other workers of this server, whose announced commits are read at once (on SQLite: PostgreSQL notifies). */
  readonly siblings?: SiblingProcesses | undefined;
}

const CATCH_UP_BATCH = 500;
const LISTEN_RETRY_MS = 1000;

/**
 * Applies other replicas' writes to this replica's caches. PostgreSQL `NOTIFY` makes it prompt (on SQLite, a
 * commit in this process); reading the
 * sequence every `pollIntervalMs` makes it certain, since a notification can be lost with its connection. Reads
 * are single-flight and strictly in sequence order.
 *
 * When the replica cannot vouch for its caches, it drops them all: when a read of the feed fails (the store may
 * change while it cannot look) and again when reading succeeds, after the listening connection is re-established,
 * and when the changes it has not yet applied were already pruned (then subscribers are told to resync too).
 */
export class DatabaseChangeFeed implements ChangeFeed, ChangeBarrier {
  readonly #options: DatabaseChangeFeedOptions;
  readonly #listeners = new Set<(event: FeedEvent) => void>();
  #appliedSeq = 0;
  #catchingUp: Promise<void> | undefined;
  #again = false;
  #pollTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Commit notifications (PostgreSQL NOTIFY; on SQLite, commits in this process), while they are open. */
  #notifications: ChangeNotifications | undefined;
  /** True after a failed read: the next successful one starts by dropping every cache. */
  #lostTrack = false;
  #closed = false;
  #stopHearingSiblings: (() => void) | undefined;

  constructor(options: DatabaseChangeFeedOptions) {
    this.#options = options;
  }

  get appliedSeq(): number {
    return this.#appliedSeq;
  }

  /** Starts from the store's current sequence: caches are empty, so nothing before it concerns them. */
  async start(): Promise<void> {
    this.#appliedSeq = await this.#options.repository.latestSeq();
    await this.#listen(false);
    this.#stopHearingSiblings = this.#options.siblings?.onAnnouncement(() => void this.catchUp());
    this.#pollTimer = setInterval(() => void this.catchUp(), this.#options.pollIntervalMs);
    this.#pollTimer.unref();
  }

  subscribe(listener: (event: FeedEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async changesSince(seq: number, limit: number): Promise<readonly Change[] | 'gap'> {
    // The sequence first: every change up to it had committed when it was read, in order and without holes, so the
    // rows read next run on from seq + 1 unless some were pruned. In the other order a commit between the two
    // statements looks like a prune. An idle poll is one statement.
    const latest = await this.#options.repository.latestSeq();
    if (latest <= seq) return [];
    const changes = await this.#options.repository.since(seq, limit);
    // Pruning goes by each writer's clock, not by sequence, so a hole can open after the first row too.
    const unbroken = changes.length > 0 && changes.every((change, index) => change.seq === seq + 1 + index);
    return unbroken ? changes : 'gap';
  }

  /** Reads and applies every change after the last applied one. Concurrent calls share one read and one re-read. */
  catchUp(): Promise<void> {
    if (this.#catchingUp !== undefined) {
      // A notification that arrives mid-read may be for a change the read missed: read once more after it.
      this.#again = true;
      return this.#catchingUp;
    }
    this.#catchingUp = (async () => {
      do {
        this.#again = false;
        await this.#readOnce();
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#catchingUp = undefined;
    });
    return this.#catchingUp;
  }

  async catchUpTo(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.#appliedSeq >= seq) return true;
    // Only a read that starts after this call has seen every change committed before the caller asked, so one in
    // flight is waited out first (joining it could end just before its re-read). A failed read leaves #lostTrack set.
    const inFlight = this.#catchingUp;
    const read = inFlight === undefined ? this.catchUp() : inFlight.then(() => this.catchUp());
    return withTimeout(read, timeoutMs).then(
      () => this.#appliedSeq >= seq || (!this.#lostTrack && !this.#closed),
      () => false,
    );
  }

  /** Deletes changes older than `retentionMs`; a subscriber further behind than that is told to resync. */
  async prune(now: Date, retentionMs: number): Promise<number> {
    return this.#options.repository.pruneBefore(new Date(now.getTime() - retentionMs));
  }

  async close(): Promise<void> {
    this.#closed = true;
    const notifications = this.#notifications;
    this.#notifications = undefined;
    // Called now: on SQLite this unsubscribes at once, as before any await.
    const closing = notifications?.close().catch(() => undefined);
    clearInterval(this.#pollTimer);
    clearTimeout(this.#retryTimer);
    this.#stopHearingSiblings?.();
    this.#listeners.clear();
    await this.#catchingUp?.catch(() => undefined);
    await closing;
  }

  async #readOnce(): Promise<void> {
    if (this.#closed) return;
    try {
      for (;;) {
        const changes = await this.changesSince(this.#appliedSeq, CATCH_UP_BATCH);
        if (this.#lostTrack) {
          // Whatever was loaded while the feed could not be read is dropped too. The changes since the last applied
          // one are still in the table, so subscribers need no resync unless they were pruned meanwhile.
          this.#dropLocal();
          this.#lostTrack = false;
        }
        if (changes === 'gap') {
          this.#resync(await this.#options.repository.latestSeq());
          continue;
        }
        for (const change of changes) this.#apply(change);
        if (changes.length < CATCH_UP_BATCH) return;
      }
    } catch (error) {
      if (!this.#lostTrack) this.#options.logger.warn({ err: error }, 'change feed unreadable; caches dropped until it is read again');
      this.#lostTrack = true;
      this.#dropLocal();
    }
  }

  #apply(change: Change): void {
    if (change.seq <= this.#appliedSeq) return;
    for (const applier of this.#options.appliers) applier.apply(change);
    this.#appliedSeq = change.seq;
    this.#emit({ type: 'change', change });
  }

  #resync(seq: number): void {
    this.#dropLocal();
    this.#appliedSeq = Math.max(this.#appliedSeq, seq);
    this.#emit({ type: 'resync', seq: this.#appliedSeq });
  }

  #dropLocal(): void {
    for (const applier of this.#options.appliers) applier.dropAll();
  }

  #emit(event: FeedEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#options.logger.error({ err: error }, 'change feed subscriber failed');
      }
    }
  }

  /** Opens the commit notifications; on a reconnect, drops the caches and reads what was missed. */
  async #listen(reconnecting: boolean): Promise<void> {
    if (this.#closed) return;
    let notifications: ChangeNotifications | undefined;
    try {
      notifications = await this.#options.repository.notifications(
        () => void this.catchUp(),
        (error) => {
          if (this.#notifications !== notifications) return;
          this.#notifications = undefined;
          this.#options.logger.warn({ err: error }, 'change feed connection lost; reconnecting');
          this.#scheduleListen();
        },
      );
      if (this.#closed) {
        await notifications.close().catch(() => undefined);
        return;
      }
      this.#notifications = notifications;
      if (reconnecting) {
        this.#lostTrack = true;
        await this.catchUp();
      }
    } catch (error) {
      if (notifications !== undefined) await notifications.close().catch(() => undefined);
      if (!reconnecting) throw error;
      this.#scheduleListen();
    }
  }

  #scheduleListen(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    // Until the connection is back, polling keeps the caches current; a failed poll drops them.
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.#listen(true);
    }, LISTEN_RETRY_MS);
    this.#retryTimer.unref();
  }
}
