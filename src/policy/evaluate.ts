import type { Decision, MatchedStatement } from '../context/decision.js';
import type { EncryptionContext } from '../crypto/encryption-context.js';
import type { Principal } from '../context/principal.js';
import { ACTIONS, KEY_ACTIONS, type Action, type Resource } from '../context/actions.js';
import { matchGlob, substitute } from './glob.js';
import { contextConditionsHold, principalConditionsHold, requiredContext, type CompiledPolicy, type CompiledStatement } from './policy.js';

export const ADMIN_DECISION: Decision = Object.freeze({ allowed: true, reason: 'admin', matched: Object.freeze([]) });
const IMPLICIT_DENY: Decision = Object.freeze({ allowed: false, reason: 'no-matching-allow', matched: Object.freeze([]) });

/**
 * Every stored policy, compiled, with statements indexed by action: a request looks only at the statements that
 * could apply to what it does. Immutable; a policy change builds a new set.
 *
 * Principal globs have no variables, so which statements name a principal depends on the principal alone. That is
 * worked out once per principal object and remembered: authenticators hand out one frozen principal per credential,
 * so on the hot path a decision only checks the few statements that name the caller.
 */
export class PolicySet {
  readonly policies: readonly CompiledPolicy[];
  readonly #byAction: ReadonlyMap<Action, readonly CompiledStatement[]>;
  readonly #byPrincipal = new WeakMap<Principal, Map<Action, readonly CompiledStatement[]>>();

  constructor(policies: readonly CompiledPolicy[]) {
    this.policies = Object.freeze([...policies]);
    const byAction = new Map<Action, CompiledStatement[]>(ACTIONS.map((action) => [action, []]));
    for (const policy of policies) {
      for (const statement of policy.statements) {
        for (const action of ACTIONS) {
          if (statement.actions.has(action)) byAction.get(action)?.push(statement);
        }
      }
    }
    this.#byAction = byAction;
  }

  statementsFor(action: Action): readonly CompiledStatement[] {
    return this.#byAction.get(action) ?? [];
  }

  /** The statements for `action` whose principal globs match this principal. */
  statementsNaming(principal: Principal, action: Action): readonly CompiledStatement[] {
    let byAction = this.#byPrincipal.get(principal);
    if (byAction === undefined) {
      byAction = new Map();
      this.#byPrincipal.set(principal, byAction);
    }
    let statements = byAction.get(action);
    if (statements === undefined) {
      statements = this.statementsFor(action).filter((statement) =>
        statement.principals.some((glob) => matchGlob(glob, principal.id, principal)),
      );
      byAction.set(action, statements);
    }
    return statements;
  }
}

export const EMPTY_POLICY_SET = new PolicySet([]);

/** Whether a statement that names the principal applies to this action and resource, whatever the context. */
function appliesToResource(statement: CompiledStatement, principal: Principal, action: Action, resource: Resource): boolean {
  if (KEY_ACTIONS.has(action)) {
    const keyName = resource.keyName;
    if (keyName === undefined) return false;
    if (!statement.keys.some((glob) => matchGlob(glob, keyName, principal))) return false;
  } else if (!statement.allKeys) {
    // A grant scoped to some keys never reaches tokens, policies or the audit log.
    return false;
  }
  return principalConditionsHold(statement, principal);
}

/** Whether a statement that names the principal applies to this action, resource and context. */
function statementApplies(
  statement: CompiledStatement,
  principal: Principal,
  action: Action,
  resource: Resource,
  context: EncryptionContext | undefined,
): boolean {
  return appliesToResource(statement, principal, action, resource) && contextConditionsHold(statement, context, principal);
}

function matchedOf(statement: CompiledStatement): MatchedStatement {
  return statement.sid === undefined
    ? { policy: statement.policy, statement: statement.statement, effect: statement.effect }
    : { policy: statement.policy, statement: statement.statement, sid: statement.sid, effect: statement.effect };
}

/**
 * Deny by default; an explicit deny wins over any allow. Admins are not evaluated here: callers short-cut them.
 * `complete` collects every matching allow (for simulation); otherwise the scan stops at denies only, and the first
 * matching allow is reported.
 */
