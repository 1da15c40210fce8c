import { callerOf } from '../../../src/context/caller.js';
import { describe, expect, it } from 'vitest';
import type { EncryptionContext } from '../../../src/crypto/encryption-context.js';
import { KeyholdError } from '../../../src/errors.js';
import type { Principal } from '../../../src/context/principal.js';
import { ACTIONS, EXPLICIT_ONLY_ACTIONS, KEY_ACTIONS, type Action } from '../../../src/context/actions.js';
import { forbidden, PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { ADMIN_DECISION, allowedKeyPrefixes, EMPTY_POLICY_SET, evaluate, PolicySet } from '../../../src/policy/evaluate.js';
import { compilePolicy, type StatementDocument } from '../../../src/policy/policy.js';
import type { Decision } from '../../../src/context/decision.js';

type Statement = Partial<StatementDocument>;

/** A set of policies, by name, each a list of statements that default to allowing everything to everyone. */
function policies(byName: Record<string, Statement[]>): PolicySet {
  return new PolicySet(
    Object.entries(byName).map(([name, statements]) =>
      compilePolicy(name, {
        statements: statements.map((statement) => ({ effect: 'allow', principals: ['*'], actions: ['*'], keys: ['*'], ...statement })),
      }),
    ),
  );
}

function workload(id: string, attributes: Record<string, string> = {}): Principal {
  const type = id.startsWith('k8s:') ? 'kubernetes' : id.startsWith('spiffe://') ? 'spiffe' : 'token';
  return Object.freeze({ id, type, admin: false, attributes: Object.freeze(attributes) });
}

const CI = workload('token:ci', { tokenId: '00000000-0000-4000-8000-000000000001', tokenName: 'ci' });
const PAYMENTS_API = workload('k8s:payments:api', { namespace: 'payments', serviceAccount: 'api' });
const ADMIN: Principal = Object.freeze({ id: 'token:root', type: 'token', admin: true, attributes: Object.freeze({ tokenName: 'root' }) });

const NON_KEY_ACTIONS = ACTIONS.filter((action) => !KEY_ACTIONS.has(action));

function decide(
  set: PolicySet,
  action: Action,
  key: string | undefined,
  options: { who?: Principal; context?: EncryptionContext; complete?: boolean } = {},
): Decision {
  return evaluate(set, options.who ?? PAYMENTS_API, action, { keyName: key }, options.context, options.complete);
}

describe('evaluate: deny by default', () => {
  it('denies when there are no policies', () => {
    expect(decide(EMPTY_POLICY_SET, 'encrypt', 'payments-db')).toEqual({ allowed: false, reason: 'no-matching-allow', matched: [] });
  });

  it.each(ACTIONS)('denies %s when there are no policies', (action) => {
    expect(decide(EMPTY_POLICY_SET, action, 'payments-db').allowed).toBe(false);
  });

  it.each<[string, Statement]>([
    ['another principal', { principals: ['k8s:payroll:*'] }],
    ['another action', { actions: ['decrypt'] }],
    ['another key', { keys: ['payroll-*'] }],
    ['an unmet context condition', { conditions: { context: { env: 'prod' } } }],
  ])('denies when the only allow is for %s', (_label, statement) => {
    expect(decide(policies({ p: [{ actions: ['encrypt'], ...statement }] }), 'encrypt', 'payments-db')).toEqual({
      allowed: false,
      reason: 'no-matching-allow',
      matched: [],
    });
  });

  it('denies a key action that names no key', () => {
    expect(decide(policies({ p: [{}] }), 'encrypt', undefined).allowed).toBe(false);
  });
});

describe('evaluate: allow', () => {
  // [label, statement, principal, action, key, allowed]
  it.each<[string, Statement, Principal, Action, string, boolean]>([
    ['an exact principal, action and key', { principals: ['k8s:payments:api'], actions: ['encrypt'], keys: ['payments-db'] }, PAYMENTS_API, 'encrypt', 'payments-db', true],
    ['a principal glob', { principals: ['k8s:payments:*'], actions: ['encrypt'], keys: ['payments-db'] }, PAYMENTS_API, 'encrypt', 'payments-db', true],
    ['a principal glob that another namespace does not match', { principals: ['k8s:payments:*'], actions: ['encrypt'], keys: ['*'] }, workload('k8s:payroll:api'), 'encrypt', 'payments-db', false],
    ['a principal glob that a longer namespace does not match', { principals: ['k8s:payments:*'], actions: ['encrypt'], keys: ['*'] }, workload('k8s:payments2:api'), 'encrypt', 'payments-db', false],
    ['a key glob', { principals: ['*'], actions: ['decrypt'], keys: ['payments-*'] }, PAYMENTS_API, 'decrypt', 'payments-cards', true],
    ['a key glob that another key does not match', { principals: ['*'], actions: ['decrypt'], keys: ['payments-*'] }, PAYMENTS_API, 'decrypt', 'payroll-cards', false],
    ['one of several key globs', { keys: ['payroll-*', 'payments-*'], actions: ['decrypt'] }, PAYMENTS_API, 'decrypt', 'payments-cards', true],
    ['one of several principal globs', { principals: ['token:other', 'k8s:payments:*'], actions: ['decrypt'] }, PAYMENTS_API, 'decrypt', 'payments-cards', true],
    ['one of several actions', { actions: ['encrypt', 'decrypt'], keys: ['payments-*'] }, PAYMENTS_API, 'decrypt', 'payments-cards', true],
    ['a listed action, not another', { actions: ['encrypt'], keys: ['payments-*'] }, PAYMENTS_API, 'decrypt', 'payments-cards', false],
    ['"*" actions for a key action', { actions: ['*'], keys: ['payments-*'] }, PAYMENTS_API, 'keys:rotate', 'payments-cards', true],
    ['a SPIFFE principal glob', { principals: ['spiffe://example.org/ns/payments/*'], keys: ['*'] }, workload('spiffe://example.org/ns/payments/sa/api'), 'encrypt', 'k', true],
    ['a token principal', { principals: ['token:ci'], keys: ['*'] }, CI, 'encrypt', 'k', true],
    ['a token principal glob that does not match by prefix', { principals: ['token:ci'], keys: ['*'] }, workload('token:ci2'), 'encrypt', 'k', false],
  ])('%s → %s', (_label, statement, who, action, key, allowed) => {
    expect(decide(policies({ p: [statement] }), action, key, { who }).allowed).toBe(allowed);
  });

  it.each(ACTIONS.filter((action) => !EXPLICIT_ONLY_ACTIONS.has(action)))('"*" actions with "*" keys grant %s', (action) => {
    expect(decide(policies({ p: [{ actions: ['*'], keys: ['*'] }] }), action, 'payments-db').allowed).toBe(true);
  });

  it('reports the reason "allowed"', () => {
    expect(decide(policies({ p: [{}] }), 'encrypt', 'payments-db').reason).toBe('allowed');
  });
});

describe('evaluate: rewrap-revoked is granted only by a statement that lists it', () => {
  it('is one of the two explicit-only actions, with aws-credentials:write', () => {
    expect([...EXPLICIT_ONLY_ACTIONS]).toEqual(['rewrap-revoked', 'aws-credentials:write']);
  });

  it('"*" actions with "*" keys do not grant aws-credentials:write either; listing it does', () => {
    expect(decide(policies({ p: [{ actions: ['*'], keys: ['*'] }] }), 'aws-credentials:write', undefined).allowed).toBe(false);
    expect(decide(policies({ p: [{ actions: ['aws-credentials:write'], keys: ['*'] }] }), 'aws-credentials:write', undefined).allowed).toBe(true);
  });

  it('"*" actions with "*" keys do not grant it', () => {
    const decision = decide(policies({ p: [{ actions: ['*'], keys: ['*'] }] }), 'rewrap-revoked', 'payments-db');
    expect(decision).toEqual({ allowed: false, reason: 'no-matching-allow', matched: [] });
  });

  it('"*" actions on the key itself do not grant it', () => {
    expect(decide(policies({ p: [{ actions: ['*'], keys: ['payments-db'] }] }), 'rewrap-revoked', 'payments-db').allowed).toBe(false);
  });

  it('a statement that lists it grants it', () => {
    expect(decide(policies({ p: [{ actions: ['rewrap-revoked'], keys: ['payments-*'] }] }), 'rewrap-revoked', 'payments-db').allowed).toBe(true);
  });

  it('a statement that lists it beside "*" grants it', () => {
    expect(decide(policies({ p: [{ actions: ['*', 'rewrap-revoked'], keys: ['*'] }] }), 'rewrap-revoked', 'payments-db').allowed).toBe(true);
  });

  it('listing it grants nothing else', () => {
    const set = policies({ p: [{ actions: ['rewrap-revoked'], keys: ['*'] }] });
    for (const action of ACTIONS.filter((other) => other !== 'rewrap-revoked')) {
      expect(decide(set, action, 'payments-db').allowed, action).toBe(false);
    }
  });

  it('a deny with "*" actions does deny it: a broad deny stays broad', () => {
    const set = policies({ p: [{ actions: ['rewrap-revoked'], keys: ['*'] }, { effect: 'deny', actions: ['*'], keys: ['payments-*'] }] });
    expect(decide(set, 'rewrap-revoked', 'payments-db').reason).toBe('explicit-deny');
  });
});

describe('evaluate: actions that are not about a key are granted only by statements whose keys include the bare "*"', () => {
  it.each(NON_KEY_ACTIONS)('keys ["payments-*"] with actions ["*"] do not grant %s', (action) => {
    expect(decide(policies({ p: [{ actions: ['*'], keys: ['payments-*'] }] }), action, undefined).allowed).toBe(false);
  });

  it.each(NON_KEY_ACTIONS)('keys ["payments-*"] naming %s explicitly do not grant it', (action) => {
    expect(decide(policies({ p: [{ actions: [action], keys: ['payments-*'] }] }), action, undefined).allowed).toBe(false);
  });

  it.each(NON_KEY_ACTIONS)('keys ["*-db"] do not grant %s, although "*-db" could match anything ending in -db', (action) => {
    expect(decide(policies({ p: [{ actions: [action], keys: ['*-db'] }] }), action, undefined).allowed).toBe(false);
  });

  it.each(NON_KEY_ACTIONS)('keys ["*"] grant %s', (action) => {
    expect(decide(policies({ p: [{ actions: [action], keys: ['*'] }] }), action, undefined).allowed).toBe(true);
  });

  it.each(NON_KEY_ACTIONS)('keys ["payments-*", "*"] grant %s', (action) => {
    expect(decide(policies({ p: [{ actions: [action], keys: ['payments-*', '*'] }] }), action, undefined).allowed).toBe(true);
  });

  it('a non-key action is granted whatever key the request happens to name', () => {
    expect(decide(policies({ p: [{ actions: ['policies:write'], keys: ['*'] }] }), 'policies:write', 'anything').allowed).toBe(true);
  });

  it('a deny scoped to some keys does not deny a non-key action', () => {
    const set = policies({ p: [{ actions: ['policies:read'] }, { effect: 'deny', actions: ['*'], keys: ['payments-*'] }] });
    expect(decide(set, 'policies:read', undefined).allowed).toBe(true);
  });

  it('a deny on "*" keys denies a non-key action', () => {
    const set = policies({ p: [{ actions: ['policies:read'] }, { effect: 'deny', actions: ['policies:read'], keys: ['*'] }] });
    expect(decide(set, 'policies:read', undefined).reason).toBe('explicit-deny');
  });
});

describe('evaluate: an explicit deny wins over any allow', () => {
  it('within one policy, whatever the order of the statements', () => {
    for (const statements of [
      [{}, { effect: 'deny' as const }],
      [{ effect: 'deny' as const }, {}],
    ]) {
      expect(decide(policies({ p: statements }), 'encrypt', 'payments-db').reason).toBe('explicit-deny');
    }
  });

  it('across policies, whatever their names sort as', () => {
    for (const [allowName, denyName] of [
      ['a-allow', 'z-deny'],
      ['z-allow', 'a-deny'],
    ] as const) {
      const set = policies({ [allowName]: [{}], [denyName]: [{ effect: 'deny', actions: ['encrypt'], keys: ['payments-db'] }] });
      expect(decide(set, 'encrypt', 'payments-db').allowed).toBe(false);
    }
  });

  it('a narrower deny carves an exception out of a broader allow', () => {
    const set = policies({ p: [{ keys: ['payments-*'] }, { effect: 'deny', keys: ['payments-root'] }] });
    expect(decide(set, 'decrypt', 'payments-cards').allowed).toBe(true);
    expect(decide(set, 'decrypt', 'payments-root').allowed).toBe(false);
  });

  it('a deny for another action does not get in the way', () => {
    const set = policies({ p: [{}, { effect: 'deny', actions: ['decrypt'] }] });
    expect(decide(set, 'encrypt', 'payments-db').allowed).toBe(true);
  });

  it('a deny for another principal does not get in the way', () => {
    const set = policies({ p: [{}, { effect: 'deny', principals: ['k8s:payroll:*'] }] });
    expect(decide(set, 'encrypt', 'payments-db').allowed).toBe(true);
  });

  it('a deny whose context condition is not met does not apply', () => {
    const set = policies({ p: [{}, { effect: 'deny', conditions: { context: { env: 'prod' } } }] });
    expect(decide(set, 'encrypt', 'payments-db', { context: { env: 'dev' } }).allowed).toBe(true);
    expect(decide(set, 'encrypt', 'payments-db', { context: { env: 'prod' } }).allowed).toBe(false);
  });

  it('a deny alone is still a denial', () => {
    expect(decide(policies({ p: [{ effect: 'deny' }] }), 'encrypt', 'payments-db').reason).toBe('explicit-deny');
  });
});

describe('evaluate: context conditions', () => {
  it.each<[string, Record<string, string>, EncryptionContext | undefined, Principal, boolean]>([
    ['the exact pair', { env: 'prod' }, { env: 'prod' }, PAYMENTS_API, true],
    ['the exact pair among others', { env: 'prod' }, { env: 'prod', app: 'web' }, PAYMENTS_API, true],
    ['the key missing', { env: 'prod' }, { app: 'web' }, PAYMENTS_API, false],
    ['a wrong value', { env: 'prod' }, { env: 'dev' }, PAYMENTS_API, false],
    ['no context at all', { env: 'prod' }, undefined, PAYMENTS_API, false],
    ['an empty context', { env: 'prod' }, {}, PAYMENTS_API, false],
    ['the caller\'s namespace', { tenant: '${principal.namespace}' }, { tenant: 'payments' }, PAYMENTS_API, true],
    ['another namespace', { tenant: '${principal.namespace}' }, { tenant: 'payroll' }, PAYMENTS_API, false],
    ['a caller without a namespace, even with an empty value', { tenant: '${principal.namespace}' }, { tenant: '' }, CI, false],
    ['the literal variable text', { tenant: '${principal.namespace}' }, { tenant: '${principal.namespace}' }, PAYMENTS_API, false],
  ])('with %s → %s', (_label, condition, context, who, allowed) => {
    const set = policies({ p: [{ principals: ['*'], actions: ['encrypt'], keys: ['*'], conditions: { context: condition } }] });
    expect(decide(set, 'encrypt', 'payments-db', { who, context }).allowed).toBe(allowed);
  });

  it('a statement with conditions never grants a non-key action, which carries no context', () => {
    expect(
      decide(policies({ p: [{ actions: ['policies:read'], conditions: { context: { env: 'prod' } } }] }), 'policies:read', undefined).allowed,
    ).toBe(false);
  });

  it('another statement without conditions still allows', () => {
    const set = policies({ p: [{ conditions: { context: { env: 'prod' } } }, { actions: ['encrypt'] }] });
    expect(decide(set, 'encrypt', 'payments-db').allowed).toBe(true);
  });
});

describe('evaluate: variables in key globs', () => {
  const own = policies({ p: [{ principals: ['k8s:*'], actions: ['encrypt'], keys: ['${principal.namespace}-*'] }] });

  it.each<[string, Principal, string, boolean]>([
    ['its own namespace\'s key', PAYMENTS_API, 'payments-db', true],
    ['another namespace\'s key', PAYMENTS_API, 'payroll-db', false],
    ['the other namespace its own key', workload('k8s:payroll:api', { namespace: 'payroll' }), 'payroll-db', true],
    ['a key that merely starts with its namespace', PAYMENTS_API, 'paymentsx-db', false],
  ])('a workload is allowed %s: %s', (_label, who, key, allowed) => {
    expect(decide(own, 'encrypt', key, { who }).allowed).toBe(allowed);
  });

  it('a workload without the attribute is allowed nothing by the glob', () => {
    const set = policies({ p: [{ principals: ['*'], actions: ['encrypt'], keys: ['${principal.namespace}-*'] }] });
    expect(decide(set, 'encrypt', '-db', { who: CI }).allowed).toBe(false);
    expect(decide(set, 'encrypt', 'payments-db', { who: CI }).allowed).toBe(false);
  });

  it('a "*" in the attribute is not a wildcard', () => {
    expect(decide(own, 'encrypt', 'payments-db', { who: workload('k8s:x:y', { namespace: '*' }) }).allowed).toBe(false);
  });

  it('${principal.tokenName} scopes API tokens to their own keys', () => {
    const set = policies({ p: [{ principals: ['token:*'], actions: ['encrypt'], keys: ['${principal.tokenName}-*'] }] });
    expect(decide(set, 'encrypt', 'ci-db', { who: CI }).allowed).toBe(true);
    expect(decide(set, 'encrypt', 'cd-db', { who: CI }).allowed).toBe(false);
  });

  it('a deny with a variable applies only to the principals it resolves for', () => {
    const set = policies({ p: [{}, { effect: 'deny', keys: ['${principal.namespace}-root'] }] });
    expect(decide(set, 'encrypt', 'payments-root').allowed).toBe(false);
    expect(decide(set, 'encrypt', 'payroll-root').allowed).toBe(true);
    // Without a namespace the deny resolves to nothing, so it cannot deny: the allow stands.
    expect(decide(set, 'encrypt', 'payments-root', { who: CI }).allowed).toBe(true);
  });
});

describe('evaluate: the statements a decision reports', () => {
  it('an allow reports the statement that allowed: policy, index, sid and effect', () => {
    const set = policies({ grants: [{ actions: ['decrypt'] }, { sid: 'encrypt-payments', actions: ['encrypt'] }] });
    expect(decide(set, 'encrypt', 'payments-db')).toEqual({
      allowed: true,
      reason: 'allowed',
      matched: [{ policy: 'grants', statement: 1, sid: 'encrypt-payments', effect: 'allow' }],
    });
  });

  it('a statement without a sid reports no sid property', () => {
    const [matched] = decide(policies({ p: [{}] }), 'encrypt', 'payments-db').matched;
    expect(matched).toEqual({ policy: 'p', statement: 0, effect: 'allow' });
    expect(matched).not.toHaveProperty('sid');
  });

  it('an allow outside complete mode reports only the first matching allow', () => {
    const set = policies({ a: [{ sid: 'one' }, { sid: 'two' }], b: [{ sid: 'three' }] });
    expect(decide(set, 'encrypt', 'payments-db').matched).toEqual([{ policy: 'a', statement: 0, sid: 'one', effect: 'allow' }]);
  });

  it('an allow in complete mode reports every matching allow, in policy-name then statement order', () => {
    const set = policies({ b: [{ sid: 'three' }], a: [{ sid: 'one' }, { sid: 'no', actions: ['decrypt'] }, { sid: 'two' }] });
    expect(decide(set, 'encrypt', 'payments-db', { complete: true }).matched).toEqual([
      { policy: 'b', statement: 0, sid: 'three', effect: 'allow' },
      { policy: 'a', statement: 0, sid: 'one', effect: 'allow' },
      { policy: 'a', statement: 2, sid: 'two', effect: 'allow' },
    ]);
  });

  it('an explicit deny reports every matching deny and no allow', () => {
    const set = policies({ a: [{ sid: 'allow' }, { sid: 'deny-1', effect: 'deny' }], b: [{ sid: 'deny-2', effect: 'deny' }] });
    expect(decide(set, 'encrypt', 'payments-db')).toEqual({
      allowed: false,
      reason: 'explicit-deny',
      matched: [
        { policy: 'a', statement: 1, sid: 'deny-1', effect: 'deny' },
        { policy: 'b', statement: 0, sid: 'deny-2', effect: 'deny' },
      ],
    });
  });

  it('an explicit deny reports every matching deny even after an allow matched first', () => {
    const set = policies({ a: [{ sid: 'allow' }], b: [{ sid: 'late-deny', effect: 'deny' }] });
    expect(decide(set, 'encrypt', 'payments-db').matched).toEqual([{ policy: 'b', statement: 0, sid: 'late-deny', effect: 'deny' }]);
  });

  it('an implicit deny reports no statement', () => {
    expect(decide(policies({ p: [{ actions: ['decrypt'] }] }), 'encrypt', 'payments-db', { complete: true })).toEqual({
      allowed: false,
      reason: 'no-matching-allow',
      matched: [],
    });
  });
});

describe('PolicySet', () => {
  it('files each statement under the actions it names', () => {
    const set = policies({ p: [{ actions: ['encrypt'] }, { actions: ['*'] }] });
    expect(set.statementsFor('encrypt').map((s) => s.statement)).toEqual([0, 1]);
    expect(set.statementsFor('decrypt').map((s) => s.statement)).toEqual([1]);
  });

  it('keeps the policies it was built from, frozen', () => {
    const set = policies({ a: [{}], b: [{}] });
    expect(set.policies.map((p) => p.name)).toEqual(['a', 'b']);
    expect(Object.isFrozen(set.policies)).toBe(true);
  });
});

describe('PolicyAuthorizer', () => {
  const DENY_ALL = policies({ 'deny-all': [{ effect: 'deny' }] });

  function refusalOf(action: () => unknown): KeyholdError {
    let caught: unknown;
    try {
      action();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(KeyholdError);
    return caught as KeyholdError;
  }

  it('lets an admin do everything, even under a policy that denies everyone everything', () => {
    const authorizer = new PolicyAuthorizer(() => DENY_ALL);
    for (const action of ACTIONS) expect(authorizer.authorize(callerOf(ADMIN), action, { keyName: 'payments-db' })).toBe(ADMIN_DECISION);
  });

  it('reports an admin decision with the reason "admin" and no statements', () => {
    expect(ADMIN_DECISION).toEqual({ allowed: true, reason: 'admin', matched: [] });
  });

  it('says an admin is allowed when filtering lists, even under deny-all', () => {
    expect(new PolicyAuthorizer(() => DENY_ALL).isAllowed(ADMIN, 'keys:read', { keyName: 'payments-db' })).toBe(true);
  });

  it('returns the decision when a workload is allowed', () => {
    const authorizer = new PolicyAuthorizer(() => policies({ p: [{ sid: 's' }] }));
    expect(authorizer.authorize(callerOf(PAYMENTS_API), 'encrypt', { keyName: 'payments-db' })).toEqual({
      allowed: true,
      reason: 'allowed',
      matched: [{ policy: 'p', statement: 0, sid: 's', effect: 'allow' }],
    });
  });

  it('throws 403 KH_ERR_FORBIDDEN when a workload is denied by default', () => {
    const error = refusalOf(() => new PolicyAuthorizer(() => EMPTY_POLICY_SET).authorize(callerOf(PAYMENTS_API), 'encrypt', { keyName: 'payments-db' }));
    expect({ code: error.code, status: error.status }).toEqual({ code: 'KH_ERR_FORBIDDEN', status: 403 });
  });

  it('names the action and the key in the refusal', () => {
    const error = refusalOf(() => new PolicyAuthorizer(() => EMPTY_POLICY_SET).authorize(callerOf(PAYMENTS_API), 'decrypt', { keyName: 'payments-db' }));
    expect(error.message).toBe('Not allowed to decrypt on key "payments-db"');
  });

  it('names only the action when the action is not about a key', () => {
    expect(forbidden('policies:write', {}).message).toBe('Not allowed to policies:write');
  });

  it('never names the denying policy, its statement or its text in the refusal', () => {
    const set = policies({ 'secret-policy-name': [{ sid: 'secret-sid', effect: 'deny', principals: ['k8s:payments:*'], keys: ['payments-*'] }] });
    const error = refusalOf(() => new PolicyAuthorizer(() => set).authorize(callerOf(PAYMENTS_API), 'encrypt', { keyName: 'payments-db' }));
    expect(error.message).toBe('Not allowed to encrypt on key "payments-db"');
    expect(JSON.stringify({ ...error, message: error.message })).not.toMatch(/secret-policy-name|secret-sid|k8s:payments:\*|payments-\*/);
  });

  it('reads the policy set afresh for each decision', () => {
    let current = EMPTY_POLICY_SET;
    const authorizer = new PolicyAuthorizer(() => current);
    expect(authorizer.isAllowed(PAYMENTS_API, 'encrypt', { keyName: 'payments-db' })).toBe(false);
    current = policies({ p: [{}] });
    expect(authorizer.isAllowed(PAYMENTS_API, 'encrypt', { keyName: 'payments-db' })).toBe(true);
  });

  it('passes the encryption context to the decision', () => {
    const authorizer = new PolicyAuthorizer(() => policies({ p: [{ conditions: { context: { env: 'prod' } } }] }));
    expect(() => authorizer.authorize(callerOf(PAYMENTS_API), 'encrypt', { keyName: 'k' }, { env: 'prod' })).not.toThrow();
    expect(() => authorizer.authorize(callerOf(PAYMENTS_API), 'encrypt', { keyName: 'k' }, { env: 'dev' })).toThrow(KeyholdError);
  });
});

describe('allowedKeyPrefixes: where the keys an action may be allowed on can be', () => {
  it('is empty when no allow statement names the principal for the action', () => {
    const set = policies({ p: [{ actions: ['encrypt'], keys: ['a-*'] }, { principals: ['k8s:payroll:*'], actions: ['keys:read'] }] });
    expect(allowedKeyPrefixes(set, PAYMENTS_API, 'keys:read')).toEqual([]);
  });

  it('takes each key glob up to its first star, substituted, sorted, without prefixes another one covers', () => {
    const set = policies({
      p: [
        { actions: ['keys:read'], keys: ['${principal.namespace}.*', 'shared-*-db', 'shared-a*', 'exact'] },
        { actions: ['keys:read'], keys: ['${principal.tokenName}.*'] },
      ],
    });
    expect(allowedKeyPrefixes(set, PAYMENTS_API, 'keys:read')).toEqual(['exact', 'payments.', 'shared-']);
  });

  it('ignores denies, and allows whose principal or context conditions cannot hold without a context', () => {
    const set = policies({
      p: [
        { effect: 'deny', actions: ['keys:read'], keys: ['d-*'] },
        { actions: ['keys:read'], keys: ['c-*'], conditions: { principal: { namespace: 'payroll' } } },
        { actions: ['keys:read'], keys: ['x-*'], conditions: { context: { tenant: 'acme' } } },
        { actions: ['keys:read'], keys: ['ok-*'] },
      ],
    });
    expect(allowedKeyPrefixes(set, PAYMENTS_API, 'keys:read')).toEqual(['ok-']);
  });

  it('is the empty prefix for a glob that starts with a star', () => {
    const set = policies({ p: [{ actions: ['keys:read'], keys: ['*-db', 'a-*'] }] });
    expect(allowedKeyPrefixes(set, PAYMENTS_API, 'keys:read')).toEqual(['']);
  });
});
