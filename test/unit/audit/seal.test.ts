import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../../src/audit/audit-record.js';
import { LIVENESS_WINDOW_MS, reportChain, verdictOf, type ChainEvidence } from '../../../src/audit/audit-log.js';
import { createCheckpoint, linkAuditEvent, verifyChain, type VerifyChainOptions } from '../../../src/audit/chain.js';
import { createHeadStatement, type HeadStatement } from '../../../src/audit/head-statement.js';
import { isSeal, sealEvent, SEAL_ACTION, SEAL_METHOD } from '../../../src/audit/seal.js';
import { ACTIONS } from '../../../src/context/actions.js';
import { AUDIT_KEY, OTHER_AUDIT_KEY, REPLICA, auditEvent, buildChain } from './audit-fixtures.js';

const NOW = new Date('2026-12-06T03:00:00.000Z');

function sealed(records: AuditRecord[]): AuditRecord[] {
  const { record } = linkAuditEvent(AUDIT_KEY, sealEvent(REPLICA, NOW), records.at(-1)!);
  return [...records, record];
}

function stated(record: Pick<AuditRecord, 'sequence' | 'hash'>, overrides: Partial<HeadStatement> = {}, key = AUDIT_KEY): HeadStatement {
  return createHeadStatement(key, { replicaId: REPLICA, sequence: record.sequence, hash: record.hash, time: NOW, sealed: false, ...overrides });
}

function head(record: AuditRecord) {
  return createCheckpoint(AUDIT_KEY, { replicaId: REPLICA, sequence: record.sequence, hash: record.hash, kind: 'head' });
}

function options(overrides: Partial<VerifyChainOptions> = {}): VerifyChainOptions {
  return { auditKey: AUDIT_KEY, replicaId: REPLICA, ...overrides };
}

describe('the seal record', () => {
  it('uses a method no HTTP request can carry and an action no policy names, within the existing fields', () => {
    const event = sealEvent(REPLICA, NOW);
    expect(event.method).toBe(SEAL_METHOD);
    // RFC 9110 §5.6.2: a method is a token, and a token has no parentheses.
    expect(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(SEAL_METHOD)).toBe(false);
    expect((ACTIONS as readonly string[]).includes(SEAL_ACTION)).toBe(false);
    expect(isSeal(event)).toBe(true);
    expect(isSeal(auditEvent())).toBe(false);
  });

  it('a chain that ends with its seal verifies as sealed; one without does not', () => {
    const records = buildChain(5);
    expect(verifyChain(sealed(records), options({ checkpoint: head(sealed(records).at(-1)!) }))).toMatchObject({ ok: true, sealed: true });
    expect(verifyChain(records, options())).toMatchObject({ ok: true, sealed: false });
  });

  it('a record after the seal is reported: a seal only ever ends a chain', () => {
    const chain = sealed(buildChain(3));
    const { record: after } = linkAuditEvent(AUDIT_KEY, auditEvent({ requestId: 'after' }), chain.at(-1)!);
    expect(verifyChain([...chain, after], options())).toEqual({ ok: false, firstBadSequence: 5, problem: 'after-seal' });
  });
});

