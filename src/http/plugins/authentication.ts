import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import { AuthenticationFailedError, type AuthenticatorChain, type Credentials, type PeerCertificate } from '../../identity/authenticator.js';
import { callerOf, type Caller } from '../../context/caller.js';
import type { Principal } from '../../context/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every route that is not public: the principal and its audit trail. */
    caller: Caller;
  }
  interface FastifyContextConfig {
    /** Public routes (health, readiness, the OpenAPI document) need no credentials. */
    public?: boolean;
    /**
     * The route authenticates each request itself once its body is read: a SigV4 signature covers the body, so it
     * cannot be checked before it. The handler sets `request.caller`.
     */
    signedBody?: boolean;
  }
}

/** Longer than any token we issue or any projected service-account JWT; refused before hashing or parsing. */
export const MAX_CREDENTIAL_LENGTH = 8192;
const BEARER = /^Bearer ([\x21-\x7e]+)$/;

/** The client certificate is fixed for the life of a TLS connection, so it is read once per socket. */
const peerCertificates = new WeakMap<TLSSocket, PeerCertificate | null>();

function peerCertificateOf(request: FastifyRequest): PeerCertificate | undefined {
  const socket = request.raw.socket as TLSSocket;
  if (socket.encrypted !== true) return undefined;
  let peer = peerCertificates.get(socket);
  if (peer === undefined) {
    const leaf = socket.getPeerX509Certificate();
    const error = socket.authorizationError as Error | string | null | undefined;
    peer =
      leaf === undefined
        ? null
        : Object.freeze({
            leaf,
            chainVerified: socket.authorized,
            verifyError: error == null ? undefined : typeof error === 'string' ? error : ((error as NodeJS.ErrnoException).code ?? error.message),
          });
    peerCertificates.set(socket, peer);
  }
  return peer ?? undefined;
}

/** Reads the credentials once; an `Authorization` header that is not a well-formed bearer counts as malformed. */
function credentialsOf(request: FastifyRequest): Credentials {
  const header = request.headers.authorization;
  let bearer: string | undefined;
  if (header !== undefined) {
    const match = typeof header === 'string' && header.length <= MAX_CREDENTIAL_LENGTH + 7 ? BEARER.exec(header) : null;
    if (match === null) throw new AuthenticationFailedError('malformed');
    bearer = match[1];
  }
  return { bearer, peerCertificate: peerCertificateOf(request) };
}

/** Whether a route's requests get the bearer/certificate authentication hook (and what follows it) before the body. */
export function isAuthenticatedBeforeBody(config: { public?: boolean; signedBody?: boolean } | undefined): boolean {
  return config?.public !== true && config?.signedBody !== true;
}

export interface AuthenticationHooks {
  readonly authenticators: AuthenticatorChain;
  /**
   * Runs after a principal is established and before the body is read: brings per-request state (the policy
   * snapshot) up to date, so that authorisation later in the request is a synchronous lookup. May return nothing
   * when there is nothing to wait for.
   */
  readonly beforeHandling?: (principal: Principal) => void | Promise<void>;
}

/**
 * Authentication runs once per request, in an onRequest hook that every non-public route gets when it is
 * registered, before the body is read: a request without valid credentials costs no parsing. Handlers see
 * `request.principal` and never parse credentials themselves. Call this before any route is registered.
 */
export function registerAuthentication(app: FastifyInstance, hooks: AuthenticationHooks): void {
  app.decorateRequest('caller', null as unknown as Caller);

  const authenticate: onRequestHookHandler = (request, _reply, done) => {
    const accept = (principal: Principal): void => {
      request.caller = callerOf(principal);
      let ready: void | Promise<void>;
      try {
        ready = hooks.beforeHandling?.(principal);
      } catch (error) {
        done(error as Error);
        return;
      }
      if (ready instanceof Promise) ready.then(() => done(), (error: Error) => done(error));
      else done();
    };
    let outcome: Principal | Promise<Principal>;
    try {
      outcome = hooks.authenticators.authenticate(credentialsOf(request));
    } catch (error) {
      done(error as Error);
      return;
    }
    // A verified credential is answered from memory synchronously; only a cache miss waits.
    if (outcome instanceof Promise) outcome.then(accept, (error: Error) => done(error));
    else accept(outcome);
  };

  app.addHook('onRoute', (route) => {
    if (!isAuthenticatedBeforeBody(route.config)) return;
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [authenticate, ...existing];
  });
}
