import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EncryptionContext } from '../../../src/crypto/encryption-context.js';
import type { Principal } from '../../../src/context/principal.js';
import { KEY_ACTIONS, type Action } from '../../../src/context/actions.js';
import { PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { allowedInSomeContext, evaluate, KEY_USE_ACTIONS, mayEverUseKey, PolicySet } from '../../../src/policy/evaluate.js';
import { compilePolicy, type StatementDocument } from '../../../src/policy/policy.js';

function workload(id: string, attributes: Record<string, string>): Principal {
  return Object.freeze({ id, type: 'kubernetes', admin: false, attributes: Object.freeze(attributes) });
}

const PAYMENTS_API = workload('k8s:payments:api', { namespace: 'payments', serviceAccount: 'api' });
const NO_NAMESPACE = workload('k8s:payments:batch', { serviceAccount: 'batch' });

function set(statements: StatementDocument[]): PolicySet {
  return new PolicySet([compilePolicy('p', { statements })]);
}

/** The README's payments policy: every use of the key is conditioned on the caller's own namespace in the context. */
const CONDITIONED = set([
  {
    effect: 'allow',
    principals: ['k8s:payments:*'],
    actions: ['datakey', 'encrypt', 'decrypt', 'rewrap'],
    keys: ['${principal.namespace}.*'],
    conditions: { context: { namespace: '${principal.namespace}' } },
  },
]);

describe('mayEverUseKey', () => {
  it('counts an allow conditioned on the context: some context satisfies it', () => {
    expect(evaluate(CONDITIONED, PAYMENTS_API, 'decrypt', { keyName: 'payments.orders' }, undefined).allowed).toBe(false);
    expect(mayEverUseKey(CONDITIONED, PAYMENTS_API, 'payments.orders')).toBe(true);
  });

  it('does not count a key the grant does not name', () => {
    expect(mayEverUseKey(CONDITIONED, PAYMENTS_API, 'payroll.salaries')).toBe(false);
  });

  it('does not count a conditioned allow whose variable the caller lacks', () => {
    const statements = set([
      { effect: 'allow', principals: ['k8s:*'], actions: ['decrypt'], keys: ['*'], conditions: { context: { ns: '${principal.namespace}' } } },
    ]);
    expect(mayEverUseKey(statements, NO_NAMESPACE, 'payments.orders')).toBe(false);
  });

  it('is removed by an unconditional deny of the key', () => {
    const statements = set([
      { effect: 'allow', principals: ['k8s:payments:*'], actions: ['decrypt'], keys: ['payments.*'], conditions: { context: { tenant: 'acme' } } },
      { effect: 'deny', principals: ['k8s:*'], actions: ['*'], keys: ['payments.orders'] },
    ]);
    expect(mayEverUseKey(statements, PAYMENTS_API, 'payments.orders')).toBe(false);
    expect(mayEverUseKey(statements, PAYMENTS_API, 'payments.refunds')).toBe(true);
  });

  it('is not removed by a deny that a wider context avoids', () => {
    const statements = set([
      { effect: 'allow', principals: ['k8s:*'], actions: ['decrypt'], keys: ['*'], conditions: { context: { tenant: 'acme' } } },
      { effect: 'deny', principals: ['k8s:*'], actions: ['decrypt'], keys: ['*'], conditions: { context: { tenant: 'globex' } } },
    ]);
    expect(mayEverUseKey(statements, PAYMENTS_API, 'payments.orders')).toBe(true);
  });

  it('is removed by a deny whose condition every allowed context meets', () => {
    const statements = set([
      { effect: 'allow', principals: ['k8s:*'], actions: ['decrypt'], keys: ['*'], conditions: { context: { tenant: 'acme', env: 'prod' } } },
      { effect: 'deny', principals: ['k8s:*'], actions: ['decrypt'], keys: ['*'], conditions: { context: { env: 'prod' } } },
    ]);
    expect(mayEverUseKey(statements, PAYMENTS_API, 'payments.orders')).toBe(false);
  });

  it('never counts a keys:read grant conditioned on a context: reading a key carries none', () => {
    const statements = set([
      { effect: 'allow', principals: ['k8s:*'], actions: ['keys:read'], keys: ['*'], conditions: { context: { tenant: 'acme' } } },
    ]);
    expect(mayEverUseKey(statements, PAYMENTS_API, 'payments.orders')).toBe(false);
  });

  it('is true for an admin through the authorizer, whatever the policies', () => {
    const admin: Principal = Object.freeze({ id: 'token:root', type: 'token', admin: true, attributes: Object.freeze({}) });
    expect(new PolicyAuthorizer(() => set([])).mayEverUseKey(admin, 'anything')).toBe(true);
    expect(new PolicyAuthorizer(() => CONDITIONED).mayEverUseKey(PAYMENTS_API, 'payments.orders')).toBe(true);
  });
});

/*
 * The request path decides with `evaluate` on the request's context; the event filter and the concealment of keys
 * a caller may not use decide with `allowedInSomeContext`. They must agree: on random policies over a small universe
 * of keys, principals, actions and context pairs, `allowedInSomeContext` is true exactly when some context in that
 * universe is allowed. Every value a policy can require is in the universe, so the brute force is complete.
 */
const KEYS = ['payments.orders', 'payments.refunds', 'payroll.salaries'] as const;
const KEY_GLOBS = ['*', 'payments.*', 'payments.orders', '${principal.namespace}.*', '*.salaries', 'payroll.*'];
const PRINCIPAL_GLOBS = ['*', 'k8s:payments:*', 'k8s:payroll:*', 'k8s:*:api'];
const CONTEXT_KEYS = ['tenant', 'env'] as const;
const CONTEXT_VALUES = ['acme', 'prod', '', '${principal.namespace}', '${principal.podName}'];
const RANDOM_ACTIONS: readonly Action[] = ['datakey', 'decrypt', 'rewrap', 'keys:read', 'rewrap-revoked'];
const PRINCIPALS = [
  PAYMENTS_API,
  workload('k8s:payroll:api', { namespace: 'payroll', serviceAccount: 'api', podName: 'acme' }),
  NO_NAMESPACE,
];
/** Every value a context entry can take in the brute force; `undefined` leaves the key out. */
const UNIVERSE_VALUES = [undefined, 'acme', 'prod', '', 'payments', 'payroll', 'other'];

const statementArbitrary: fc.Arbitrary<StatementDocument> = fc.record({
  effect: fc.constantFrom('allow' as const, 'deny' as const),
  principals: fc.subarray(PRINCIPAL_GLOBS, { minLength: 1 }),
  actions: fc.oneof(fc.constant(['*']), fc.subarray([...RANDOM_ACTIONS], { minLength: 1 })),
  keys: fc.subarray(KEY_GLOBS, { minLength: 1 }),
  conditions: fc.record({
    context: fc.dictionary(fc.constantFrom(...CONTEXT_KEYS), fc.constantFrom(...CONTEXT_VALUES), { maxKeys: 2 }),
  }),
});

function everyContext(): EncryptionContext[] {
  const contexts: EncryptionContext[] = [];
  for (const tenant of UNIVERSE_VALUES) {
    for (const env of UNIVERSE_VALUES) {
      const context: Record<string, string> = {};
      if (tenant !== undefined) context.tenant = tenant;
      if (env !== undefined) context.env = env;
      contexts.push(context);
    }
  }
  return contexts;
}

const CONTEXTS = everyContext();

describe('allowedInSomeContext agrees with evaluate', () => {
  it('on random policies: true exactly when some context is allowed', () => {
    fc.assert(
      fc.property(fc.array(statementArbitrary, { minLength: 1, maxLength: 6 }), (statements) => {
        const policies = set(statements);
        for (const principal of PRINCIPALS) {
          for (const keyName of KEYS) {
            for (const action of RANDOM_ACTIONS) {
              expect(KEY_ACTIONS.has(action)).toBe(true);
              // keys:read requests never carry a context; the others may carry any.
              const contexts = action === 'keys:read' ? [undefined] : [undefined, ...CONTEXTS];
              const brute = contexts.some((context) => evaluate(policies, principal, action, { keyName }, context).allowed);
              expect(allowedInSomeContext(policies, principal, action, { keyName }), `${principal.id} ${action} ${keyName}`).toBe(brute);
            }
            const anyUse = KEY_USE_ACTIONS.some((action) => allowedInSomeContext(policies, principal, action, { keyName }));
            expect(mayEverUseKey(policies, principal, keyName)).toBe(anyUse);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
