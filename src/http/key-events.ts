import { Readable } from 'node:stream';
import type { Change, ChangeFeed, FeedEvent } from '../changes/change.js';
import type { Principal } from '../context/principal.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { KeyEventData, ResyncEventData } from './schemas/events.js';

export interface KeyEventStreamsOptions {
  readonly feed: ChangeFeed;
  readonly authorizer: Pick<Authorizer, 'mayEverUseKey'>;
  /**
   * Brings the policy snapshot up to date before an event is filtered, as the authentication hook does before a
   * request: a stream outlives many policy TTLs.
   */
  readonly refreshPolicies: () => void | Promise<void>;
  /** Between `: keep-alive` comments, which keep proxies and load balancers from closing an idle stream. */
  readonly keepAliveMs?: number;
  /**
   * When the stream ends, whatever happens. Credentials are checked only when a stream opens, so this bounds how
   * long a revoked token, an expired service-account token or a removed certificate keeps receiving events.
   */
  readonly maxLifetimeMs?: number;
  /** Queued bytes a client that does not read may leave behind before its stream is cut; it resumes by reconnecting. */
  readonly maxBufferedBytes?: number;
}

const DEFAULT_KEEP_ALIVE_MS = 15_000;
const DEFAULT_MAX_LIFETIME_MS = 10 * 60_000;
const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;
const REPLAY_BATCH = 500;
/** The reconnection delay EventSource clients use (WHATWG HTML §9.2 `retry:`); the SDK has its own backoff. */
const RETRY_MS = 1000;

/**
 * The `GET /v1/events` streams of this replica: Server-Sent Events (WHATWG HTML §9.2) of the key-state changes
 * this replica has applied, filtered to the keys each caller may use. An event reaches a subscriber only after
 * this replica's caches applied it, so a client that refetches on the event is not served the state it revokes.
 */
export class KeyEventStreams {
  readonly #options: Required<KeyEventStreamsOptions>;
  readonly #open = new Set<KeyEventStream>();

