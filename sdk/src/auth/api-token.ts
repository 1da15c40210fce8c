import { ConfigurationError } from '../errors.js';
import type { AuthProvider, Credentials } from './auth-provider.js';

/**
 * What the service accepts in `Authorization: Bearer <token>`: visible ASCII only (RFC 6750 §2.1 is stricter
 * still). Whitespace and control characters are refused here rather than by the service, because a stray newline
 * from a secret file would otherwise surface as a puzzling 401, or as a header Node refuses to send.
 */
const TOKEN = /^[\x21-\x7e]+$/;

/**
 * Authenticates with a Keyhold API token, sent as `Authorization: Bearer <token>`.
 *
 * The token is checked once, here; an error names the problem but never the token. A static token cannot be
 * renewed, so `invalidate()` does nothing, and a token the service refuses ends the call as UNAUTHENTICATED.
 *
 * @throws ConfigurationError when the token is empty or holds whitespace, control or non-ASCII characters.
 */
export function apiToken(token: string): AuthProvider {
  if (typeof token !== 'string' || token.length === 0) throw new ConfigurationError('The API token is empty');
  if (!TOKEN.test(token)) {
    throw new ConfigurationError('The API token holds whitespace, control or non-ASCII characters (trim it?)');
  }
  const credentials: Credentials = Object.freeze({ headers: Object.freeze({ authorization: `Bearer ${token}` }) });
  const ready = Promise.resolve(credentials);
  // The token lives in this closure only: the provider object itself prints as two functions.
  return Object.freeze({
    credentials: () => ready,
    invalidate: () => undefined,
  });
}
