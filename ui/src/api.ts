/** The console's only way to the API: same origin, bearer token on every call, problems turned into ApiError. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Api {
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  del(path: string): Promise<void>;
}

export function createApi(token: string, onUnauthenticated: () => void): Api {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!response.ok) {
      const problem = (parsed ?? {}) as { code?: string; detail?: string };
      if (response.status === 401) onUnauthenticated();
      throw new ApiError(response.status, problem.code ?? `HTTP_${response.status}`, problem.detail ?? response.statusText);
    }
    return parsed as T;
  };
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body ?? {}),
    del: async (path) => {
      await call('DELETE', path);
    },
  };
}

/** Reads every page of a paginated list (`nextCursor`), up to `max` items. */
export async function readAll<T>(api: Api, path: string, field: string, max = 2000): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const separator = path.includes('?') ? '&' : '?';
    const page = await api.get<Record<string, unknown>>(`${path}${separator}limit=500${cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
    items.push(...((page[field] as T[] | undefined) ?? []));
    cursor = page.nextCursor as string | undefined;
  } while (cursor !== undefined && items.length < max);
  return items;
}

/** The token lives in this tab's sessionStorage only: never a cookie, so no request carries it unasked (no CSRF). */
const TOKEN_KEY = 'keyhold.token';
export const tokenStore = {
  read: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  write: (token: string): void => sessionStorage.setItem(TOKEN_KEY, token),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};
