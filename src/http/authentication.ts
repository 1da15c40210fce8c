import type { FastifyInstance, FastifyRequest } from 'fastify';
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
 * Authentication runs once, in one onRequest hook, before the body is read: a request without valid credentials
 * costs no parsing. Handlers see `request.principal` and never parse credentials themselves.
 */
export function registerAuthentication(app: FastifyInstance, tokens: TokenService): void {
  app.decorateRequest('principal', null as unknown as Principal);
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.public === true) return;
    // Unknown routes are answered 404 by the not-found handler; there is nothing to protect.
    if (request.routeOptions.url === undefined) return;
    const secret = bearerOf(request);
    if (secret === undefined) throw new KeyholdError('KH_ERR_UNAUTHENTICATED', 'A bearer token is required');
    const principal = await tokens.authenticate(secret);
    if (principal === undefined) throw new KeyholdError('KH_ERR_UNAUTHENTICATED', 'The credentials are not valid');
    request.principal = principal;
  });
}
