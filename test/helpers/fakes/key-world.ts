import { callerOf, type Caller } from '../../../src/context/caller.js';
import type { Principal } from '../../../src/context/principal.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { EnvelopeService } from '../../../src/keys/envelope-service.js';
import { KeyCache } from '../../../src/keys/key-cache.js';
import { KeyService } from '../../../src/keys/key-service.js';
import { PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { PolicySet } from '../../../src/policy/evaluate.js';
import { compilePolicy, type StatementDocument } from '../../../src/policy/policy.js';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { ManualClock } from '../clock.js';
import { InMemoryKeyRepository } from './in-memory-key-repository.js';

export const ADMIN: Principal = Object.freeze({ id: 'token:admin', type: 'token', admin: true, attributes: Object.freeze({}) });
export const WORKER: Principal = Object.freeze({ id: 'token:worker', type: 'token', admin: false, attributes: Object.freeze({}) });

/**
 * The key services over in-memory storage: no I/O. `statements` are what a policy allows `token:worker` (each
 * defaults to allow, for that principal, on every key).
 */
export function keyWorld(statements: Array<Partial<StatementDocument>> = [], options: { ttlMs?: number } = {}) {
  const policies = new PolicySet([
    compilePolicy('p', {
      statements: statements.map((statement) => ({ effect: 'allow', principals: [WORKER.id], actions: ['encrypt'], keys: ['*'], ...statement })),
    }),
  ]);
  const clock = new ManualClock();
  const rootKey = new LocalRootKey(SecretBytes.random(32));
  const repository = new InMemoryKeyRepository();
  const authorizer = new PolicyAuthorizer(() => policies);
  const cache = new KeyCache({ repository, rootKey, clock, ttlMs: options.ttlMs ?? 5000 });
  const keys = new KeyService({ repository, cache, rootKey, authorizer, clock });
  const envelope = new EnvelopeService({ cache, authorizer, clock });
  return { clock, rootKey, repository, cache, keys, envelope, admin: (): Caller => callerOf(ADMIN), worker: (): Caller => callerOf(WORKER) };
}
