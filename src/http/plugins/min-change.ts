import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import type { ChangeBarrier } from '../../changes/change.js';
import { UnavailableError, ValidationError } from '../../errors.js';
import type { Principal } from '../../context/principal.js';
import { isAuthenticatedBeforeBody } from './authentication.js';

/**
 * `Keyhold-Min-Change: <seq>`: answer only from state that includes change `seq`. A client sends the last event id
 * of its `GET /v1/events` stream (the change sequence), so that after it purges a key on an event from one replica,
 * another replica that has not applied the change yet does not hand it a data key under the revoked state.
 */
export const MIN_CHANGE_HEADER = 'keyhold-min-change';

/**
 * How long a request waits for this replica to apply the change it names. Normally it is tens of milliseconds
 * behind; a replica that cannot catch up within this is answered 503, and the client's retry may reach another.
 */
export const MIN_CHANGE_WAIT_MS = 2000;

/** Decimal, no sign or leading zero, at most 2^53 - 1 so that it is exact as a number. */
const SEQUENCE = /^(?:0|[1-9][0-9]{0,15})$/;

export interface MinChangeOptions {
  readonly barrier: ChangeBarrier;
  /**
   * Runs again after a wait, for state that authentication brought up to date before the catch-up may have made it
   * stale again (the policy snapshot, which the catch-up invalidates when a policy changed).
   */
  readonly afterCatchUp?: (principal: Principal) => void | Promise<void>;
}

/** The sequence a request names, or undefined without the header. A repeated or malformed header is refused. */
export function minChangeOf(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const seq = typeof header === 'string' && SEQUENCE.test(header) ? Number(header) : Number.NaN;
  if (!Number.isSafeInteger(seq)) throw new ValidationError('Keyhold-Min-Change must be one decimal change sequence from 0 to 2^53 - 1');
  return seq;
}

/**
 * Makes every authenticated route honour `Keyhold-Min-Change`: a replica behind the named sequence catches up
 * first, waiting at most {@link MIN_CHANGE_WAIT_MS}, and answers 503 (fail closed) if it still cannot vouch for it. It runs after
 * authentication, so only a caller with valid credentials can make a replica read the feed, and a read it causes is
 * shared with every other waiting request. Without the header, or when the replica is already there, it costs a
 * header lookup. Call it after `registerAuthentication` and before any route is registered.
 */
export function registerMinChange(app: FastifyInstance, options: MinChangeOptions): void {
  const { barrier, afterCatchUp } = options;

  const awaitMinChange: onRequestHookHandler = (request, _reply, done) => {
    let seq: number | undefined;
    try {
      seq = minChangeOf(request.headers[MIN_CHANGE_HEADER]);
    } catch (error) {
      done(error as Error);
      return;
    }
    if (seq === undefined || barrier.appliedSeq >= seq) {
      done();
      return;
    }
    barrier
      .catchUpTo(seq, MIN_CHANGE_WAIT_MS)
      .then((caughtUp) => {
        if (!caughtUp) throw new UnavailableError('This replica has not applied the change named by Keyhold-Min-Change yet; retry');
        return afterCatchUp?.(request.caller.principal);
      })
      .then(() => done(), (error: Error) => done(error));
  };

  // Appended to the hooks authentication put first on each non-public route, so it runs once the caller is known.
  app.addHook('onRoute', (route) => {
    if (!isAuthenticatedBeforeBody(route.config)) return;
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [...existing, awaitMinChange];
  });
}
