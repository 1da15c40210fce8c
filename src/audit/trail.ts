import type { Decision } from '../policy/evaluate.js';
import type { Principal } from '../identity/principal.js';
import type { Action } from '../policy/actions.js';

/**
 * What a request did, noted as it runs, for its audit record: the authorisation decisions it received and the key
 * (and version) it used. Services write it; the HTTP layer turns it into the record when the answer is ready.
 */
export class AuditTrail {
  /** The action and key of the decision that counts: the first denial, else the last allowance. */
  action: Action | 'batch' | undefined;
  keyName: string | undefined;
  decision: Decision | undefined;
  keyId: string | undefined;
  keyVersion: number | undefined;

  decided(action: Action, keyName: string | undefined, decision: Decision): void {
    if (this.decision !== undefined && !this.decision.allowed) return;
    if (keyName !== this.keyName) {
      // A key used before belongs to another decision; the record must not pair this key's name with its id.
      this.keyId = undefined;
      this.keyVersion = undefined;
    }
    this.action = action;
    this.keyName = keyName;
    this.decision = decision;
  }

  /**
   * A batch is one request of many operations: its record names the first refusal, if any; otherwise the action
   * `batch` and no single key.
   */
  summariseBatch(): void {
    if (this.decision !== undefined && !this.decision.allowed) return;
    this.action = 'batch';
    this.keyName = undefined;
    this.keyId = undefined;
    this.keyVersion = undefined;
  }

  usedKey(keyId: string, keyName: string, keyVersion: number): void {
    if (this.decision !== undefined && !this.decision.allowed) return;
    this.keyId = keyId;
    this.keyName ??= keyName;
    this.keyVersion = keyVersion;
  }
}

/** The authenticated caller of one request: who it is, and the trail its audit record is made from. */
export interface Caller {
  readonly principal: Principal;
  readonly trail: AuditTrail;
}

export function callerOf(principal: Principal): Caller {
  return { principal, trail: new AuditTrail() };
}
