import { describe, expect, it } from 'vitest';
import type { Principal } from '../../../src/context/principal.js';
import { compileGlob, GlobSyntaxError, matchGlob, POLICY_VARIABLES, type Glob } from '../../../src/policy/glob.js';

/** The options a policy's key globs are compiled with (src/policy/policy.ts). */
const KEY_GLOB = { allowVariables: true, charset: /^[A-Za-z0-9._-]*$/, maxLength: 256 };
/** The options a policy's principal globs are compiled with. */
const PRINCIPAL_GLOB = { allowVariables: false, charset: /^[A-Za-z0-9._:/@-]*$/, maxLength: 512 };

function principal(attributes: Record<string, string> = {}, id = 'k8s:payments:api'): Principal {
  return Object.freeze({ id, type: 'kubernetes', admin: false, attributes: Object.freeze({ ...attributes }) });
}

const NOBODY = principal();

function matches(source: string, text: string, who: Principal = NOBODY): boolean {
  return matchGlob(compileGlob(source, KEY_GLOB), text, who);
}

function syntaxErrorOf(source: string, options = KEY_GLOB): GlobSyntaxError {
  let caught: unknown;
  try {
    compileGlob(source, options);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(GlobSyntaxError);
  return caught as GlobSyntaxError;
}

describe('matchGlob: "*" matches any run of characters, including none; everything else is literal', () => {
  it.each([
    // [glob, text, matches]
    ['payments', 'payments', true],
    ['payments', 'payments-db', false],
    ['payments', 'old-payments', false],
    ['payments', 'payment', false],
    ['payments-*', 'payments-db', true],
    ['payments-*', 'payments-', true],
    ['payments-*', 'payments', false],
    ['payments-*', 'xpayments-db', false],
    ['*-prod', 'db-prod', true],
    ['*-prod', '-prod', true],
    ['*-prod', 'db-prod-2', false],
    ['a*z', 'az', true],
    ['a*z', 'a-z', true],
    ['a*z', 'a-long-run-z', true],
    ['a*z', 'a', false],
    ['a*z', 'z', false],
    ['a*z', 'za', false],
    ['*', 'anything', true],
    ['*', 'a', true],
    ['*', '', true],
    ['*.*', 'a.b', true],
    ['*.*', '.', true],
    ['*.*', 'ab', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'abcbc', true],
    ['a*b*c', 'acb', false],
    ['a*b*c', 'ab', false],
    ['a*b*c', 'abcd', false],
    ['*b*', 'b', true],
    ['*b*', 'abc', true],
    ['*b*', 'ac', false],
    ['ab*ba', 'aba', false],
    ['ab*ba', 'abba', true],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    ['*a*a*', 'banana', true],
    ['*a*a*a*', 'banana', true],
    ['*a*a*a*a*', 'banana', false],
  ])('%j against %j: %s', (source, text, expected) => {
    expect(matches(source, text)).toBe(expected);
  });

  it.each([
    ['Payments-*', 'payments-db'],
    ['payments-*', 'PAYMENTS-db'],
    ['*-DB', 'payments-db'],
  ])('is case-sensitive: %j does not match %j', (source, text) => {
    expect(matches(source, text)).toBe(false);
  });

  it('treats "." and other regular-expression characters as literals', () => {
    expect(matches('a.b', 'a.b')).toBe(true);
    expect(matches('a.b', 'axb')).toBe(false);
  });

  it('matches principal ids with ":" and "/" literally', () => {
    const glob = compileGlob('spiffe://example.org/ns/payments/*', PRINCIPAL_GLOB);
    expect(matchGlob(glob, 'spiffe://example.org/ns/payments/sa/api', NOBODY)).toBe(true);
    expect(matchGlob(glob, 'spiffe://example.org/ns/payroll/sa/api', NOBODY)).toBe(false);
  });
});

describe('matchGlob: ${principal.ATTRIBUTE} variables', () => {
  it('substitutes the caller\'s attribute', () => {
    const payments = principal({ namespace: 'payments' });
    expect(matches('${principal.namespace}-*', 'payments-db', payments)).toBe(true);
    expect(matches('${principal.namespace}-*', 'payroll-db', payments)).toBe(false);
  });

  it('substitutes a variable in the middle of a literal', () => {
    const payments = principal({ namespace: 'payments' });
    expect(matches('team.${principal.namespace}.key', 'team.payments.key', payments)).toBe(true);
    expect(matches('team.${principal.namespace}.key', 'team.payroll.key', payments)).toBe(false);
  });

  it('substitutes several variables in one glob', () => {
    const who = principal({ namespace: 'payments', serviceAccount: 'api' });
    expect(matches('${principal.namespace}-${principal.serviceAccount}-*', 'payments-api-1', who)).toBe(true);
    expect(matches('${principal.namespace}-${principal.serviceAccount}-*', 'payments-web-1', who)).toBe(false);
  });

  it('substitutes ${principal.id} and ${principal.type}', () => {
    const who = principal({}, 'token:ci');
    expect(matches('${principal.type}-*', 'kubernetes-db', who)).toBe(true);
    expect(matchGlob(compileGlob('x-${principal.id}', { ...KEY_GLOB, charset: /^.*$/ }), 'x-token:ci', who)).toBe(true);
  });

  it('substitutes an attribute literally: a "*" inside it is not a wildcard', () => {
    const sneaky = principal({ namespace: '*' });
    expect(matches('${principal.namespace}-db', 'payments-db', sneaky)).toBe(false);
    expect(matches('${principal.namespace}-db', '*-db', sneaky)).toBe(true);
  });

  it('substitutes an attribute literally inside a glob with stars', () => {
    const sneaky = principal({ namespace: 'pay*' });
    expect(matches('${principal.namespace}-*', 'payments-db', sneaky)).toBe(false);
    expect(matches('${principal.namespace}-*', 'pay*-db', sneaky)).toBe(true);
  });

  it('matches nothing when the caller lacks the attribute, not even a glob that is otherwise "*"', () => {
    expect(matches('${principal.namespace}*', 'payments-db', NOBODY)).toBe(false);
    expect(matches('*${principal.namespace}*', '', NOBODY)).toBe(false);
  });

  it('reads only the principal\'s own attributes, never inherited ones', () => {
    const inherited: Principal = { id: 'token:x', type: 'token', admin: false, attributes: Object.create({ namespace: 'x' }) };
    expect(matches('${principal.namespace}', 'x', inherited)).toBe(false);
  });
});

describe('compileGlob: syntax errors', () => {
  it.each([
    ['', /is empty/],
    ['**', /"\*\*" is not a glob operator/],
    ['a**b', /"\*\*" is not a glob operator/],
    ['${principal.nope}', /unknown variable \$\{principal\.nope\}/],
    ['${namespace}', /unknown variable \$\{namespace\}/],
    ['${}', /unknown variable/],
    ['${principal.namespace', /a variable must be written \$\{principal\.NAME\}/],
    ['$x', /a variable must be written/],
    ['a$', /a variable must be written/],
    ['{principal.namespace}', /a variable must be written/],
    ['a}b', /a variable must be written/],
    ['payments db', /cannot occur in a match/],
    ['payments?', /cannot occur in a match/],
    ['payments/db', /cannot occur in a match/],
    ['päyments', /cannot occur in a match/],
  ])('refuses %j (%s)', (source, message) => {
    expect(syntaxErrorOf(source).message).toMatch(message);
  });

  it('lists the known variables when a variable is unknown', () => {
    const message = syntaxErrorOf('${principal.nope}').message;
    for (const variable of POLICY_VARIABLES) expect(message).toContain(`\${${variable}}`);
  });

  it('knows ${principal.id}, ${principal.type} and every authenticator attribute', () => {
    expect(POLICY_VARIABLES).toEqual([
      'principal.id',
      'principal.type',
      'principal.namespace',
      'principal.serviceAccount',
      'principal.podName',
      'principal.podUid',
      'principal.issuer',
      'principal.trustDomain',
      'principal.path',
      'principal.tokenId',
      'principal.tokenName',
      'principal.accessKeyId',
    ]);
  });

  it('refuses a glob longer than maxLength', () => {
    expect(syntaxErrorOf('a'.repeat(257)).message).toMatch(/longer than 256 characters/);
  });

  it('accepts a glob of exactly maxLength', () => {
    expect(() => compileGlob('a'.repeat(256), KEY_GLOB)).not.toThrow();
  });

  it('refuses variables where they are not allowed', () => {
    expect(syntaxErrorOf('k8s:${principal.namespace}:*', PRINCIPAL_GLOB).message).toMatch(/variables are not allowed here/);
  });

  it('refuses a character outside the charset even after a variable', () => {
    expect(syntaxErrorOf('${principal.namespace} key').message).toMatch(/cannot occur in a match/);
  });
});

describe('compileGlob: the compiled form', () => {
  it('keeps the source', () => {
    expect(compileGlob('payments-*', KEY_GLOB).source).toBe('payments-*');
  });

  it('is frozen', () => {
    expect(Object.isFrozen(compileGlob('payments-*', KEY_GLOB))).toBe(true);
  });

  it.each<[string, boolean]>([
    ['payments-*', false],
    ['${principal.namespace}-*', true],
  ])('%j has variables: %s', (source, expected) => {
    const glob: Glob = compileGlob(source, KEY_GLOB);
    expect(glob.hasVariables).toBe(expected);
    expect(glob.literalPieces === undefined).toBe(expected);
  });
});
