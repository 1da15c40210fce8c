import { UnavailableError } from '../errors.js';

/** Opens and closes the pooled sessions; both may throw (a token gone), which the pool passes on to the caller. */
export interface SessionFactory<S> {
  open(): S;
  close(session: S): void;
}

/**
 * A bounded pool of sessions to a cryptographic token, each running one operation at a time: PKCS#11 keeps one active
 * operation per session (v2.40 §5.6), so two calls interleaved on one session would corrupt each other. Sessions are
 * opened on demand up to `size`; callers beyond that wait their turn in order. A session whose operation failed is
 * closed rather than reused, since a failed call can leave an operation active on it (`CKR_BUFFER_TOO_SMALL`,
 * `CKR_ARGUMENTS_BAD`).
 */
export class SessionPool<S> {
  readonly #factory: SessionFactory<S>;
  readonly #size: number;
  readonly #idle: S[] = [];
  readonly #waiting: Array<(session: S | Error) => void> = [];
  readonly #running = new Set<Promise<unknown>>();
  #open = 0;
  #closed = false;

  constructor(factory: SessionFactory<S>, size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('A session pool holds at least one session');
    this.#factory = factory;
    this.#size = size;
  }

  /** Sessions open now, idle or busy. */
  get openSessions(): number {
    return this.#open;
  }

  /** Runs `operation` on a session of its own, and gives the session back (or closes it, if the operation threw). */
  run<T>(operation: (session: S) => Promise<T>): Promise<T> {
    const run = this.#acquire().then(async (session) => {
      try {
        const result = await operation(session);
        this.#release(session);
        return result;
      } catch (error) {
        this.#discard(session);
        throw error;
      }
    });
    const tracked = run.catch(() => undefined);
    this.#running.add(tracked);
    void tracked.then(() => this.#running.delete(tracked));
    return run;
  }

  /** Refuses new operations, waits for those under way, then closes every session. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const waiter of this.#waiting.splice(0)) waiter(poolClosed());
    while (this.#running.size > 0) await Promise.all(this.#running);
    for (const session of this.#idle.splice(0)) this.#closeSession(session);
  }

  #acquire(): Promise<S> {
    if (this.#closed) return Promise.reject(poolClosed());
    const idle = this.#idle.pop();
    if (idle !== undefined) return Promise.resolve(idle);
    if (this.#open < this.#size) {
      try {
        const session = this.#factory.open();
        this.#open += 1;
        return Promise.resolve(session);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise((resolve, reject) => {
      this.#waiting.push((session) => (session instanceof Error ? reject(session) : resolve(session)));
    });
  }

  #release(session: S): void {
    if (this.#closed) return this.#closeSession(session);
    const next = this.#waiting.shift();
    if (next !== undefined) next(session);
    else this.#idle.push(session);
  }

  #discard(session: S): void {
    this.#closeSession(session);
    // A waiter takes the freed place with a fresh session; if the token cannot open one now, it learns why.
    const next = this.#waiting.shift();
    if (next === undefined) return;
    try {
      const fresh = this.#factory.open();
      this.#open += 1;
      next(fresh);
    } catch (error) {
      next(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #closeSession(session: S): void {
    this.#open -= 1;
    try {
      this.#factory.close(session);
    } catch {
      // Closing a session the token has already dropped fails; it is gone either way.
    }
  }
}

/** An operation that arrives as the process shuts down: answered 503, as a request during a drain would be. */
function poolClosed(): Error {
  return new UnavailableError('The HSM connection is closed');
}
