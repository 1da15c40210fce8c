import type { Clock } from '../lib/clock.js';

/** Access keys whose buckets are kept; past it the oldest are dropped (and start again full). */
const MAX_TRACKED_KEYS = 10_000;

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * A request rate per access key, as AWS KMS's request quotas: a token bucket that holds one second's worth, so a
 * burst up to the rate passes and a steady excess is refused. It is per replica: N replicas allow N times the rate.
 */
export class RequestQuota {
  readonly #perSecond: number;
  readonly #clock: Clock;
  readonly #buckets = new Map<string, Bucket>();

  /** `perSecond` 0 allows everything. */
  constructor(perSecond: number, clock: Clock) {
    this.#perSecond = perSecond;
    this.#clock = clock;
  }

  /** Takes one request from the key's bucket; false when it is empty. */
  take(accessKeyId: string): boolean {
    if (this.#perSecond === 0) return true;
    const now = this.#clock.now().getTime();
    let bucket = this.#buckets.get(accessKeyId);
    if (bucket === undefined) {
      if (this.#buckets.size >= MAX_TRACKED_KEYS) this.#buckets.delete(this.#buckets.keys().next().value as string);
      bucket = { tokens: this.#perSecond, updatedAt: now };
      this.#buckets.set(accessKeyId, bucket);
    } else {
      bucket.tokens = Math.min(this.#perSecond, bucket.tokens + ((now - bucket.updatedAt) * this.#perSecond) / 1000);
      bucket.updatedAt = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
