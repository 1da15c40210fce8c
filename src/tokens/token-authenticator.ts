import type { TokenService } from './token-service.js';
import { AuthenticationFailedError, type Authenticator, type Credentials } from '../identity/authenticator.js';
import type { Principal } from '../context/principal.js';

function accept(principal: Principal | undefined): Principal {
  if (principal === undefined) throw new AuthenticationFailedError('unknown-token');
  return principal;
}

/** API tokens: any bearer credential that an earlier authenticator did not claim. */
export class TokenAuthenticator implements Authenticator {
  readonly #tokens: TokenService;

  constructor(tokens: TokenService) {
    this.#tokens = tokens;
  }

  applies(credentials: Credentials): boolean {
    return credentials.bearer !== undefined;
  }

  authenticate(credentials: Credentials): Principal | Promise<Principal> {
    const outcome = this.#tokens.authenticate(credentials.bearer as string);
    return outcome instanceof Promise ? outcome.then(accept) : accept(outcome);
  }
}
