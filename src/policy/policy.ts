import type { Effect } from '../context/decision.js';
import { RESERVED_CONTEXT_PREFIX, type EncryptionContext } from '../crypto/encryption-context.js';
import { ACTIONS, EXPLICIT_ONLY_ACTIONS, type Action } from '../context/actions.js';
import { PRINCIPAL_ATTRIBUTES, type Principal } from '../context/principal.js';
import { compileGlob, GlobSyntaxError, principalVariable, substitute, type Glob } from './glob.js';


/** A policy document as written through the API. */
export interface PolicyDocument {
  readonly description?: string | undefined;
  readonly statements: readonly StatementDocument[];
}

export interface StatementDocument {
  /** An optional statement id, shown in decisions and audit records. */
  readonly sid?: string | undefined;
  readonly effect: Effect;
  /** Globs over principal ids: `k8s:payments:*`, `spiffe://example.org/ns/payments/*`, `token:ci`. */
  readonly principals: readonly string[];
  /** Action names, or `*` for every action (in an allow statement, every action but `rewrap-revoked`). */
  readonly actions: readonly string[];
  /** Globs over key names. Actions that are not about a key are granted only by statements that list `*`. */
  readonly keys: readonly string[];
  readonly conditions?:
    | {
        readonly context?: Readonly<Record<string, string>> | undefined;
        /** Principal attributes that must equal these values, such as the `issuer` of one cluster. */
        readonly principal?: Readonly<Record<string, string>> | undefined;
      }
    | undefined;
}

export const MAX_STATEMENTS = 100;
const PRINCIPAL_CHARSET = /^[A-Za-z0-9._:/@-]*$/;
const KEY_CHARSET = /^[A-Za-z0-9._-]*$/;
const CONTEXT_VALUE_CHARSET = /^[^\u0000]*$/u;

type Part = Glob['pieces'][number];

export interface CompiledStatement {
  readonly policy: string;
  /** Index in the policy's `statements`. */
  readonly statement: number;
  readonly sid: string | undefined;
  readonly effect: Effect;
  readonly principals: readonly Glob[];
  /** The listed actions, with `*` expanded; see {@link expandActions}. */
  readonly actions: ReadonlySet<Action>;
  readonly keys: readonly Glob[];
  /** Whether `keys` lists the bare `*`, which is what grants actions that are not about a key. */
  readonly allKeys: boolean;
  /** Required context entries: key → value parts (literal or `${principal.…}`). */
  readonly context: readonly (readonly [string, Part])[];
  /** Required principal attributes: name (`id`, `type` or an attribute) → exact value. */
  readonly principalConditions: readonly (readonly [string, string])[];
}

export interface CompiledPolicy {
  readonly name: string;
  readonly statements: readonly CompiledStatement[];
}

/** A policy document that cannot be stored; `problems` name each place, such as `/statements/2/keys/0`. */
export class PolicyDocumentError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'PolicyDocumentError';
    this.problems = problems;
  }
}

const KNOWN_ACTIONS = new Set<string>(ACTIONS);
const CONDITION_ATTRIBUTES: ReadonlySet<string> = new Set(['id', 'type', ...PRINCIPAL_ATTRIBUTES]);

/** A property name as a JSON pointer token (RFC 6901 §3): `~` and `/` are escaped. */
function jsonPointerToken(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}

/**
 * The actions a statement is about. `*` stands for every action, except that an allow statement's `*` leaves out the
 * {@link EXPLICIT_ONLY_ACTIONS}: those are granted only where they are listed. A deny statement's `*` covers them.
 */
function expandActions(effect: Effect, listed: ReadonlySet<Action>, star: boolean): ReadonlySet<Action> {
  if (!star) return listed;
  return new Set(ACTIONS.filter((action) => listed.has(action) || effect === 'deny' || !EXPLICIT_ONLY_ACTIONS.has(action)));
}

/**
 * Validates a policy document beyond its JSON schema (actions, globs, variables) and compiles it for evaluation.
 * Every problem is reported, each with the JSON pointer of its place.
 */
