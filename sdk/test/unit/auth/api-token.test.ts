import { describe, expect, it } from 'vitest';
import { apiToken } from '../../../src/auth/api-token.js';
import { ConfigurationError } from '../../../src/errors.js';

describe('apiToken', () => {
  it('sends the token as a bearer credential', async () => {
    const credentials = await apiToken('kh_abc.DEF-123_~').credentials();
    expect(credentials).toEqual({ headers: { authorization: 'Bearer kh_abc.DEF-123_~' } });
    expect(credentials.tls).toBeUndefined();
  });

  it('hands out the same frozen credentials every time, since a static token cannot change', async () => {
    const provider = apiToken('kh_token');
    const first = await provider.credentials();
    provider.invalidate();
    expect(await provider.credentials()).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.headers)).toBe(true);
  });

  it('keeps the token out of the provider object', () => {
    expect(JSON.stringify(apiToken('kh_hidden'))).not.toContain('kh_hidden');
    expect(Object.values(apiToken('kh_hidden')).every((v) => typeof v === 'function')).toBe(true);
  });

  it('refuses an empty token', () => {
    expect(() => apiToken('')).toThrow(ConfigurationError);
  });

  it.each([
    ['a trailing newline', 'kh_secret1\n'],
    ['a space', 'kh secret2'],
    ['a tab', 'kh\tsecret3'],
    ['a carriage return', 'kh_secret4\r'],
    ['a NUL', 'kh_secret5\u0000'],
    ['DEL', 'kh_secret6\u007f'],
    ['a non-ASCII letter', 'kh_sécret7'],
  ])('refuses a token with %s, without quoting it', (_name, token) => {
    let error: unknown;
    try {
      apiToken(token);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).not.toMatch(/secret|sécret/);
  });

  it('refuses a token that is not a string', () => {
    expect(() => apiToken(42 as unknown as string)).toThrow(ConfigurationError);
  });
});