  constructor(options: KeyEventStreamsOptions) {
    this.#options = {
      keepAliveMs: DEFAULT_KEEP_ALIVE_MS,
      maxLifetimeMs: DEFAULT_MAX_LIFETIME_MS,
      maxBufferedBytes: DEFAULT_MAX_BUFFERED_BYTES,
      ...options,
    };
  }

  /** Streams open now. */
  get size(): number {
    return this.#open.size;
  }

  /**
   * Opens a stream for `principal`. With `lastEventId` (the `Last-Event-ID` a reconnecting client sends), the
   * changes after it are replayed first, or a `resync` is sent when they are gone. Destroying the stream
   * unsubscribes it.
   */
  open(principal: Principal, lastEventId: number | undefined): Readable {
    const stream = new KeyEventStream(principal, this.#options, () => this.#open.delete(stream));
    this.#open.add(stream);
    stream.start(lastEventId);
    return stream.readable;
  }

  /** Ends every open stream; the server cannot close while they run. */
  endAll(): void {
    for (const stream of this.#open) stream.end();
  }
}

class KeyEventStream {
  readonly readable: Readable;
  readonly #principal: Principal;
  readonly #options: Required<KeyEventStreamsOptions>;
  readonly #unsubscribe: () => void;
  readonly #keepAlive: NodeJS.Timeout;
  readonly #lifetime: NodeJS.Timeout;
  readonly #onStop: () => void;
  /** Events are handled one after another, replay first, so the client sees them in sequence order. */
  #chain: Promise<void> = Promise.resolve();
  /** The last sequence handled, sent or filtered out; anything at or below it is not sent again. */
  #handledSeq = 0;
  #stopped = false;

  constructor(principal: Principal, options: Required<KeyEventStreamsOptions>, onStop: () => void) {
    this.#principal = principal;
    this.#options = options;
    this.#onStop = onStop;
    this.readable = new Readable({
      read: () => undefined,
      destroy: (error, done) => {
        this.#stop();
        done(error);
      },
    });
    // Subscribed before the replay reads the store, so nothing committed in between is missed; the replay and the
    // live events overlap instead, and #handledSeq drops the repeats.
    this.#unsubscribe = options.feed.subscribe((event) => this.#enqueue(event));
    // Without Last-Event-ID the stream starts here: whatever is delivered from now on is news to the client.
    this.#handledSeq = options.feed.appliedSeq;
    this.#keepAlive = setInterval(() => this.#write(': keep-alive\n\n'), options.keepAliveMs);
    this.#lifetime = setTimeout(() => this.end(), options.maxLifetimeMs);
    this.#keepAlive.unref();
    this.#lifetime.unref();
  }

  start(lastEventId: number | undefined): void {
    // A first chunk at once, so the headers go out now rather than with the first event.
    this.#write(`retry: ${RETRY_MS}\n\n`);
    this.#then(() => this.#replay(lastEventId));
  }

  /** Ends the stream cleanly: the client sees the end and reconnects. */
  end(): void {
    if (this.#stopped) return;
    this.#stop();
    this.readable.push(null);
  }

  #stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe();
    clearInterval(this.#keepAlive);
    clearTimeout(this.#lifetime);
    this.#onStop();
  }

  #then(step: () => void | Promise<void>): void {
    this.#chain = this.#chain.then(async () => {
      if (!this.#stopped) await step();
    }).catch((error: unknown) => {
      // The store could not be read: the client reconnects and replays from its last id.
      this.readable.destroy(error instanceof Error ? error : new Error('The event stream failed'));
    });
  }

  #enqueue(event: FeedEvent): void {
    this.#then(async () => {
      await this.#options.refreshPolicies();
      if (event.type === 'change') {
        this.#handle(event.change);
        return;
      }
      this.#resync(event.seq);
      // The changes this replica missed may have revoked the token that opened the stream: it must authenticate
      // again to go on. The client reconnects from the resync's id, and the changes after it are still kept.
      if (this.#principal.attributes.tokenId !== undefined) this.end();
    });
  }

  async #replay(lastEventId: number | undefined): Promise<void> {
    const { feed } = this.#options;
    // Only what this replica has applied: later changes arrive live, once its caches have forgotten them.
    const target = feed.appliedSeq;
    if (lastEventId === undefined) return;
    if (lastEventId > target) {
      // Another replica's id, ahead of this one, or one from another store: nothing here can vouch for it.
      this.#resync(target);
      return;
    }
    this.#handledSeq = lastEventId;
    await this.#options.refreshPolicies();
    while (this.#handledSeq < target && !this.#stopped) {
      const changes = await feed.changesSince(this.#handledSeq, REPLAY_BATCH);
      if (changes === 'gap') {
        this.#resync(target);
        return;
      }
      if (changes.length === 0) return;
      for (const change of changes) {
        if (change.seq > target) return;
        this.#handle(change);
      }
    }
  }

  #handle(change: Change): void {
    if (change.seq <= this.#handledSeq) return;
    this.#handledSeq = change.seq;
    switch (change.kind) {
      case 'key':
        // Every key the caller could use in some context: a grant conditioned on the context counts.
        if (change.keyName !== null && this.#options.authorizer.mayEverUseKey(this.#principal, change.keyName)) {
          const data: KeyEventData = { seq: change.seq, keyName: change.keyName, action: change.action, at: change.at.toISOString() };
          this.#send(change.seq, 'key', data);
        }
        return;
      case 'policy':
        // What the caller may use has changed, in ways a key name cannot say.
        this.#resync(change.seq);
        return;
      case 'token':
        // The stream was opened with this token; it must not outlive it.
        if (change.action === 'revoke' && change.subject === this.#principal.attributes.tokenId) this.end();
        return;
      case 'aws-credential':
        // Likewise for a stream opened with an AWS access key.
        if (change.action === 'revoke' && change.subject === this.#principal.attributes.accessKeyId) this.end();
        return;
    }
  }

  /** The id never goes back, so a reconnect does not replay what the client already had. */
  #resync(seq: number): void {
    this.#handledSeq = Math.max(this.#handledSeq, seq);
    const data: ResyncEventData = { seq: this.#handledSeq };
    this.#send(this.#handledSeq, 'resync', data);
  }

  #send(seq: number, type: 'key' | 'resync', data: KeyEventData | ResyncEventData): void {
    // JSON.stringify escapes line breaks, so the data is one `data:` line.
    this.#write(`id: ${seq}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #write(frame: string): void {
    if (this.#stopped) return;
    if (this.readable.readableLength > this.#options.maxBufferedBytes) {
      // A client that does not read: cut it off rather than buffer without bound.
      this.readable.destroy();
      return;
    }
    this.readable.push(frame);
  }
}
