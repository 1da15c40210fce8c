import type { AuditEvent } from './audit-record.js';

/**
 * The method of a chain's seal record. Parentheses are not token characters (RFC 9110 §5.6.2), so no HTTP request
 * can carry this method; the writer also refuses it from anything but its own `seal()`, so a request can never
 * produce a record that reads as a seal.
 */
export const SEAL_METHOD = '(seal)';
/** The seal's action: not an `Action` of the policy language, so no request is ever recorded with it. */
export const SEAL_ACTION = 'audit:seal';

/**
 * The last record of a chain whose process shut down cleanly. It is chained and MAC'd like every other record, so
 * only the audit key holder can write one, and the verifier reports a chain that ends without it (a crash, or a
 * tail cut off) unless the chain is still live. It uses the existing record fields, so the record format and its
 * canonical encoding are unchanged.
 */
export function sealEvent(replicaId: string, time: Date): AuditEvent {
  return {
    time,
    requestId: 'seal',
    replicaId,
    principalId: null,
    principalType: null,
    tokenId: null,
    sourceAddress: null,
    method: SEAL_METHOD,
    route: null,
    action: SEAL_ACTION,
    keyName: null,
    keyId: null,
    keyVersion: null,
    contextKeys: [],
    decision: null,
    decisionReason: null,
    policy: null,
    statement: null,
    outcome: 'sealed',
    status: 0,
    latencyMs: 0,
  };
}

/** Whether a record (or event) is a seal. Only the method decides: nothing else may ever carry it. */
export function isSeal(event: Pick<AuditEvent, 'method'>): boolean {
  return event.method === SEAL_METHOD;
}
