import { PRINCIPAL_ATTRIBUTES, type Principal } from '../context/principal.js';

/**
 * Policy globs: `*` matches any run of characters, including none; every other character is literal. In key globs
 * and condition values, `${principal.ATTRIBUTE}` stands for the caller's attribute. A substituted value is always
 * literal, so an attribute that happens to contain `*` cannot widen a grant.
 */

/** The variables a policy may use: `${principal.id}`, `${principal.type}` and every authenticator attribute. */
export const POLICY_VARIABLES: readonly string[] = ['id', 'type', ...PRINCIPAL_ATTRIBUTES].map((name) => `principal.${name}`);
const KNOWN_VARIABLES = new Set(POLICY_VARIABLES);

type Part = { readonly literal: string } | { readonly variable: string };

/** A compiled glob: the literal-or-variable parts between its stars. */
export interface Glob {
  readonly source: string;
  /** Pieces between `*`; a glob without `*` has one. */
  readonly pieces: readonly (readonly Part[])[];
  readonly hasVariables: boolean;
  /** For globs without variables: the pieces as plain strings, so matching substitutes nothing. */
  readonly literalPieces: readonly string[] | undefined;
}

export class GlobSyntaxError extends Error {}

const VARIABLE = /\$\{([^}]*)\}/g;

function parseParts(text: string, allowVariables: boolean, charset: RegExp): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const match of text.matchAll(VARIABLE)) {
    if (!allowVariables) throw new GlobSyntaxError('variables are not allowed here');
    if (match.index > last) parts.push({ literal: text.slice(last, match.index) });
    const name = match[1] as string;
    if (!KNOWN_VARIABLES.has(name)) {
      throw new GlobSyntaxError(`unknown variable \${${name}}; known: ${POLICY_VARIABLES.map((v) => `\${${v}}`).join(', ')}`);
    }
    parts.push({ variable: name.slice('principal.'.length) });
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push({ literal: text.slice(last) });
  for (const part of parts) {
    if ('literal' in part) {
      if (part.literal.includes('$') || part.literal.includes('{') || part.literal.includes('}')) {
        throw new GlobSyntaxError('a variable must be written ${principal.NAME}');
      }
      if (!charset.test(part.literal)) throw new GlobSyntaxError(`contains a character that cannot occur in a match`);
    }
  }
  return parts;
}

/**
 * Compiles a glob. `charset` is what the matched names may contain (besides `*`), so a glob that could never match
 * (a typo such as a space, or `?` from another glob dialect) is refused when the policy is written.
 */
export function compileGlob(source: string, options: { allowVariables: boolean; charset: RegExp; maxLength: number }): Glob {
  if (source.length === 0) throw new GlobSyntaxError('is empty');
  if (source.length > options.maxLength) throw new GlobSyntaxError(`is longer than ${options.maxLength} characters`);
  if (source.includes('**')) throw new GlobSyntaxError('"**" is not a glob operator; "*" already matches any run of characters');
  const pieces = source.split('*').map((piece) => parseParts(piece, options.allowVariables, options.charset));
  const hasVariables = pieces.some((parts) => parts.some((part) => 'variable' in part));
  return Object.freeze({
    source,
    pieces,
    hasVariables,
    literalPieces: hasVariables ? undefined : pieces.map((parts) => parts.map((part) => ('literal' in part ? part.literal : '')).join('')),
  });
}

/** The value of `${principal.NAME}` for this principal, or undefined when it has no such attribute. */
export function principalVariable(principal: Principal, name: string): string | undefined {
  if (name === 'id') return principal.id;
  if (name === 'type') return principal.type;
  return Object.hasOwn(principal.attributes, name) ? principal.attributes[name] : undefined;
}

/** Substitutes the parts; undefined when the principal lacks a variable's attribute. */
export function substitute(parts: readonly Part[], principal: Principal): string | undefined {
  let text = '';
  for (const part of parts) {
    if ('literal' in part) {
      text += part.literal;
    } else {
      const value = principalVariable(principal, part.variable);
      if (value === undefined) return undefined;
      text += value;
    }
  }
  return text;
}

/** `*`-only wildcard matching: the first piece is a prefix, the last a suffix, the rest occur in order between. */
function matchPieces(pieces: readonly string[], text: string): boolean {
  const first = pieces[0] as string;
  if (pieces.length === 1) return text === first;
  const last = pieces[pieces.length - 1] as string;
  if (text.length < first.length + last.length || !text.startsWith(first) || !text.endsWith(last)) return false;
  let position = first.length;
  const end = text.length - last.length;
  for (let index = 1; index < pieces.length - 1; index += 1) {
    const piece = pieces[index] as string;
    const found = text.indexOf(piece, position);
    if (found === -1 || found + piece.length > end) return false;
    position = found + piece.length;
  }
  return true;
}

/**
 * Whether `text` matches the glob for this principal. A glob whose variable the principal lacks matches nothing:
 * an allow cannot be stretched to principals it was not written for.
 */
export function matchGlob(glob: Glob, text: string, principal: Principal): boolean {
  if (glob.literalPieces !== undefined) return matchPieces(glob.literalPieces, text);
  const pieces: string[] = [];
  for (const parts of glob.pieces) {
    const piece = substitute(parts, principal);
    if (piece === undefined) return false;
    pieces.push(piece);
  }
  return matchPieces(pieces, text);
}
