import type { Clock } from '../lib/clock.js';
import { UnavailableError } from '../errors.js';
import { EMPTY_POLICY_SET, PolicySet } from './evaluate.js';
import { compilePolicy } from './policy.js';
import type { PolicyRepository } from './policy-repository.js';

export interface PolicyStoreOptions {
  readonly repository: PolicyRepository;
  readonly clock: Clock;
  /** How long the compiled set is trusted before it is read again, which is how other replicas' writes arrive. */
  readonly ttlMs: number;
}

/**
 * The compiled policy set every decision reads, in memory. It is reloaded (once for all waiting requests) right
 * after this replica writes a policy, when the change feed reports another replica's write, and when it is older
 * than the TTL, a backstop. A load that started before a newer one finished is discarded.
 */
export class PolicyStore {
  readonly #repository: PolicyRepository;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  #current: PolicySet = EMPTY_POLICY_SET;
  #loadedAt = Number.NEGATIVE_INFINITY;
  #loading: Promise<void> | undefined;
  #started = 0;
  #applied = 0;
  /** The load count when the set was last invalidated: loads up to it may have read the store before the write. */
  #invalidatedAt = 0;

  constructor(options: PolicyStoreOptions) {
    this.#repository = options.repository;
    this.#clock = options.clock;
    this.#ttlMs = options.ttlMs;
  }

  /** The set decisions use now. Call {@link ensureFresh} first in the request. */
  current(): PolicySet {
    return this.#current;
  }

  /** Nothing to wait for while the set is fresh (the hot path); otherwise the reload in flight. */
  ensureFresh(): void | Promise<void> {
    if (this.#clock.now().getTime() - this.#loadedAt < this.#ttlMs) return undefined;
    if (this.#loading !== undefined) return this.#loading;
    const loading = this.reload().finally(() => {
      if (this.#loading === loading) this.#loading = undefined;
    });
    this.#loading = loading;
    return loading;
  }

  /**
   * Marks the set stale after a policy write on any replica: the next request reloads it and waits. A load that
   * started before this call is applied but not trusted, since it may have read the store before the write.
   */
  invalidate(): void {
    this.#invalidatedAt = this.#started;
    this.#loadedAt = Number.NEGATIVE_INFINITY;
    this.#loading = undefined;
  }

  /** Reads and compiles every stored policy, without touching the set in use: 503 when that cannot be done. */
  async read(): Promise<PolicySet> {
    try {
      const stored = await this.#repository.all();
      return new PolicySet(stored.map((policy) => compilePolicy(policy.name, policy.document)));
    } catch (error) {
      throw new UnavailableError('The access policies cannot be loaded; retry later', { cause: error });
    }
  }

  /**
   * Reloads the set in use. A stored policy that no longer compiles fails the load: skipping it could
   * drop a deny, so requests fail closed (503) until it is fixed.
   */
  async reload(): Promise<void> {
    this.#started += 1;
    const sequence = this.#started;
    const startedAt = this.#clock.now().getTime();
    const set = await this.read();
    if (sequence > this.#applied) {
      this.#applied = sequence;
      this.#current = set;
      if (sequence > this.#invalidatedAt) this.#loadedAt = startedAt;
    }
  }
}
