import { DeadlineExceededError, ServiceUnavailableError } from '../errors.js';

/**
 * How a call retries. `retries` counts the attempts after the first one, so a call makes at most `retries + 1`
 * attempts.
 */
export interface RetryPolicy {
  /** How many times a failed attempt may be repeated. */
  readonly retries: number;
  /** The backoff ceiling of the first retry; each later retry doubles it. */
  readonly baseDelayMs: number;
  /** The backoff ceiling never grows past this. `Retry-After` may still ask for longer. */
  readonly maxDelayMs: number;
}

/**
 * The backoff before retry number `retryIndex` (0 for the first retry): "full jitter", a uniform draw from
 * `[0, min(maxDelayMs, baseDelayMs * 2 ** retryIndex))`. Full jitter spreads the retries of many clients that
 * failed together (a server restart, a dropped load balancer) instead of marching them back in lock-step, and of
 * the jitter schemes it does the least work in total (AWS Architecture Blog, "Exponential Backoff And Jitter").
 *
 * @param random - a draw from `[0, 1)`, injectable so that tests choose the jitter.
 */
export function backoffDelayMs(retryIndex: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, random: () => number): number {
  // 2 ** 1024 is Infinity, and min() caps it, so a long run of retries cannot overflow into NaN.
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retryIndex);
  const draw = random();
  // A random() that strays out of [0, 1) must not make the delay negative or larger than the ceiling.
  const unit = Number.isFinite(draw) ? Math.min(Math.max(draw, 0), 1) : 0;
  return unit * ceiling;
}