export function evaluate(
  policies: PolicySet,
  principal: Principal,
  action: Action,
  resource: Resource,
  context: EncryptionContext | undefined,
  complete = false,
): Decision {
  const allows: MatchedStatement[] = [];
  const denies: MatchedStatement[] = [];
  for (const statement of policies.statementsNaming(principal, action)) {
    if (statement.effect === 'allow' && allows.length > 0 && !complete) continue;
    if (!statementApplies(statement, principal, action, resource, context)) continue;
    (statement.effect === 'deny' ? denies : allows).push(matchedOf(statement));
  }
  if (denies.length > 0) return { allowed: false, reason: 'explicit-deny', matched: denies };
  if (allows.length > 0) return { allowed: true, reason: 'allowed', matched: allows };
  return IMPLICIT_DENY;
}

/** The actions whose requests carry an encryption context; every other action is evaluated without one. */
const CONTEXT_ACTIONS: ReadonlySet<Action> = new Set<Action>(['datakey', 'encrypt', 'decrypt', 'rewrap', 'rewrap-revoked']);

/** Whether every pair of `subset` is in `context`. */
function holdsAll(context: ReadonlyMap<string, string>, subset: ReadonlyMap<string, string>): boolean {
  for (const [key, value] of subset) if (context.get(key) !== value) return false;
  return true;
}

/**
 * Whether some request of this principal could be allowed `action` on the resource, in any encryption context:
 * exactly whether a context C exists for which {@link evaluate} allows. An allow holds in the least context that
 * meets its conditions (its required pairs) and in every larger one; a deny applies to a context that holds all its
 * pairs. A larger context only brings in more denies, so an allow is usable in some context if and only if no
 * applicable deny requires a subset of its pairs (an unconditional deny requires none). Admins are not evaluated
 * here.
 */
export function allowedInSomeContext(policies: PolicySet, principal: Principal, action: Action, resource: Resource): boolean {
  if (!CONTEXT_ACTIONS.has(action)) return evaluate(policies, principal, action, resource, undefined).allowed;
  const statements = policies.statementsNaming(principal, action).filter((statement) =>
    appliesToResource(statement, principal, action, resource),
  );
  const denies: ReadonlyMap<string, string>[] = [];
  for (const statement of statements) {
    if (statement.effect !== 'deny') continue;
    const required = requiredContext(statement, principal);
    if (required !== undefined) denies.push(required);
  }
  return statements.some((statement) => {
    if (statement.effect !== 'allow') return false;
    const required = requiredContext(statement, principal);
    return required !== undefined && !denies.some((deny) => holdsAll(required, deny));
  });
}

/**
 * What using a key means: a principal that may do any of these to a key, in some context, uses it. It sees the
 * key's events (an SDK caches or shows what these give it), and may learn that the key exists.
 */
export const KEY_USE_ACTIONS: readonly Action[] = ['datakey', 'encrypt', 'decrypt', 'rewrap', 'rewrap-revoked', 'keys:read'];

/** Whether the principal may ever use the key: {@link allowedInSomeContext} for any of {@link KEY_USE_ACTIONS}. */
export function mayEverUseKey(policies: PolicySet, principal: Principal, keyName: string): boolean {
  return KEY_USE_ACTIONS.some((action) => allowedInSomeContext(policies, principal, action, { keyName }));
}

/**
 * What every key name that `action` (decided without an encryption context, such as `keys:read`) may be allowed on
 * starts with, for this principal: the text before the first `*` of each key glob of each allow statement that
 * could apply, variables substituted; sorted, and without any prefix that another one covers. Empty when no key can
 * be allowed. It only narrows a search: a key under a prefix may still be denied, or miss the rest of its glob.
 */
export function allowedKeyPrefixes(policies: PolicySet, principal: Principal, action: Action): string[] {
  const prefixes: string[] = [];
  for (const statement of policies.statementsNaming(principal, action)) {
    if (statement.effect !== 'allow' || !principalConditionsHold(statement, principal)) continue;
    if (!contextConditionsHold(statement, undefined, principal)) continue;
    for (const glob of statement.keys) {
      // A variable the principal lacks makes the glob match nothing.
      const prefix = substitute(glob.pieces[0] ?? [], principal);
      if (prefix !== undefined) prefixes.push(prefix);
    }
  }
  prefixes.sort();
  // Sorted, a prefix comes after every prefix of it.
  return prefixes.filter((prefix, index) => !prefixes.slice(0, index).some((shorter) => prefix.startsWith(shorter)));
}

/**
 * Whether any key could be allowed `action` for this principal: an allow statement names it for the action, and the
 * principal conditions hold (context conditions wait for the request). When not, no key lookup can change the answer.
 */
export function maySomeKeyBeAllowed(policies: PolicySet, principal: Principal, action: Action): boolean {
  return policies
    .statementsNaming(principal, action)
    .some((statement) => statement.effect === 'allow' && principalConditionsHold(statement, principal));
}
