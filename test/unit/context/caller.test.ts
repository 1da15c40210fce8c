import { describe, expect, it } from 'vitest';
import { AuditTrail } from '../../../src/context/caller.js';
import { ADMIN_DECISION } from '../../../src/policy/evaluate.js';
import type { Decision } from '../../../src/context/decision.js';
import { MAX_AUDIT_BATCH_ENTRIES } from '../../../src/context/caller.js';

const DENIED: Decision = { allowed: false, reason: 'no-matching-allow', matched: [] };

/** The trail of one item as the crypto service leaves it: a decision on `keyName`, and the version used if allowed. */
function itemTrail(keyName: string, version: number | undefined, decision: Decision = ADMIN_DECISION): AuditTrail {
  const trail = new AuditTrail();
  trail.decided('decrypt', keyName, decision);
  if (version !== undefined) trail.usedKey(`id-${keyName}`, keyName, version);
  return trail;
}

describe('AuditTrail: batches', () => {
  it('counts each distinct action, key, version and outcome, in the order they first occurred', () => {
    const trail = new AuditTrail();
    trail.batchItem(itemTrail('a', 1), 'ok', 'decrypt', undefined);
    trail.batchItem(itemTrail('b', 2), 'ok', 'decrypt', undefined);
    trail.batchItem(itemTrail('a', 1), 'ok', 'decrypt', undefined);
    trail.batchItem(itemTrail('a', 2), 'KH_ERR_DECRYPTION_FAILED', 'decrypt', undefined);
    trail.batchItem(itemTrail('c', undefined, DENIED), 'KH_ERR_FORBIDDEN', 'decrypt', undefined);
    trail.batchItem(new AuditTrail(), 'KH_ERR_DECRYPTION_FAILED', 'decrypt', 'd');
    expect(trail.batchParts()).toEqual([
      {
        items: 6,
        part: 1,
        parts: 1,
        entries: [
          { action: 'decrypt', keyName: 'a', keyId: 'id-a', keyVersion: 1, outcome: 'ok', count: 2 },
          { action: 'decrypt', keyName: 'b', keyId: 'id-b', keyVersion: 2, outcome: 'ok', count: 1 },
          { action: 'decrypt', keyName: 'a', keyId: 'id-a', keyVersion: 2, outcome: 'KH_ERR_DECRYPTION_FAILED', count: 1 },
          { action: 'decrypt', keyName: 'c', keyId: null, keyVersion: null, outcome: 'KH_ERR_FORBIDDEN', count: 1 },
          { action: 'decrypt', keyName: 'd', keyId: null, keyVersion: null, outcome: 'KH_ERR_DECRYPTION_FAILED', count: 1 },
        ],
      },
    ]);
  });

  it('records the batch as action batch with no key, decided by its first refusal', () => {
    const trail = new AuditTrail();
    trail.batchItem(itemTrail('a', 1), 'ok', 'decrypt', undefined);
    trail.batchItem(itemTrail('c', undefined, DENIED), 'KH_ERR_FORBIDDEN', 'decrypt', undefined);
    trail.batchItem(itemTrail('b', 1), 'ok', 'decrypt', undefined);
    expect(trail).toMatchObject({ recordedAction: 'batch', keyName: undefined, keyId: undefined, decision: DENIED });
  });

  it(`splits a summary of more than ${MAX_AUDIT_BATCH_ENTRIES} lines into parts, none longer, every key kept`, () => {
    const trail = new AuditTrail();
    const keys = 2 * MAX_AUDIT_BATCH_ENTRIES + 1;
    for (let i = 0; i < keys; i += 1) trail.batchItem(itemTrail(`k${i}`, 1), 'ok', 'decrypt', undefined);
    const parts = trail.batchParts()!;
    expect(parts.map((part) => [part.part, part.parts, part.items, part.entries.length])).toEqual([
      [1, 3, keys, MAX_AUDIT_BATCH_ENTRIES],
      [2, 3, keys, MAX_AUDIT_BATCH_ENTRIES],
      [3, 3, keys, 1],
    ]);
    expect(parts.flatMap((part) => part.entries.map((entry) => entry.keyName))).toEqual(
      Array.from({ length: keys }, (_, i) => `k${i}`),
    );
  });

  it('has no summary for a request that ran no batch', () => {
    expect(itemTrail('a', 1).batchParts()).toBeUndefined();
  });
});

describe('AuditTrail: operation names', () => {
  it('records the operation named before the decision, refused or allowed, instead of the policy action', () => {
    for (const decision of [ADMIN_DECISION, DENIED]) {
      const trail = new AuditTrail();
      trail.runs('keys:disable-version');
      trail.decided('keys:disable', 'k', decision);
      expect(trail.recordedAction).toBe('keys:disable-version');
      expect(trail.action).toBe('keys:disable');
    }
  });

  it('records the policy action when no operation was named', () => {
    const trail = new AuditTrail();
    trail.decided('keys:rotate', 'k', ADMIN_DECISION);
    expect(trail.recordedAction).toBe('keys:rotate');
  });
});
