import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  createHeadStatement,
  headStatementJson,
  headStatementLine,
  isLaterStatement,
  parseHeadStatement,
  verifyHeadStatement,
  type HeadStatement,
} from '../../../src/audit/head-statement.js';
import { AUDIT_KEY, OTHER_AUDIT_KEY, REPLICA } from './audit-fixtures.js';

const HASH = 'ab'.repeat(32);
const TIME = new Date('2026-12-06T03:00:00.000Z');

function statement(overrides: Partial<HeadStatement> = {}, key = AUDIT_KEY): HeadStatement {
  return createHeadStatement(key, { replicaId: REPLICA, sequence: 30, hash: HASH, time: TIME, sealed: false, ...overrides });
}

describe('head statements', () => {
  it('are MAC\'d as HMAC(auditKey, ["keyhold-audit-head/v1", replicaId, sequence, hash, time, sealed])', () => {
    const expected = createHmac('sha256', AUDIT_KEY)
      .update(JSON.stringify(['keyhold-audit-head/v1', REPLICA, 30, HASH, '2026-12-06T03:00:00.000Z', false]))
      .digest('hex');
    expect(statement().mac).toBe(expected);
    expect(verifyHeadStatement(AUDIT_KEY, statement())).toBe(true);
  });

  it('cover the time and the sealed flag: an old statement cannot pass for a fresh heartbeat or a seal', () => {
    const genuine = statement();
    expect(verifyHeadStatement(AUDIT_KEY, { ...genuine, time: new Date(TIME.getTime() + 60_000) })).toBe(false);
    expect(verifyHeadStatement(AUDIT_KEY, { ...genuine, sealed: true })).toBe(false);
    expect(verifyHeadStatement(AUDIT_KEY, { ...genuine, sequence: 31 })).toBe(false);
    expect(verifyHeadStatement(AUDIT_KEY, { ...genuine, replicaId: 'replica-b' })).toBe(false);
    expect(verifyHeadStatement(AUDIT_KEY, statement({}, OTHER_AUDIT_KEY))).toBe(false);
  });

  it('a malformed statement is not valid, and cannot be created', () => {
    expect(verifyHeadStatement(AUDIT_KEY, { ...statement(), mac: 'zz' })).toBe(false);
    expect(verifyHeadStatement(AUDIT_KEY, { ...statement(), sequence: -1 })).toBe(false);
    expect(() => statement({ hash: 'not-hex' })).toThrow(RangeError);
    expect(() => statement({ time: new Date(Number.NaN) })).toThrow(RangeError);
  });

  it('round-trip through their JSON line, which the headStatement field tells apart from a record', () => {
    const line = headStatementLine(statement({ sealed: true }));
    expect(line.endsWith('\n')).toBe(true);
    const parsed = parseHeadStatement(JSON.parse(line));
    expect(parsed).toEqual(statement({ sealed: true }));
    expect(verifyHeadStatement(AUDIT_KEY, parsed)).toBe(true);
    expect(Object.keys(headStatementJson(parsed))[0]).toBe('headStatement');
  });

  it('parsing refuses an extra or missing field, another format tag and a time not in the writer\'s form', () => {
    const json = headStatementJson(statement());
    expect(() => parseHeadStatement({ ...json, extra: 1 })).toThrow(TypeError);
    const { mac: _mac, ...withoutMac } = json;
    expect(() => parseHeadStatement(withoutMac)).toThrow(TypeError);
    expect(() => parseHeadStatement({ ...json, headStatement: 'keyhold-audit-head/v0' })).toThrow(TypeError);
    expect(() => parseHeadStatement({ ...json, time: '2026-12-06T03:00:00Z' })).toThrow(TypeError);
    expect(() => parseHeadStatement({ ...json, sealed: 'yes' })).toThrow(TypeError);
  });

  it('a later statement is one with a higher sequence, else the sealed one, else the later time', () => {
    expect(isLaterStatement(statement({ sequence: 31 }), statement({ time: new Date(TIME.getTime() + 1) }))).toBe(true);
    expect(isLaterStatement(statement({ sealed: true }), statement({ time: new Date(TIME.getTime() + 1) }))).toBe(true);
    expect(isLaterStatement(statement({ time: new Date(TIME.getTime() + 1) }), statement())).toBe(true);
    expect(isLaterStatement(statement(), statement())).toBe(false);
  });
});
