import { callerOf } from '../../../src/context/caller.js';
import { describe, expect, it } from 'vitest';
import { PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { EMPTY_POLICY_SET } from '../../../src/policy/evaluate.js';
import type { StoredToken } from '../../../src/tokens/token-repository.js';
import { principalOf, TokenService } from '../../../src/tokens/token-service.js';
import { ManualClock } from '../../helpers/clock.js';
import { LookupGate } from '../../helpers/fakes/gate.js';
import { InMemoryTokenRepository } from '../../helpers/fakes/in-memory-token-repository.js';

/** The in-memory repository, whose lookups a test can hold after they read, to race them against a revocation. */
class HeldTokenRepository extends InMemoryTokenRepository {
  readonly #gate = new LookupGate();

  override async findByHash(secretHash: string): Promise<StoredToken | undefined> {
    const found = await super.findByHash(secretHash);
    await this.#gate.pass();
    return found;
  }

  holdLookups(): () => void {
    return this.#gate.close();
  }
}

function fakeRepository() {
  const repository = new HeldTokenRepository();
  return { repository, lookups: () => repository.reads.findByHash, holdLookups: () => repository.holdLookups() };
}

describe('TokenService', () => {
  const admin = principalOf({ id: 'a', name: 'root', admin: true, createdAt: new Date(), expiresAt: null, revokedAt: null });

  it('answers a verified token from memory, without another lookup', async () => {
    const store = fakeRepository();
    const tokens = new TokenService({ repository: store.repository, authorizer: new PolicyAuthorizer(() => EMPTY_POLICY_SET), clock: new ManualClock(), cacheTtlMs: 5000 });
    const issued = await tokens.issue('app', false);
    expect((await tokens.authenticate(issued.token))?.id).toBe('token:app');
    expect(tokens.authenticate(issued.token)).toMatchObject({ id: 'token:app' });
    expect(store.lookups()).toBe(1);
  });

  it('a lookup that read the store before a revocation is not cached after it', async () => {
    const store = fakeRepository();
    const tokens = new TokenService({ repository: store.repository, authorizer: new PolicyAuthorizer(() => EMPTY_POLICY_SET), clock: new ManualClock(), cacheTtlMs: 5000 });
    const issued = await tokens.issue('app', false);
    const release = store.holdLookups();
    const racing = tokens.authenticate(issued.token);
    await tokens.revoke(callerOf(admin), issued.id);
    release();
    await racing;
    expect(await tokens.authenticate(issued.token)).toBeUndefined();
  });

  it('a revoked token stops working at once on this replica', async () => {
    const store = fakeRepository();
    const tokens = new TokenService({ repository: store.repository, authorizer: new PolicyAuthorizer(() => EMPTY_POLICY_SET), clock: new ManualClock(), cacheTtlMs: 5000 });
    const issued = await tokens.issue('app', false);
    await tokens.authenticate(issued.token);
    await tokens.revoke(callerOf(admin), issued.id);
    expect(await tokens.authenticate(issued.token)).toBeUndefined();
  });

  it('an expired token is refused even from the cache', async () => {
    const clock = new ManualClock();
    const store = fakeRepository();
    const tokens = new TokenService({ repository: store.repository, authorizer: new PolicyAuthorizer(() => EMPTY_POLICY_SET), clock, cacheTtlMs: 3_600_000 });
    const issued = await tokens.issue('app', false, 60);
    expect(await tokens.authenticate(issued.token)).toBeDefined();
    clock.advance(60_000);
    expect(await tokens.authenticate(issued.token)).toBeUndefined();
  });
});
