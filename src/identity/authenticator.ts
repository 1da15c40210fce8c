import type { X509Certificate } from 'node:crypto';
import { KeyholdError } from '../errors.js';
import type { Principal } from '../context/principal.js';

/** What a request presents, taken from it once by the HTTP layer. Authenticators never see the request itself. */
export interface Credentials {
  /** The bearer credential of the `Authorization` header, already checked for shape and length. */
  readonly bearer: string | undefined;
  /**
   * The client certificate of a TLS connection, present only when the server checks client certificates and the
   * client sent one. `chainVerified` is Node's verdict on the chain against the configured client CA.
   */
  readonly peerCertificate: PeerCertificate | undefined;
}

export interface PeerCertificate {
  readonly leaf: X509Certificate;
  readonly chainVerified: boolean;
  /** Node's reason when the chain did not verify (`CERT_HAS_EXPIRED`, …), for logs; never shown to the caller. */
  readonly verifyError: string | undefined;
}

/**
 * Turns credentials into a principal. The first authenticator in the chain that applies decides: one that applies
 * and fails rejects the request, it never falls through to the next.
 */
export interface Authenticator {
  /** Whether these credentials are this authenticator's to judge. Cheap and synchronous. */
  applies(credentials: Credentials): boolean;
  /**
   * The principal, or an {@link AuthenticationFailedError}. Answered synchronously when a verified credential is
   * cached, so the hot path awaits nothing.
   */
  authenticate(credentials: Credentials): Principal | Promise<Principal>;
}

/** Why authentication failed, for the log and the audit record; the caller only ever sees one message. */
export type AuthenticationFailure =
  | 'missing'
  | 'malformed'
  | 'unknown-token'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-signature'
  | 'unknown-key'
  | 'bad-algorithm'
  | 'bad-issuer'
  | 'bad-audience'
  | 'bad-subject'
  | 'untrusted-certificate'
  | 'bad-svid'
  | 'foreign-trust-domain';

/**
 * Every rejected credential gets the same answer, so the response tells an attacker nothing about which check
 * failed. The reason is kept for the log and the audit record.
 */
export class AuthenticationFailedError extends KeyholdError {
  readonly reason: AuthenticationFailure;

  constructor(reason: AuthenticationFailure, options?: ErrorOptions) {
    super(
      'KH_ERR_UNAUTHENTICATED',
      reason === 'missing' ? 'Credentials are required' : 'The credentials are not valid',
      options,
    );
    this.name = 'AuthenticationFailedError';
    this.reason = reason;
  }
}

/** Runs the chain: the first authenticator that applies decides; with none, the request has no credentials. */
export class AuthenticatorChain {
  readonly #authenticators: readonly Authenticator[];

  constructor(authenticators: readonly Authenticator[]) {
    this.#authenticators = authenticators;
  }

  authenticate(credentials: Credentials): Principal | Promise<Principal> {
    for (const authenticator of this.#authenticators) {
      if (authenticator.applies(credentials)) return authenticator.authenticate(credentials);
    }
    throw new AuthenticationFailedError('missing');
  }
}
