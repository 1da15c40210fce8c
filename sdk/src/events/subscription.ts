import type { EventStreamConnector } from './connect.js';
import { SseParser, type ServerSentEvent } from './sse-parser.js';

/** Tuning of the revocation-event subscription; see {@link ClientOptions.events}. */
export interface EventsOptions {
  /** The backoff ceiling of the first reconnect, doubled for each later failure, in milliseconds. Default 500. */
  readonly baseDelayMs?: number;
  /** The largest backoff ceiling, in milliseconds. Default 30,000. */
  readonly maxDelayMs?: number;
  /**
   * A stream that sends nothing for this long (the service sends a keep-alive every 15 s) is taken as dead and
   * replaced, in milliseconds. Default 45,000.
   */
  readonly idleTimeoutMs?: number;
}

/**
 * Where a subscription is, for diagnostics only: `off` (events disabled), `idle` (no call made yet), `connecting`,
 * `open`, `waiting` (backing off before a reconnect) or `closed`.
 */
export type SubscriptionState = 'off' | 'idle' | 'connecting' | 'open' | 'waiting' | 'closed';

/** A snapshot of a subscription, for diagnostics. */
export interface SubscriptionStatus {
  readonly state: SubscriptionState;
  /** The id of the last event received; sent as `Last-Event-ID` on reconnect. */
  readonly lastEventId: string;
  /** Streams opened so far. */
  readonly connections: number;
  /** The HTTP status of the last refused attempt, or 0 for a network failure; undefined once a stream opens. */
  readonly lastFailure?: number;
}

/** What the subscription does to the cache. */
export interface SubscriptionTarget {
  /** Drops the cached data keys of one key. */
  purge(keyName: string): void;
  /** Drops every cached data key. */
  purgeAll(): void;
}

export interface SubscriptionOptions extends EventsOptions {
  readonly connect: EventStreamConnector;
  readonly target: SubscriptionTarget;
  /** A draw from [0, 1) for the backoff jitter; for tests. */
  readonly random?: () => number;
}

// setTimeout() fires at once for delays above 2^31 - 1 ms.
const MAX_DELAY_MS = 2 ** 31 - 1;
/** An event id the service sends: its change sequence, decimal. Anything else is not sent back to it. */
const CHANGE_SEQUENCE = /^(?:0|[1-9][0-9]{0,15})$/;

function delayOption(value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_DELAY_MS) {
    throw new RangeError(`must be a number of milliseconds from 0 to ${MAX_DELAY_MS}`);
  }
  return value;
}

/** Checks the options once, when the client is built, so a mistake fails there and not in the background. */
export function checkEventsOptions(options: EventsOptions): Required<EventsOptions> {
  const checked = { baseDelayMs: 0, maxDelayMs: 0, idleTimeoutMs: 0 };
  for (const [name, fallback] of [['baseDelayMs', 500], ['maxDelayMs', 30_000], ['idleTimeoutMs', 45_000]] as const) {
    try {
      checked[name] = delayOption(options[name], fallback);
    } catch (error) {
      throw new RangeError(`events.${name} ${(error as Error).message}`);
    }
  }
  if (checked.idleTimeoutMs < 1) throw new RangeError('events.idleTimeoutMs must be at least 1');
  return checked;
}

/**
 * Keeps one `GET /v1/events` stream open and turns its events into cache purges: a `key` event drops that key's
 * data keys, a `resync` drops all of them. Whenever the client cannot vouch for what it missed it drops all of them
 * too: when an open stream is lost, when a new one opens after it, and when the service refuses the credential
 * (401, 403). Reconnects wait a full-jitter exponential backoff and send `Last-Event-ID`. Timers and the socket are
 * unref'd, so a subscription never keeps the process alive.
 */
