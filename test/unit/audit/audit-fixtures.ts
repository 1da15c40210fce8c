import type { AuditEvent, AuditRecord } from '../../../src/audit/audit-record.js';
import { genesisHead, linkAuditEvent, type ChainHead } from '../../../src/audit/chain.js';
import type { AuditBatch } from '../../../src/context/caller.js';

export const AUDIT_KEY = Buffer.alloc(32, 0x61);
export const OTHER_AUDIT_KEY = Buffer.alloc(32, 0x62);
export const REPLICA = 'replica-a';

/** A datakey request by a Kubernetes workload that a policy allowed. */
export function auditEvent(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    time: new Date('2026-11-28T17:23:47.123Z'),
    requestId: 'req-0001',
    replicaId: REPLICA,
    principalId: 'k8s:payments:api',
    principalType: 'kubernetes',
    tokenId: null,
    sourceAddress: '10.0.0.7',
    method: 'POST',
    route: '/v1/keys/:name/datakey',
    action: 'datakey',
    keyName: 'payments',
    keyId: '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0',
    keyVersion: 3,
    contextKeys: ['kh.namespace', 'tenant'],
    decision: 'allow',
    decisionReason: 'allowed',
    policy: 'payments-api',
    statement: 0,
    outcome: 'ok',
    status: 200,
    latencyMs: 1.2345,
    ...overrides,
  };
}

/** The summary of a batch of 5 items: 3 decrypts of one key version, a refused one on another key, a bad ciphertext. */
export function auditBatch(overrides: Partial<AuditBatch> = {}): AuditBatch {
  return {
    items: 5,
    part: 1,
    parts: 1,
    entries: [
      { action: 'decrypt', keyName: 'payments', keyId: '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0', keyVersion: 2, outcome: 'ok', count: 3 },
      { action: 'decrypt', keyName: 'hr-salaries', keyId: null, keyVersion: null, outcome: 'KH_ERR_FORBIDDEN', count: 1 },
      { action: 'decrypt', keyName: null, keyId: null, keyVersion: null, outcome: 'KH_ERR_DECRYPTION_FAILED', count: 1 },
    ],
    ...overrides,
  };
}

/** The record of that batch request: action `batch`, no key of its own, the first refusal as its decision. */
export function batchEvent(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return auditEvent({
    route: '/v1/batch',
    action: 'batch',
    keyName: null,
    keyId: null,
    keyVersion: null,
    contextKeys: [],
    decision: 'deny',
    decisionReason: 'no-matching-allow',
    policy: null,
    statement: null,
    status: 207,
    batch: auditBatch(),
    ...overrides,
  });
}

/** `count` chained records of `replicaId`, continuing from `head` (the genesis head by default). */
export function buildChain(
  count: number,
  options: { key?: Buffer; replicaId?: string; head?: ChainHead } = {},
): AuditRecord[] {
  const key = options.key ?? AUDIT_KEY;
  const replicaId = options.replicaId ?? REPLICA;
  let head = options.head ?? genesisHead(key, replicaId);
  const records: AuditRecord[] = [];
  for (let i = 0; i < count; i += 1) {
    const sequence = head.sequence + 1;
    const fields = {
      replicaId,
      requestId: `req-${sequence}`,
      time: new Date(Date.UTC(2026, 10, 28, 17, 0, 0, sequence)),
      latencyMs: sequence / 7,
    };
    // Every fourth record is a batch's (format v2), the others single requests (format v1).
    const event = sequence % 4 === 0 ? batchEvent(fields) : auditEvent({ ...fields, keyVersion: 1 + (sequence % 3) });
    const { record } = linkAuditEvent(key, event, head);
    records.push(record);
    head = record;
  }
  return records;
}

/** A record with some fields replaced, as an attacker with write access to the table would leave it. */
export function edited(record: AuditRecord, changes: Partial<AuditRecord>): AuditRecord {
  return { ...record, ...changes };
}
