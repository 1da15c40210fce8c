import { describe, expect, it } from 'vitest';
import { DeadlineExceededError, ServiceUnavailableError } from '../../../src/errors.js';
import {
  backoffDelayMs,
  isRetryableNetworkError,
  isRetryableStatus,
  parseHttpDate,
  parseRetryAfter,
  planRetry,
  runWithRetries,
  type AttemptResult,
} from '../../../src/transport/retry.js';

const POLICY = { retries: 3, baseDelayMs: 100, maxDelayMs: 1_000 };
const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const top = (): number => 1 - Number.EPSILON;

describe('backoffDelayMs', () => {
  it('grows the ceiling exponentially from baseDelayMs', () => {
    expect([0, 1, 2, 3].map((i) => backoffDelayMs(i, POLICY, top))).toEqual([0, 1, 2, 3].map((i) => (100 * 2 ** i) * (1 - Number.EPSILON)));
  });

  it('never lets the ceiling pass maxDelayMs', () => {
    expect(backoffDelayMs(4, POLICY, top)).toBeLessThanOrEqual(1_000);
    expect(backoffDelayMs(60, POLICY, top)).toBeLessThanOrEqual(1_000);
  });

  it('does not overflow to NaN after very many retries', () => {
    expect(backoffDelayMs(5_000, POLICY, () => 0.5)).toBe(500);
  });

  it('uses full jitter: the delay is random() times the ceiling, from 0 up', () => {
    expect(backoffDelayMs(2, POLICY, () => 0)).toBe(0);
    expect(backoffDelayMs(2, POLICY, () => 0.25)).toBe(100);
    expect(backoffDelayMs(2, POLICY, () => 0.5)).toBe(200);
  });

  it('stays within [0, ceiling] over many real random draws', () => {
    for (let i = 0; i < 1_000; i += 1) {
      const delay = backoffDelayMs(3, POLICY, Math.random);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(800);
    }
  });

  it('clamps a random() that strays outside [0, 1)', () => {
    expect(backoffDelayMs(0, POLICY, () => -3)).toBe(0);
    expect(backoffDelayMs(0, POLICY, () => 7)).toBe(100);
    expect(backoffDelayMs(0, POLICY, () => Number.NaN)).toBe(0);
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds as milliseconds', () => {
    expect(parseRetryAfter('5', NOW)).toBe(5_000);
    expect(parseRetryAfter('0', NOW)).toBe(0);
    expect(parseRetryAfter(' 12 ', NOW)).toBe(12_000);
  });

  it('reads an IMF-fixdate as the time left until it', () => {
    expect(parseRetryAfter(new Date(NOW + 30_000).toUTCString(), NOW)).toBe(30_000);
    expect(parseRetryAfter('Thu, 15 Jan 2026 12:00:07 GMT', NOW)).toBe(7_000);
  });

  it('reads the obsolete rfc850-date and asctime-date formats (RFC 9110 §5.6.7), in GMT', () => {
    expect(parseRetryAfter('Thursday, 15-Jan-26 12:00:09 GMT', NOW)).toBe(9_000);
    expect(parseRetryAfter('Thu Jan 15 12:00:11 2026', NOW)).toBe(11_000);
    expect(parseRetryAfter('Thu Jan  1 12:00:00 2026', Date.UTC(2025, 11, 31, 12))).toBe(86_400_000);
  });

  it('asks for no wait when the date is in the past', () => {
    expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', NOW)).toBe(0);
  });

  it('ignores values that are neither delta-seconds nor an HTTP-date', () => {
    for (const value of ['', 'soon', '5.5', '-1', '1e3', '2026-01-15T12:00:00Z', 'Thu, 31 Feb 2026 12:00:00 GMT', 'Thu, 15 Jan 2026 25:00:00 GMT']) {
      expect(parseRetryAfter(value, NOW), value).toBeUndefined();
    }
    expect(parseRetryAfter(undefined, NOW)).toBeUndefined();
  });

  it('takes the first of repeated headers', () => {
    expect(parseRetryAfter(['3', '9'], NOW)).toBe(3_000);
  });

  it('maps a two-digit rfc850 year more than 50 years ahead into the past', () => {
    expect(new Date(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', NOW) ?? 0).toISOString()).toBe('1994-11-06T08:49:37.000Z');
    expect(new Date(parseHttpDate('Sunday, 06-Nov-33 08:49:37 GMT', NOW) ?? 0).getUTCFullYear()).toBe(2033);
  });
});

describe('retryability', () => {
  it('retries 429 and every 5xx', () => {
    for (const status of [429, 500, 502, 503, 504, 599]) expect(isRetryableStatus(status), String(status)).toBe(true);
  });

  it('never retries any other 4xx, nor 2xx or 3xx', () => {
    for (const status of [200, 204, 301, 400, 401, 403, 404, 409, 413, 415, 422, 428, 431, 451]) {
      expect(isRetryableStatus(status), String(status)).toBe(false);
    }
  });

  it('retries resets, refusals, broken pipes, hang-ups and timeouts', () => {
    for (const code of ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN']) {
      expect(isRetryableNetworkError(Object.assign(new Error('x'), { code })), code).toBe(true);
    }
    expect(isRetryableNetworkError(new Error('socket hang up'))).toBe(true);
  });

  it('does not retry TLS verification failures, unknown hosts or arbitrary errors', () => {
    for (const code of ['DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ENOTFOUND', undefined]) {
      expect(isRetryableNetworkError(Object.assign(new Error('x'), { code })), String(code)).toBe(false);
    }
    expect(isRetryableNetworkError('ECONNRESET')).toBe(false);
    expect(isRetryableNetworkError(null)).toBe(false);
  });
});

describe('planRetry', () => {
  const state = { retriesDone: 0, nowMs: NOW, deadlineMs: NOW + 10_000 };

  it('retries after the jittered backoff while retries and time remain', () => {
    expect(planRetry(POLICY, state, () => 0.5)).toEqual({ action: 'retry', delayMs: 50 });
    expect(planRetry(POLICY, { ...state, retriesDone: 2 }, () => 0.5)).toEqual({ action: 'retry', delayMs: 200 });
  });

  it('gives up as exhausted once every retry was made', () => {
    expect(planRetry(POLICY, { ...state, retriesDone: 3 }, () => 0.5)).toEqual({ action: 'give-up', reason: 'exhausted' });
    expect(planRetry({ ...POLICY, retries: 0 }, state, () => 0.5)).toEqual({ action: 'give-up', reason: 'exhausted' });
  });

  it('takes Retry-After as a floor on the delay, even above maxDelayMs', () => {
    expect(planRetry(POLICY, { ...state, retryAfterMs: 2_000 }, () => 0.5)).toEqual({ action: 'retry', delayMs: 2_000 });
  });

  it('keeps the backoff when it is longer than Retry-After', () => {
    expect(planRetry(POLICY, { ...state, retriesDone: 2, retryAfterMs: 10 }, top).action).toBe('retry');
    expect((planRetry(POLICY, { ...state, retriesDone: 2, retryAfterMs: 10 }, () => 0.5) as { delayMs: number }).delayMs).toBe(200);
  });

  it('gives up on the deadline when Retry-After would pass it', () => {
    expect(planRetry(POLICY, { ...state, retryAfterMs: 10_000 }, () => 0)).toEqual({ action: 'give-up', reason: 'deadline' });
    expect(planRetry(POLICY, { ...state, retryAfterMs: 60_000 }, () => 0)).toEqual({ action: 'give-up', reason: 'deadline' });
  });

  it('never plans a sleep that reaches the deadline', () => {
    expect(planRetry(POLICY, { ...state, retriesDone: 3, deadlineMs: NOW + 100 }, () => 0.5)).toEqual({ action: 'give-up', reason: 'exhausted' });
    expect(planRetry(POLICY, { ...state, retriesDone: 2, deadlineMs: NOW + 100 }, top)).toEqual({ action: 'give-up', reason: 'deadline' });
  });

  it('gives up on the deadline, not as exhausted, once the deadline has passed', () => {
    expect(planRetry(POLICY, { ...state, retriesDone: 3, nowMs: NOW + 10_000 }, () => 0)).toEqual({ action: 'give-up', reason: 'deadline' });
  });
});

/** A fake clock whose sleep only moves the time forward, so nothing waits for real. */
function fakeClock(start = NOW): { now: () => number; sleep: (ms: number) => Promise<void>; slept: number[] } {
  let time = start;
  const slept: number[] = [];
  return {
    now: () => time,
    sleep: async (ms) => {
      slept.push(ms);
      time += ms;
    },
    slept,
  };
}

const unavailable = (retryAfterMs?: number): AttemptResult<string> => ({ ok: false, error: new Error('503'), retryable: true, retryAfterMs });

describe('runWithRetries', () => {
  it('returns the first success', async () => {
    const clock = fakeClock();
    const results = [unavailable(), unavailable(), { ok: true as const, value: 'done' }];
    const attempts: number[] = [];
    const value = await runWithRetries(async (n) => {
      attempts.push(n);
      return results[n - 1] as AttemptResult<string>;
    }, { policy: POLICY, deadlineMs: NOW + 10_000, timeoutMs: 10_000, random: () => 0.5, ...clock });
    expect(value).toBe('done');
    expect(attempts).toEqual([1, 2, 3]);
    expect(clock.slept).toEqual([50, 100]);
  });

  it('ends with ServiceUnavailableError after retries + 1 attempts, keeping the last failure as cause', async () => {
    const clock = fakeClock();
    const last = new Error('last');
    let calls = 0;
    const error = await runWithRetries<string>(async () => {
      calls += 1;
      return { ok: false, error: calls === 4 ? last : new Error('earlier'), retryable: true };
    }, { policy: POLICY, deadlineMs: NOW + 60_000, timeoutMs: 60_000, random: () => 0.5, ...clock }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).attempts).toBe(4);
    expect((error as Error).cause).toBe(last);
    expect(calls).toBe(4);
  });

  it('ends at once with ServiceUnavailableError on a failure that is not retryable', async () => {
    const clock = fakeClock();
    let calls = 0;
    const error = await runWithRetries<string>(async () => {
      calls += 1;
      return { ok: false, error: new Error('bad certificate'), retryable: false };
    }, { policy: POLICY, deadlineMs: NOW + 60_000, timeoutMs: 60_000, random: () => 0.5, ...clock }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(calls).toBe(1);
    expect(clock.slept).toEqual([]);
  });

  it('lets whatever an attempt throws end the call as it is', async () => {
    const clock = fakeClock();
    const refusal = new Error('403');
    await expect(
      runWithRetries<string>(async () => {
        throw refusal;
      }, { policy: POLICY, deadlineMs: NOW + 1_000, timeoutMs: 1_000, random: () => 0.5, ...clock }),
    ).rejects.toBe(refusal);
  });

  it('waits at least Retry-After, and stops with DeadlineExceededError without sleeping when it passes the deadline', async () => {
    const clock = fakeClock();
    let calls = 0;
    const error = await runWithRetries<string>(async () => {
      calls += 1;
      return unavailable(calls === 1 ? 2_000 : 30_000);
    }, { policy: POLICY, deadlineMs: NOW + 10_000, timeoutMs: 10_000, random: () => 0, ...clock }).catch((e: unknown) => e);
    expect(clock.slept).toEqual([2_000]);
    expect(calls).toBe(2);
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect((error as Error).message).toContain('10000 ms');
  });

  it('never sleeps past the deadline', async () => {
    const clock = fakeClock();
    const error = await runWithRetries<string>(async () => unavailable(), {
      policy: { retries: 50, baseDelayMs: 100, maxDelayMs: 1_000 },
      deadlineMs: NOW + 2_500,
      timeoutMs: 2_500,
      random: () => 0.9,
      ...clock,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeadlineExceededError);
    // 90 + 180 + 360 + 720 + 900 ms; the next 900 ms would reach the deadline, so the call stops there.
    expect(clock.slept).toEqual([90, 180, 360, 720, 900]);
    expect(clock.now()).toBeLessThan(NOW + 2_500);
  });

  it('passes the signal to sleep', async () => {
    const signals: Array<AbortSignal | undefined> = [];
    const controller = new AbortController();
    let calls = 0;
    await runWithRetries<string>(async () => (calls++ === 0 ? unavailable() : { ok: true, value: 'x' }), {
      policy: POLICY,
      deadlineMs: NOW + 1_000,
      timeoutMs: 1_000,
      random: () => 0,
      now: () => NOW,
      sleep: async (_ms, signal) => {
        signals.push(signal);
      },
      signal: controller.signal,
    });
    expect(signals).toEqual([controller.signal]);
  });
});
