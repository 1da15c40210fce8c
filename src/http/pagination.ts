export const DEFAULT_PAGE_LIMIT = 100;

/** The page size a validated `limit` parameter asks for; absent or empty means the default. */
export function pageLimit(raw: string | undefined): number {
  return raw ? Number(raw) : DEFAULT_PAGE_LIMIT;
}

/** A query parameter that is absent or empty is not given. */
export function given(raw: string | undefined): string | undefined {
  return raw ? raw : undefined;
}
