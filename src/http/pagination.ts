import { ValidationError } from '../errors.js';

export const DEFAULT_PAGE_LIMIT = 100;

/** The page size a validated `limit` parameter asks for; absent or empty means the default. */
export function pageLimit(raw: string | undefined): number {
  return raw ? Number(raw) : DEFAULT_PAGE_LIMIT;
}

/** A query parameter that is absent or empty is not given. */
export function given(raw: string | undefined): string | undefined {
  return raw ? raw : undefined;
}

/**
 * A page cursor of two strings, the sort key and the id that breaks its ties (a name and an id): the base64url of
 * their JSON array. Opaque to clients, so it may change shape; {@link decodePairCursor} reads it back.
 */
export function encodePairCursor(first: string, second: string): string {
  return Buffer.from(JSON.stringify([first, second]), 'utf8').toString('base64url');
}

/** The two strings of a cursor from {@link encodePairCursor}, each held to its pattern; anything else is a 400. */
export function decodePairCursor(cursor: string, patterns: readonly [RegExp, RegExp]): [string, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === 'string' &&
      typeof value[1] === 'string' &&
      patterns[0].test(value[0]) &&
      patterns[1].test(value[1])
    ) {
      return [value[0], value[1]];
    }
  } catch {
    // fall through to the validation error
  }
  throw new ValidationError('cursor is not valid');
}