const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const LONG_DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAY = `(?:${DAYS.join('|')})`;
const MONTH = `(${MONTHS.join('|')})`;
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';
// RFC 9110 §5.6.7: IMF-fixdate is what servers send; rfc850-date and asctime-date are obsolete but recipients
// must still accept them.
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
const RFC850_DATE = new RegExp(`^(?:${LONG_DAYS.join('|')}), (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);
const DELTA_SECONDS = /^\d+$/;

function utc(year: number, month: string, day: number, hours: number, minutes: number, seconds: number): number | undefined {
  const monthIndex = MONTHS.indexOf(month);
  if (day < 1 || day > 31 || hours > 23 || minutes > 59 || seconds > 60) return undefined;
  const ms = Date.UTC(year, monthIndex, day, hours, minutes, Math.min(seconds, 59));
  // Date.UTC rolls 31 Feb over into March; such a date is not a date.
  return new Date(ms).getUTCDate() === day ? ms : undefined;
}

/**
 * Parses an HTTP-date (RFC 9110 §5.6.7) into epoch milliseconds, or `undefined` when it is not one.
 * `Date.parse` is not used on its own because it accepts far more than HTTP-dates (it reads "5.5" as May 2001)
 * and reads asctime-date, which carries no zone, in the local zone instead of GMT.
 */
export function parseHttpDate(value: string, nowMs: number): number | undefined {
  let match = IMF_FIXDATE.exec(value);
  if (match !== null) {
    const [, day, month, year, h, m, s] = match as unknown as [string, string, string, string, string, string, string];
    return utc(Number(year), month, Number(day), Number(h), Number(m), Number(s));
  }
  match = RFC850_DATE.exec(value);
  if (match !== null) {
    const [, day, month, yy, h, m, s] = match as unknown as [string, string, string, string, string, string, string];
    // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future means the most recent past year with
    // those digits.
    const thisYear = new Date(nowMs).getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(yy);
    if (year > thisYear + 50) year -= 100;
    return utc(year, month, Number(day), Number(h), Number(m), Number(s));
  }
  match = ASCTIME_DATE.exec(value);
  if (match !== null) {
    const [, month, day, h, m, s, year] = match as unknown as [string, string, string, string, string, string, string];
    return utc(Number(year), month, Number(day.trim()), Number(h), Number(m), Number(s));
  }
  return undefined;
}

/**
 * The wait a `Retry-After` header asks for, in milliseconds from `nowMs`: delta-seconds or an HTTP-date
 * (RFC 9110 §10.2.3). A date in the past asks for no wait. A header that is neither, or is missing, asks for
 * nothing (`undefined`), and the backoff alone decides.
 */
export function parseRetryAfter(value: string | readonly string[] | undefined, nowMs: number): number | undefined {
  // A repeated header is malformed; the first value is as good a guess as any and better than none.
  const raw = typeof value === 'string' ? value : value?.[0];
  if (raw === undefined) return undefined;
  const text = raw.trim();
  if (DELTA_SECONDS.test(text)) {
    const seconds = Number(text);
    // Very long digit strings parse to huge numbers or Infinity; either way the deadline refuses the wait.
    return Number.isFinite(seconds) ? seconds * 1000 : Number.MAX_SAFE_INTEGER;
  }
  const date = parseHttpDate(text, nowMs);
  return date === undefined ? undefined : Math.max(0, date - nowMs);
}

/** 429 and every 5xx may succeed later; any other status will not change by asking again. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599);
}

/**
 * Error codes of connections that failed in a way a new connection may not: the peer reset or closed it (a
 * restarting pod, a keep-alive socket the server closed just as it was reused), refused it (nothing listening
 * yet), the route or DNS answer is temporarily missing, or the attempt timed out.
 */
const RETRYABLE_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/**
 * Whether a failure to get an answer at all is worth another attempt: resets, refusals, broken pipes, "socket hang
 * up" (Node reports it as ECONNRESET) and timeouts of a single attempt (ETIMEDOUT). TLS verification failures and
 * unknown hosts are not: they are configuration, and repeating them only delays the error.
 */
export function isRetryableNetworkError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && RETRYABLE_NETWORK_CODES.has(code)) return true;
  // Some paths in node:http report a hang-up without a code.
  return (error as { message?: unknown }).message === 'socket hang up';
}

/** What to do after a failed attempt. */
export type RetryPlan =
  | { readonly action: 'retry'; readonly delayMs: number }
  | { readonly action: 'give-up'; readonly reason: 'exhausted' | 'deadline' };

/** Where a call stands after a failed attempt. */
export interface RetryState {
  /** How many retries were already made (0 after the first attempt failed). */
  readonly retriesDone: number;
  /** What the answer's `Retry-After` asked for, in milliseconds, if anything. */
  readonly retryAfterMs?: number;
  /** The current time, on the same clock as `deadlineMs`. */
  readonly nowMs: number;
  /** When the call must be over. */
  readonly deadlineMs: number;
}

/**
 * Decides, without side effects, whether and when to try again. The delay is the full-jitter backoff, raised to
 * `Retry-After` when the server asked for more: the server knows when it will be back, and coming earlier only adds
 * load to a server that said it is overloaded. No delay runs past the deadline: when the next attempt could not
 * start before it, the call gives up now instead of sleeping only to fail, and when `Retry-After` alone is past it,
 * the server has said it will not be back in time.
 */
export function planRetry(policy: RetryPolicy, state: RetryState, random: () => number): RetryPlan {
  const remainingMs = state.deadlineMs - state.nowMs;
  if (remainingMs <= 0) return { action: 'give-up', reason: 'deadline' };
  if (state.retriesDone >= policy.retries) return { action: 'give-up', reason: 'exhausted' };
  const floorMs = state.retryAfterMs ?? 0;
  const delayMs = Math.max(backoffDelayMs(state.retriesDone, policy, random), floorMs);
  if (delayMs >= remainingMs) return { action: 'give-up', reason: 'deadline' };
  return { action: 'retry', delayMs };
}

/** `{ cause }` only when there is one, so that an error without a cause has no `cause` property at all. */
function causeOf(error: unknown): ErrorOptions | undefined {
  return error === undefined ? undefined : { cause: error };
}

/** The outcome of one attempt, as the retry loop needs to know it. */
export type AttemptResult<T> =
  | { readonly ok: true; readonly value: T }
  | {
      readonly ok: false;
      /** The failure, kept as the `cause` of the error the call ends with. */
      readonly error: unknown;
      /** False for failures that will not go away (a TLS verification failure): the call ends at once. */
      readonly retryable: boolean;
      /** What the answer's `Retry-After` asked for, in milliseconds. */
      readonly retryAfterMs?: number;
    };

/** The clock, randomness and limits of one call. */
export interface RetryRun {
  readonly policy: RetryPolicy;
  /** When the call must be over, on the clock of `now`. */
  readonly deadlineMs: number;
  /** The call's timeout, only to report it in {@link DeadlineExceededError}. */
  readonly timeoutMs: number;
  readonly random: () => number;
  readonly now: () => number;
  /** Waits; rejects when `signal` aborts. */
  readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds, fails for good, or the policy or the deadline says stop. Whatever `attempt`
 * throws (a 4xx answer, an abort) ends the call as it is. A failure marked not retryable, or retries running out,
 * ends it with {@link ServiceUnavailableError}; the deadline ends it with {@link DeadlineExceededError}. Both keep
 * the last failure as `cause`.
 *
 * @param attempt - called with the 1-based attempt number.
 */
export async function runWithRetries<T>(attempt: (attemptNumber: number) => Promise<AttemptResult<T>>, run: RetryRun): Promise<T> {
  let lastError: unknown;
  for (let attempts = 1; ; attempts += 1) {
    if (run.now() >= run.deadlineMs) throw new DeadlineExceededError(run.timeoutMs, causeOf(lastError));
    const result = await attempt(attempts);
    if (result.ok) return result.value;
    lastError = result.error;
    if (!result.retryable) throw new ServiceUnavailableError(attempts, { cause: result.error });
    const plan = planRetry(
      run.policy,
      { retriesDone: attempts - 1, retryAfterMs: result.retryAfterMs, nowMs: run.now(), deadlineMs: run.deadlineMs },
      run.random,
    );
    if (plan.action === 'give-up') {
      if (plan.reason === 'exhausted') throw new ServiceUnavailableError(attempts, { cause: result.error });
      throw new DeadlineExceededError(run.timeoutMs, { cause: result.error });
    }
    await run.sleep(plan.delayMs, run.signal);
  }
}
