// SKELETON — to be implemented (helper S). Contract used by services.ts.
import { AuthenticationFailedError, type Authenticator, type Credentials } from './authenticator.js';
import type { Principal } from './principal.js';

export interface SpiffeAuthenticatorOptions {
  readonly trustDomains: readonly string[];
}

export class SpiffeAuthenticator implements Authenticator {
  constructor(_options: SpiffeAuthenticatorOptions) {}
  applies(credentials: Credentials): boolean {
    return credentials.peerCertificate !== undefined;
  }
  authenticate(_credentials: Credentials): Principal | Promise<Principal> {
    throw new AuthenticationFailedError('bad-svid');
  }
}
