import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Principal } from '../auth/principal.js';
import { KeyholdError } from '../errors.js';
import type { TokenService } from '../tokens/token-service.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every route that is not public. */
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Public routes (health, readiness, the OpenAPI document) need no credentials. */
    public?: boolean;
  }
}

/** Longer than any token we issue or any JWT we would accept; refused before hashing. */
const MAX_CREDENTIAL_LENGTH = 8192;
const BEARER = /^Bearer ([\x21-\x7e]+)$/;

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string' || header.length > MAX_CREDENTIAL_LENGTH + 7) return undefined;
  return BEARER.exec(header)?.[1];
}

/**
 * Authentication runs once per request, in an onRequest hook that every non-public route gets when it is
 * registered, before the body is read: a request without valid credentials costs no parsing. Handlers see
 * `request.principal` and never parse credentials themselves. Call this before any route is registered.
 */
export function registerAuthentication(app: FastifyInstance, tokens: TokenService): void {
  app.decorateRequest('principal', null as unknown as Principal);

  const authenticate: onRequestHookHandler = (request, _reply, done) => {
    const secret = bearerOf(request);
    if (secret === undefined) {
      done(new KeyholdError('KH_ERR_UNAUTHENTICATED', 'A bearer token is required'));
      return;
    }
    const accept = (principal: Principal | undefined): void => {
      if (principal === undefined) {
        done(new KeyholdError('KH_ERR_UNAUTHENTICATED', 'The credentials are not valid'));
        return;
      }
      request.principal = principal;
      done();
    };
    let outcome: ReturnType<TokenService['authenticate']>;
    try {
      outcome = tokens.authenticate(secret);
    } catch (error) {
      done(error as Error);
      return;
    }
    // A verified token is answered from memory synchronously; only a cache miss waits for the store.
    if (outcome instanceof Promise) outcome.then(accept, (error: Error) => done(error));
    else accept(outcome);
  };

  app.addHook('onRoute', (route) => {
    if (route.config?.public === true) return;
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [authenticate, ...existing];
  });
}