export function compilePolicy(name: string, document: PolicyDocument): CompiledPolicy {
  const problems: string[] = [];
  const glob = (source: string, at: string, charset: RegExp, allowVariables: boolean, maxLength: number): Glob | undefined => {
    try {
      return compileGlob(source, { charset, allowVariables, maxLength });
    } catch (error) {
      if (!(error instanceof GlobSyntaxError)) throw error;
      problems.push(`${at}: ${JSON.stringify(source)} ${error.message}`);
      return undefined;
    }
  };
  const statements = document.statements.map((statement, index): CompiledStatement => {
    const at = `/statements/${index}`;
    const actions = new Set<Action>();
    let allActions = false;
    statement.actions.forEach((action, actionIndex) => {
      if (action === '*') allActions = true;
      else if (KNOWN_ACTIONS.has(action)) actions.add(action as Action);
      else problems.push(`${at}/actions/${actionIndex}: unknown action ${JSON.stringify(action)}`);
    });
    const principals = statement.principals.map((source, i) =>
      glob(source, `${at}/principals/${i}`, PRINCIPAL_CHARSET, false, 512),
    );
    const keys = statement.keys.map((source, i) => glob(source, `${at}/keys/${i}`, KEY_CHARSET, true, 256));
    const context = Object.entries(statement.conditions?.context ?? {}).map(([key, value]): [string, Part] => {
      const place = `${at}/conditions/context/${jsonPointerToken(key)}`;
      if (key.startsWith(RESERVED_CONTEXT_PREFIX)) {
        problems.push(`${place}: keys starting with "${RESERVED_CONTEXT_PREFIX}" are reserved`);
      }
      const compiled = value === '' || value.includes('*') ? undefined : glob(value, place, CONTEXT_VALUE_CHARSET, true, 1024);
      if (value.includes('*')) problems.push(`${place}: context values are matched exactly; "*" is not allowed`);
      return [key, compiled?.pieces[0] ?? []];
    });
    const principalConditions = Object.entries(statement.conditions?.principal ?? {}).map(([attribute, value]): [string, string] => {
      if (!CONDITION_ATTRIBUTES.has(attribute)) {
        problems.push(`${at}/conditions/principal/${jsonPointerToken(attribute)}: unknown principal attribute; known: ${[...CONDITION_ATTRIBUTES].join(', ')}`);
      }
      return [attribute, value];
    });
    return {
      policy: name,
      statement: index,
      sid: statement.sid,
      effect: statement.effect,
      principals: principals.filter((g): g is Glob => g !== undefined),
      actions: expandActions(statement.effect, actions, allActions),
      keys: keys.filter((g): g is Glob => g !== undefined),
      allKeys: statement.keys.includes('*'),
      context,
      principalConditions,
    };
  });
  if (problems.length > 0) throw new PolicyDocumentError(problems);
  return Object.freeze({ name, statements: Object.freeze(statements) });
}

/** Whether the principal has every required attribute value. */
export function principalConditionsHold(statement: CompiledStatement, principal: Principal): boolean {
  for (const [attribute, value] of statement.principalConditions) {
    if (principalVariable(principal, attribute) !== value) return false;
  }
  return true;
}

/**
 * The context pairs a statement requires, with variables taken from the principal: the least context under which its
 * context conditions hold. Undefined when the principal lacks a variable's attribute, so that no context satisfies it.
 */
export function requiredContext(statement: CompiledStatement, principal: Principal): ReadonlyMap<string, string> | undefined {
  const required = new Map<string, string>();
  for (const [key, parts] of statement.context) {
    const expected = substitute(parts, principal);
    if (expected === undefined) return undefined;
    required.set(key, expected);
  }
  return required;
}

/** Whether the request context holds every required entry, with variables taken from the principal. */
export function contextConditionsHold(
  statement: CompiledStatement,
  context: EncryptionContext | undefined,
  principal: Principal,
): boolean {
  for (const [key, parts] of statement.context) {
    if (context === undefined || !Object.hasOwn(context, key)) return false;
    const expected = substitute(parts, principal);
    if (expected === undefined || context[key] !== expected) return false;
  }
  return true;
}