export class EventSubscription {
  readonly #connect: EventStreamConnector;
  readonly #target: SubscriptionTarget;
  readonly #random: () => number;
  readonly #options: Required<EventsOptions>;
  #state: SubscriptionState = 'idle';
  #lastEventId = '';
  /** The highest change sequence any event named; ids go back when a stream resyncs on a replica that is behind. */
  #highestSeq = 0;
  #connections = 0;
  #lastFailure: number | undefined;
  /** Failures since the last stream opened: the backoff exponent. */
  #failures = 0;
  #attempt: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: SubscriptionOptions) {
    this.#connect = options.connect;
    this.#target = options.target;
    this.#random = options.random ?? Math.random;
    this.#options = checkEventsOptions(options);
  }

  /** Opens the stream unless it is open, opening or closed. */
  start(): void {
    if (this.#state !== 'idle') return;
    void this.#run();
  }

  status(): SubscriptionStatus {
    return {
      state: this.#state,
      lastEventId: this.#lastEventId,
      connections: this.#connections,
      ...(this.#lastFailure === undefined ? {} : { lastFailure: this.#lastFailure }),
    };
  }

  /**
   * The highest change sequence an event has named, as the `Keyhold-Min-Change` value of the client's calls, or
   * undefined before any. Each event is applied to the cache before this moves past it, so a call that carries it
   * finds the cache already purged and a replica that has applied the change.
   */
  minChange(): string | undefined {
    return this.#highestSeq === 0 ? undefined : String(this.#highestSeq);
  }

  /** Ends the stream and every retry. */
  close(): void {
    this.#state = 'closed';
    clearTimeout(this.#timer);
    this.#attempt?.abort();
  }

  async #run(): Promise<void> {
    this.#state = 'connecting';
    const attempt = new AbortController();
    this.#attempt = attempt;
    let idle: NodeJS.Timeout | undefined;
    let opened = false;
    try {
      const answer = await this.#connect(this.#lastEventId, attempt.signal);
      if (this.#closed()) return;
      if (answer.body === undefined) {
        this.#lastFailure = answer.status;
        // The service no longer accepts this workload: whatever it was allowed before may be revoked.
        if (answer.status === 401 || answer.status === 403) this.#target.purgeAll();
        return;
      }
      opened = true;
      this.#connections += 1;
      this.#failures = 0;
      this.#lastFailure = undefined;
      this.#state = 'open';
      // Reconnected: the events in between were replayed from Last-Event-ID, unless the service could not. The
      // first stream has nothing before it to vouch for.
      if (this.#connections > 1) this.#target.purgeAll();
      const restartIdle = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => attempt.abort(), this.#options.idleTimeoutMs);
        idle.unref();
      };
      restartIdle();
      const parser = new SseParser((event) => this.#apply(event), this.#lastEventId);
      for await (const chunk of answer.body) {
        restartIdle();
        parser.push(chunk);
        this.#lastEventId = parser.lastEventId;
        if (this.#closed()) return;
      }
    } catch {
      // A network failure, a stream cut off, an idle stream aborted or a peer that is not an event stream: all of
      // them end here and are retried the same way. The status says only that it was not an answer.
      if (!opened) this.#lastFailure = 0;
    } finally {
      clearTimeout(idle);
      if (!this.#closed()) {
        // A stream that ended, cleanly or not, leaves a gap this client cannot see into.
        if (opened) this.#target.purgeAll();
        this.#schedule(opened);
      }
    }
  }

  #apply(event: ServerSentEvent): void {
    if (CHANGE_SEQUENCE.test(event.lastEventId)) {
      const seq = Number(event.lastEventId);
      if (Number.isSafeInteger(seq) && seq > this.#highestSeq) this.#highestSeq = seq;
    }
    if (event.type === 'key') {
      let keyName: unknown;
      try {
        keyName = (JSON.parse(event.data) as { keyName?: unknown }).keyName;
      } catch {
        keyName = undefined;
      }
      // An event that cannot be read is still a change: drop everything rather than guess.
      if (typeof keyName === 'string' && keyName !== '') this.#target.purge(keyName);
      else this.#target.purgeAll();
    } else if (event.type === 'resync') {
      this.#target.purgeAll();
    }
  }

  /** After an open stream ends, the first reconnect waits up to the base delay; each failure doubles the ceiling. */
  #schedule(afterStream: boolean): void {
    const { baseDelayMs, maxDelayMs } = this.#options;
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(this.#failures, 30));
    if (!afterStream) this.#failures += 1;
    this.#state = 'waiting';
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#closed()) void this.#run();
    }, Math.floor(this.#random() * ceiling));
    this.#timer.unref();
  }

  #closed(): boolean {
    return this.#state === 'closed';
  }
}