describe('verifyChain with head statements', () => {
  it('the red-team rollback: an older head checkpoint put back no longer hides the cut tail, the statement does not let it', () => {
    const records = sealed(buildChain(61));
    const kept = records.slice(0, 30);
    // The checkpoint saved at 30 is genuine, so it alone vouches for the cut chain.
    expect(verifyChain(kept, options({ checkpoint: head(kept.at(-1)!) }))).toMatchObject({ ok: true, sealed: false });
    const final = stated(records.at(-1)!, { sealed: true });
    expect(verifyChain(kept, options({ checkpoint: head(kept.at(-1)!), statements: [final] }))).toEqual({
      ok: false,
      firstBadSequence: 31,
      problem: 'truncated',
    });
  });

  it('a statement whose hash differs from the record at its sequence is a mismatch there', () => {
    const records = buildChain(6);
    const wrong = createHeadStatement(AUDIT_KEY, { replicaId: REPLICA, sequence: 4, hash: records[2]!.hash, time: NOW, sealed: false });
    expect(verifyChain(records, options({ statements: [wrong] }))).toEqual({ ok: false, firstBadSequence: 4, problem: 'checkpoint-mismatch' });
  });

  it('a forged statement, or one of another replica, is an invalid checkpoint', () => {
    const records = buildChain(6);
    expect(verifyChain(records, options({ statements: [stated(records[5]!, {}, OTHER_AUDIT_KEY)] }))).toEqual({
      ok: false,
      firstBadSequence: 6,
      problem: 'checkpoint-invalid',
    });
    expect(verifyChain(records, options({ statements: [{ ...stated(records[5]!), time: new Date(NOW.getTime() + 1) }] }))).toMatchObject({
      problem: 'checkpoint-invalid',
    });
    const other = createHeadStatement(AUDIT_KEY, { replicaId: 'replica-b', sequence: 6, hash: records[5]!.hash, time: NOW, sealed: false });
    expect(verifyChain(records, options({ statements: [other] }))).toMatchObject({ problem: 'checkpoint-invalid' });
  });

  it('statements the chain reaches and agrees with pass, as does one at or before the purge cut', () => {
    const records = buildChain(10);
    const statements = [stated(records[3]!), stated(records[9]!)];
    expect(verifyChain(records, options({ statements }))).toMatchObject({ ok: true, lastSequence: 10 });
    const cut = createCheckpoint(AUDIT_KEY, { replicaId: REPLICA, sequence: 5, hash: records[4]!.hash, kind: 'purge' });
    expect(verifyChain(records.slice(5), options({ start: cut, statements: [stated(records[1]!), stated(records[4]!)] }))).toMatchObject({
      ok: true,
      count: 5,
    });
  });
});

describe('chain states', () => {
  const records = buildChain(4);
  const evidence = (heartbeat?: HeadStatement): ChainEvidence => ({
    replicaId: REPLICA,
    head: head(records[3]!),
    heartbeat,
    checkpointed: true,
  });
  const intact = { ok: true as const, count: 4, lastSequence: 4, lastHash: records[3]!.hash, sealed: false };

  it('sealed when the chain ends with its seal, whatever the heartbeat', () => {
    expect(reportChain(evidence(), { ...intact, sealed: true }, NOW, undefined).state).toBe('sealed');
  });

  it(`live while the heartbeat is at most ${LIVENESS_WINDOW_MS / 60_000} minutes old, unsealed after`, () => {
    const beat = stated(records[3]!, { time: new Date(NOW.getTime() - LIVENESS_WINDOW_MS) });
    expect(reportChain(evidence(beat), intact, NOW, undefined).state).toBe('live');
    expect(reportChain(evidence(beat), intact, new Date(NOW.getTime() + 1), undefined).state).toBe('unsealed');
    expect(reportChain(evidence(), intact, NOW, undefined).state).toBe('unsealed');
  });

  it('an unsealed chain fails the verdict unless accepted, by replica id or all', () => {
    const unsealed = reportChain(evidence(), intact, NOW, undefined);
    expect(unsealed).toMatchObject({ ok: true, state: 'unsealed' });
    expect(verdictOf([unsealed]).ok).toBe(false);
    const named = reportChain(evidence(), intact, NOW, new Set([REPLICA]));
    expect(named).toMatchObject({ state: 'unsealed', accepted: true });
    expect(verdictOf([named]).ok).toBe(true);
    expect(verdictOf([reportChain(evidence(), intact, NOW, 'all')]).ok).toBe(true);
    expect(reportChain(evidence(), intact, NOW, new Set(['replica-b'])).accepted).toBeUndefined();
  });
});
