import { KeyholdError } from '../errors.js';
import type { EncryptionContext } from '../crypto/encryption-context.js';
import type { Caller } from '../context/caller.js';
import type { Principal } from '../context/principal.js';
import type { Action, Resource } from '../context/actions.js';
import { ADMIN_DECISION, allowedKeyPrefixes, evaluate, mayEverUseKey, maySomeKeyBeAllowed, type PolicySet } from './evaluate.js';
import type { Decision } from '../context/decision.js';

/**
 * The one seam every authorisation decision goes through. Services call it before they act, with the resource the
 * action really touches (on decrypt, the key the ciphertext names).
 */
export interface Authorizer {
  /**
   * The decision when allowed; throws {@link KeyholdError} `KH_ERR_FORBIDDEN` when not. Either way the decision is
   * noted in the caller's audit trail.
   */
  authorize(caller: Caller, action: Action, resource: Resource, context?: EncryptionContext): Decision;
  /** Whether the principal may act, without throwing: for filtering lists. */
  isAllowed(principal: Principal, action: Action, resource: Resource): boolean;
  /**
   * Whether the principal may use the key for anything, in some encryption context: what decides which key events it
   * sees and whether it may learn that the key exists. The request path's decisions agree with it by construction.
   */
  mayEverUseKey(principal: Principal, keyName: string): boolean;
  /**
   * What the names of the keys the principal may be allowed `action` on start with (see `allowedKeyPrefixes`): `['']`
   * for an admin, none when no key can be allowed. For narrowing a scan; each key found is still checked.
   */
  keyPrefixesAllowed(principal: Principal, action: Action): readonly string[];
  /** Whether any key could be allowed `action` for the principal; when not, it is refused without a key lookup. */
  maySomeKeyBeAllowed(principal: Principal, action: Action): boolean;
}

/** The 403 names the action and the key, never a policy or its text. */
export function forbidden(action: Action, resource: Resource): KeyholdError {
  const target = resource.keyName === undefined ? '' : ` on key ${JSON.stringify(resource.keyName)}`;
  return new KeyholdError('KH_ERR_FORBIDDEN', `Not allowed to ${action}${target}`);
}

/** Told of every refusal `authorize` makes; the metrics module implements it (`src/metrics/`). */
export interface DenialObserver {
  denied(principal: Principal, action: Action): void;
}

/**
 * Admins bypass policies; every other principal is evaluated against the current policy set, deny by default.
 * `policies` returns the snapshot the request runs under; it is brought up to date before the request is handled.
 */
export class PolicyAuthorizer implements Authorizer {
  readonly #policies: () => PolicySet;
  readonly #observer: DenialObserver | undefined;

  constructor(policies: () => PolicySet, observer?: DenialObserver) {
    this.#policies = policies;
    this.#observer = observer;
  }

  authorize(caller: Caller, action: Action, resource: Resource, context?: EncryptionContext): Decision {
    const { principal } = caller;
    const decision = principal.admin ? ADMIN_DECISION : evaluate(this.#policies(), principal, action, resource, context);
    caller.trail.decided(action, resource.keyName, decision);
    if (!decision.allowed) {
      this.#observer?.denied(principal, action);
      throw forbidden(action, resource);
    }
    return decision;
  }

  isAllowed(principal: Principal, action: Action, resource: Resource): boolean {
    return principal.admin || evaluate(this.#policies(), principal, action, resource, undefined).allowed;
  }

  mayEverUseKey(principal: Principal, keyName: string): boolean {
    return principal.admin || mayEverUseKey(this.#policies(), principal, keyName);
  }

  keyPrefixesAllowed(principal: Principal, action: Action): readonly string[] {
    return principal.admin ? [''] : allowedKeyPrefixes(this.#policies(), principal, action);
  }

  maySomeKeyBeAllowed(principal: Principal, action: Action): boolean {
    return principal.admin || maySomeKeyBeAllowed(this.#policies(), principal, action);
  }
}
