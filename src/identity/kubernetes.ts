// SKELETON — to be implemented (helper K). Contract used by services.ts.
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { KubernetesIssuerConfig } from './auth-config.js';
import { AuthenticationFailedError, type Authenticator, type Credentials } from './authenticator.js';
import type { Principal } from './principal.js';

export interface KubernetesAuthenticatorOptions {
  readonly issuers: readonly KubernetesIssuerConfig[];
  readonly clock: Clock;
  readonly logger: Logger;
}

export class KubernetesAuthenticator implements Authenticator {
  constructor(_options: KubernetesAuthenticatorOptions) {}
  applies(_credentials: Credentials): boolean {
    return false;
  }
  authenticate(_credentials: Credentials): Principal | Promise<Principal> {
    throw new AuthenticationFailedError('malformed');
  }
}

export async function createKubernetesAuthenticator(options: KubernetesAuthenticatorOptions): Promise<KubernetesAuthenticator> {
  return new KubernetesAuthenticator(options);
}
