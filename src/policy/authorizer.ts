import { KeyholdError } from '../errors.js';
import type { EncryptionContext } from '../crypto/encryption-context.js';
import type { Principal } from '../identity/principal.js';
import type { Action, Resource } from './actions.js';

/**
 * The one seam every authorisation decision goes through. Per-workload policies plug in here; services call it
 * before they act, with the resource the action really touches.
 */
export interface Authorizer {
  /** Throws {@link KeyholdError} `KH_ERR_FORBIDDEN` when the principal may not act. */
  authorize(principal: Principal, action: Action, resource: Resource, context?: EncryptionContext): void;
}

export function forbidden(action: Action, resource: Resource): KeyholdError {
  const target = resource.keyName === undefined ? '' : ` on key ${JSON.stringify(resource.keyName)}`;
  return new KeyholdError('KH_ERR_FORBIDDEN', `Not allowed to ${action}${target}`);
}

/** Until policies exist: admins may do everything, everyone else nothing (deny by default). */
export class AdminOnlyAuthorizer implements Authorizer {
  authorize(principal: Principal, action: Action, resource: Resource): void {
    if (!principal.admin) throw forbidden(action, resource);
  }
}
