import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalAuditRecord, parseJsonLine, toJsonLine, type AuditRecord } from '../../../src/audit/audit-record.js';
import {
  checkpointMac,
  createCheckpoint,
  genesisHash,
  genesisHead,
  linkAuditEvent,
  linkHash,
  verifyChain,
  verifyChainAsync,
  verifyCheckpoint,
  ChainVerifier,
  type AuditCheckpoint,
  type VerifyChainOptions,
} from '../../../src/audit/chain.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { AUDIT_KEY, OTHER_AUDIT_KEY, REPLICA, auditEvent, batchEvent, buildChain, edited } from './audit-fixtures.js';

/** Records exported by the code before format v2 (three single requests and a batch), one JSON line each. */
const V1_FIXTURE = readFileSync(new URL('../../fixtures/audit-v1-chain.jsonl', import.meta.url), 'utf8');

const GOLDEN_GENESIS = 'ec0b96f70b7b1f08bcc38004604aa129c302540532969491fd0746e6d58ae01d';
const GOLDEN_FIRST_HASH = '2e1b86f2e4b30e35348131c6fe2ec9abacc4c47a77965d15e55601dd955fb4b2';

function options(overrides: Partial<VerifyChainOptions> = {}): VerifyChainOptions {
  return { auditKey: AUDIT_KEY, replicaId: REPLICA, ...overrides };
}

function head(record: AuditRecord, key: Buffer = AUDIT_KEY): AuditCheckpoint {
  return createCheckpoint(key, { replicaId: record.replicaId, sequence: record.sequence, hash: record.hash, kind: 'head' });
}

function purge(record: AuditRecord, key: Buffer = AUDIT_KEY): AuditCheckpoint {
  return createCheckpoint(key, { replicaId: record.replicaId, sequence: record.sequence, hash: record.hash, kind: 'purge' });
}

describe('genesisHash', () => {
  it('is HMAC(auditKey, ["keyhold-audit-genesis/v1", replicaId])', () => {
    const expected = createHmac('sha256', AUDIT_KEY).update('["keyhold-audit-genesis/v1","replica-a"]').digest('hex');
    expect(genesisHash(AUDIT_KEY, REPLICA)).toBe(expected);
    expect(genesisHash(AUDIT_KEY, REPLICA)).toBe(GOLDEN_GENESIS);
  });

  it('differs per replica and per audit key', () => {
    expect(genesisHash(AUDIT_KEY, 'replica-b')).not.toBe(genesisHash(AUDIT_KEY, REPLICA));
    expect(genesisHash(OTHER_AUDIT_KEY, REPLICA)).not.toBe(genesisHash(AUDIT_KEY, REPLICA));
  });

  it.each(['', 'replica\n', 'r'.repeat(600)])('refuses the replica id %j', (replicaId) => {
    expect(() => genesisHash(AUDIT_KEY, replicaId)).toThrow(RangeError);
  });
});

describe('linkHash', () => {
  it('is hex HMAC-SHA256(auditKey, prevHashBytes || canonical)', () => {
    const canonical = canonicalAuditRecord(auditEvent(), 1);
    const expected = createHmac('sha256', AUDIT_KEY)
      .update(Buffer.concat([Buffer.from(GOLDEN_GENESIS, 'hex'), canonical]))
      .digest('hex');
    expect(linkHash(AUDIT_KEY, GOLDEN_GENESIS, canonical)).toBe(expected);
    expect(linkHash(AUDIT_KEY, GOLDEN_GENESIS, canonical.toString('utf8'))).toBe(expected);
  });

  it('is the same under SecretBytes and raw bytes of one key', () => {
    const secret = SecretBytes.adopt(Buffer.from(AUDIT_KEY));
    expect(linkHash(secret, GOLDEN_GENESIS, 'x')).toBe(linkHash(AUDIT_KEY, GOLDEN_GENESIS, 'x'));
  });

  it.each(['', 'ab', 'G'.repeat(64), 'A'.repeat(64)])('refuses the previous hash %j', (prevHash) => {
    expect(() => linkHash(AUDIT_KEY, prevHash, 'x')).toThrow(RangeError);
  });
});

describe('linkAuditEvent: the record', () => {
  it('chains the golden event at sequence 1 from the genesis hash', () => {
    const { record } = linkAuditEvent(AUDIT_KEY, auditEvent(), genesisHead(AUDIT_KEY, REPLICA));
    expect(record.sequence).toBe(1);
    expect(record.hash).toBe(linkHash(AUDIT_KEY, GOLDEN_GENESIS, canonicalAuditRecord(auditEvent(), 1)));
    expect(record.hash).toBe(GOLDEN_FIRST_HASH);
  });

  it('stores the normalised event, so the hash can be recomputed from the stored record', () => {
    const { record } = linkAuditEvent(AUDIT_KEY, auditEvent({ keyName: 'k\n', latencyMs: 0.123456 }), genesisHead(AUDIT_KEY, REPLICA));
    expect(record.keyName).toBe('k\\u000a');
    expect(record.latencyMs).toBe(0.123);
    expect(verifyChain([record], options()).ok).toBe(true);
  });

  it('numbers records densely from the head', () => {
    expect(buildChain(5).map((record) => record.sequence)).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('linkAuditEvent: the link', () => {
  it('keeps the canonical text the hash covers, and the hash as bytes', () => {
    const link = linkAuditEvent(AUDIT_KEY, auditEvent(), genesisHead(AUDIT_KEY, REPLICA));
    expect(link.canonical).toBe(canonicalAuditRecord(auditEvent(), 1).toString('utf8'));
    expect(link.mac.toString('hex')).toBe(GOLDEN_FIRST_HASH);
  });

  it('chains onto a link exactly as onto the head that link is', () => {
    const first = linkAuditEvent(AUDIT_KEY, auditEvent(), genesisHead(AUDIT_KEY, REPLICA));
    const second = auditEvent({ requestId: 'req-2' });
    const ontoLink = linkAuditEvent(AUDIT_KEY, second, first);
    expect(ontoLink.record).toEqual(linkAuditEvent(AUDIT_KEY, second, { sequence: 1, hash: first.record.hash }).record);
    expect(verifyChain([first.record, ontoLink.record], options()).ok).toBe(true);
  });
});

describe('format v2 beside v1', () => {
  const v1Records = (): AuditRecord[] => V1_FIXTURE.split('\n').filter(Boolean).map((line) => parseJsonLine(line));

  it('verifies the records the code before v2 wrote, from its JSON-lines file, up to their head checkpoint', () => {
    const records = v1Records();
    expect(records.map((record) => record.batch)).toEqual([null, null, null, null]);
    expect(verifyChain(records, options({ checkpoint: head(records.at(-1)!) }))).toMatchObject({ ok: true, count: 4 });
  });

  it('continues a v1 chain with v2 batch records and v1 records, and the whole chain verifies', () => {
    const records = v1Records();
    const batch = linkAuditEvent(AUDIT_KEY, batchEvent({ requestId: 'req-5' }), records.at(-1)!).record;
    const after = linkAuditEvent(AUDIT_KEY, auditEvent({ requestId: 'req-6' }), batch).record;
    const chain = [...records, batch, after];
    expect(verifyChain(chain, options({ checkpoint: head(after) }))).toMatchObject({ ok: true, count: 6 });
    // The JSON-lines file of the mixed chain verifies too.
    expect(verifyChain(chain.map((record) => parseJsonLine(toJsonLine(record))), options()).ok).toBe(true);
  });

  it('reports a batch summary taken off a record, or put on one, as a hash mismatch', () => {
    const records = buildChain(8);
    const batchRecord = records.find((record) => record.batch !== null)!;
    const singleRecord = records.find((record) => record.batch === null)!;
    for (const [target, change] of [
      [batchRecord, { batch: null }],
      [singleRecord, { batch: batchRecord.batch }],
    ] as const) {
      const tampered = records.map((record) => (record === target ? edited(record, change) : record));
      expect(verifyChain(tampered, options())).toEqual({ ok: false, firstBadSequence: target.sequence, problem: 'hash-mismatch' });
    }
  });
});

describe('checkpointMac / verifyCheckpoint', () => {
  const fields = { replicaId: REPLICA, sequence: 12, hash: GOLDEN_FIRST_HASH, kind: 'head' } as const;

  it('is HMAC(auditKey, ["keyhold-audit-checkpoint/v1", kind, replicaId, sequence, hash])', () => {
    const message = `["keyhold-audit-checkpoint/v1","head","replica-a",12,"${GOLDEN_FIRST_HASH}"]`;
    expect(checkpointMac(AUDIT_KEY, fields)).toBe(createHmac('sha256', AUDIT_KEY).update(message).digest('hex'));
  });

  it('accepts a checkpoint it created', () => {
    expect(verifyCheckpoint(AUDIT_KEY, createCheckpoint(AUDIT_KEY, fields))).toBe(true);
  });

  it.each<[string, Partial<AuditCheckpoint>]>([
    ['a lowered sequence', { sequence: 11 }],
    ['another hash', { hash: GOLDEN_GENESIS }],
    ['another replica', { replicaId: 'replica-b' }],
    ['another kind', { kind: 'purge' }],
    ['a malformed MAC', { mac: 'nope' }],
    ['a negative sequence', { sequence: -1 }],
  ])('refuses a checkpoint with %s', (_name, change) => {
    expect(verifyCheckpoint(AUDIT_KEY, { ...createCheckpoint(AUDIT_KEY, fields), ...change })).toBe(false);
  });

  it('refuses a checkpoint made under another audit key', () => {
    expect(verifyCheckpoint(AUDIT_KEY, createCheckpoint(OTHER_AUDIT_KEY, fields))).toBe(false);
  });
});

describe('verifyChain', () => {
  it('accepts an intact chain and reports its length and head', () => {
    const records = buildChain(10);
    expect(verifyChain(records, options())).toEqual({
      ok: true,
      count: 10,
      lastSequence: 10,
      lastHash: records[9]!.hash,
      sealed: false,
    });
  });

  it('accepts an empty chain at the genesis hash', () => {
    expect(verifyChain([], options())).toEqual({ ok: true, count: 0, lastSequence: 0, lastHash: GOLDEN_GENESIS, sealed: false });
  });

  it('reports an edited field as a hash mismatch at that record', () => {
    const records = buildChain(10);
    records[4] = edited(records[4]!, { outcome: 'KH_ERR_FORBIDDEN' });
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 5, problem: 'hash-mismatch' });
  });

  it('reports an edited hash as a hash mismatch at that record', () => {
    const records = buildChain(10);
    records[6] = edited(records[6]!, { hash: records[6]!.hash.replace(/^./, (c) => (c === '0' ? '1' : '0')) });
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 7, problem: 'hash-mismatch' });
  });

  it('reports a deleted middle record as missing at its sequence', () => {
    const records = buildChain(10);
    records.splice(3, 1);
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 4, problem: 'missing' });
  });

  it('reports several deleted records at the first of them', () => {
    const records = buildChain(10);
    records.splice(2, 4);
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 3, problem: 'missing' });
  });

  it('reports the deleted first record as missing at 1', () => {
    expect(verifyChain(buildChain(5).slice(1), options())).toEqual({ ok: false, firstBadSequence: 1, problem: 'missing' });
  });

  it('reports two records whose sequence numbers were swapped at the first of them', () => {
    const records = buildChain(10);
    const [third, sixth] = [records[2]!, records[5]!];
    records[2] = edited(sixth, { sequence: 3 });
    records[5] = edited(third, { sequence: 6 });
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 3, problem: 'hash-mismatch' });
  });

  it('reports two records whose contents were swapped under their own hashes at the first of them', () => {
    const records = buildChain(10);
    const { hash: hash4, sequence: seq4, ...content4 } = records[3]!;
    const { hash: hash5, sequence: seq5, ...content5 } = records[4]!;
    records[3] = { ...content5, sequence: seq4, hash: hash4 };
    records[4] = { ...content4, sequence: seq5, hash: hash5 };
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 4, problem: 'hash-mismatch' });
  });

  it('reports rows given out of sequence order as out of order at the first displaced sequence', () => {
    const records = buildChain(6);
    const reordered = [records[0]!, records[1]!, records[4]!, records[3]!, records[2]!, records[5]!];
    expect(verifyChain(reordered, options())).toEqual({ ok: false, firstBadSequence: 3, problem: 'out-of-order' });
  });

  it('reports a repeated record as a duplicate at its sequence', () => {
    const records = buildChain(6);
    records.splice(3, 0, records[2]!);
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 3, problem: 'duplicate' });
  });

  it('reports a forged second record with a used sequence number as a duplicate', () => {
    const records = buildChain(6);
    records.splice(3, 0, edited(records[2]!, { outcome: 'ok', keyName: 'forged' }));
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 3, problem: 'duplicate' });
  });

  it('cannot see a truncated tail without a checkpoint', () => {
    expect(verifyChain(buildChain(10).slice(0, 7), options())).toMatchObject({ ok: true, lastSequence: 7 });
  });

  it('reports a tail truncated before the last checkpoint at the first record lost', () => {
    const records = buildChain(10);
    const result = verifyChain(records.slice(0, 7), options({ checkpoint: head(records[8]!) }));
    expect(result).toEqual({ ok: false, firstBadSequence: 8, problem: 'truncated' });
  });

  it('reports a chain truncated to nothing before the last checkpoint as truncated at 1', () => {
    const records = buildChain(3);
    expect(verifyChain([], options({ checkpoint: head(records[2]!) }))).toEqual({
      ok: false,
      firstBadSequence: 1,
      problem: 'truncated',
    });
  });

  it('accepts a chain that reaches and agrees with the last checkpoint', () => {
    const records = buildChain(10);
    expect(verifyChain(records, options({ checkpoint: head(records[5]!) }))).toMatchObject({ ok: true, count: 10 });
    expect(verifyChain(records, options({ checkpoint: head(records[9]!) }))).toMatchObject({ ok: true, count: 10 });
  });

  it('reports a record whose hash differs from the checkpoint at its sequence as a checkpoint mismatch', () => {
    const records = buildChain(10);
    // A chain rebuilt from sequence 5 on (by someone holding the key, or a restored backup) no longer meets the
    // checkpoint taken before.
    const checkpoint = head(records[6]!);
    const rewritten = linkAuditEvent(AUDIT_KEY, auditEvent({ requestId: 'req-5', outcome: 'KH_ERR_FORBIDDEN' }), records[3]!).record;
    const rebuilt = [...records.slice(0, 4), rewritten, ...buildChain(5, { head: rewritten })];
    expect(rebuilt[6]!.hash).not.toBe(records[6]!.hash);
    expect(verifyChain(rebuilt, options({ checkpoint }))).toEqual({
      ok: false,
      firstBadSequence: 7,
      problem: 'checkpoint-mismatch',
    });
  });

  it('reports a checkpoint whose MAC is wrong as an invalid checkpoint', () => {
    const records = buildChain(10);
    const lowered = { ...head(records[9]!), sequence: 7, hash: records[6]!.hash };
    expect(verifyChain(records.slice(0, 7), options({ checkpoint: lowered }))).toEqual({
      ok: false,
      firstBadSequence: 7,
      problem: 'checkpoint-invalid',
    });
  });

  it("reports another replica's checkpoint as an invalid checkpoint", () => {
    const other = buildChain(3, { replicaId: 'replica-b' });
    const records = buildChain(3);
    expect(verifyChain(records, options({ checkpoint: head(other[2]!) }))).toMatchObject({
      ok: false,
      problem: 'checkpoint-invalid',
    });
  });

  it('resumes after a purge cut', () => {
    const records = buildChain(10);
    const result = verifyChain(records.slice(4), options({ start: purge(records[3]!) }));
    expect(result).toEqual({ ok: true, count: 6, lastSequence: 10, lastHash: records[9]!.hash, sealed: false });
  });

  it('accepts a purge cut with nothing after it', () => {
    const records = buildChain(4);
    const cut = purge(records[3]!);
    expect(verifyChain([], options({ start: cut, checkpoint: cut }))).toEqual({
      ok: true,
      count: 0,
      lastSequence: 4,
      lastHash: records[3]!.hash,
      sealed: false,
    });
  });

  it('reports a record deleted right after a purge cut as missing', () => {
    const records = buildChain(10);
    expect(verifyChain(records.slice(5), options({ start: purge(records[3]!) }))).toEqual({
      ok: false,
      firstBadSequence: 5,
      problem: 'missing',
    });
  });

  it('reports a record before the purge cut that is still there as out of order', () => {
    const records = buildChain(10);
    expect(verifyChain(records.slice(3), options({ start: purge(records[3]!) }))).toEqual({
      ok: false,
      firstBadSequence: 4,
      problem: 'out-of-order',
    });
  });

  it('refuses a head checkpoint given as the purge cut, which would hide deleted records', () => {
    const records = buildChain(10);
    expect(verifyChain(records.slice(4), options({ start: head(records[3]!) }))).toEqual({
      ok: false,
      firstBadSequence: 4,
      problem: 'checkpoint-invalid',
    });
  });

  it('refuses a purge cut that was forged without the audit key', () => {
    const records = buildChain(10);
    const forged = purge(records[3]!, OTHER_AUDIT_KEY);
    expect(verifyChain(records.slice(4), options({ start: forged }))).toMatchObject({ ok: false, problem: 'checkpoint-invalid' });
  });

  it('reports a purge cut and a checkpoint at one sequence that disagree', () => {
    const records = buildChain(10);
    const other = buildChain(4, { key: AUDIT_KEY, head: { sequence: 0, hash: '0'.repeat(64) } });
    expect(verifyChain(records.slice(4), options({ start: purge(records[3]!), checkpoint: head(other[3]!) }))).toEqual({
      ok: false,
      firstBadSequence: 4,
      problem: 'checkpoint-mismatch',
    });
  });

  it('reports a chain made under another audit key as a hash mismatch at its first record', () => {
    const records = buildChain(5, { key: OTHER_AUDIT_KEY });
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 1, problem: 'hash-mismatch' });
  });

  it("reports another replica's whole chain as malformed at its first record", () => {
    const records = buildChain(5, { replicaId: 'replica-b' });
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 1, problem: 'malformed' });
  });

  it("reports another replica's chain relabelled with this replica's id as a hash mismatch", () => {
    const records = buildChain(5, { replicaId: 'replica-b' }).map((r) => edited(r, { replicaId: REPLICA }));
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 1, problem: 'hash-mismatch' });
  });

  it('reports a record spliced in from another replica at the same sequence as malformed', () => {
    const records = buildChain(5);
    records[2] = buildChain(3, { replicaId: 'replica-b' })[2]!;
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 3, problem: 'malformed' });
  });

  it('reports a stored string edited into a raw control character as malformed, though it sanitises alike', () => {
    const records = buildChain(2);
    const third = linkAuditEvent(AUDIT_KEY, auditEvent({ keyName: 'k\u001b[2J' }), records[1]!).record;
    expect(third.keyName).toBe('k\\u001b[2J');
    records.push(third, ...buildChain(2, { head: third }));
    expect(verifyChain(records, options()).ok).toBe(true);
    records[2] = edited(third, { keyName: 'k\u001b[2J' });
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 3, problem: 'malformed' });
  });

  it('reports a record of the wrong type as malformed, not as a crash', () => {
    const records = buildChain(5);
    records[1] = edited(records[1]!, { keyVersion: '2' as unknown as number });
    expect(verifyChain(records, options())).toEqual({ ok: false, firstBadSequence: 2, problem: 'malformed' });
    const bad = buildChain(3);
    bad[1] = edited(bad[1]!, { sequence: 2.5 });
    expect(verifyChain(bad, options())).toEqual({ ok: false, firstBadSequence: 2, problem: 'malformed' });
  });

  it('stops reading at the first problem', () => {
    const records = buildChain(10);
    records[2] = edited(records[2]!, { status: 500 });
    let read = 0;
    function* counted(): Generator<AuditRecord> {
      for (const record of records) {
        read += 1;
        yield record;
      }
    }
    expect(verifyChain(counted(), options())).toMatchObject({ ok: false, firstBadSequence: 3 });
    expect(read).toBe(3);
  });

  it('verifies records read back from the JSON-lines export', () => {
    const records = buildChain(5).map((record) => parseJsonLine(toJsonLine(record)));
    expect(verifyChain(records, options())).toMatchObject({ ok: true, count: 5 });
  });
});

describe('ChainVerifier', () => {
  it('verifies a chain fed one record at a time, in pages', () => {
    const records = buildChain(25);
    const verifier = new ChainVerifier(options({ checkpoint: head(records[24]!) }));
    for (let page = 0; page < records.length; page += 10) {
      for (const record of records.slice(page, page + 10)) expect(verifier.push(record)).toBe(true);
    }
    expect(verifier.finish()).toMatchObject({ ok: true, count: 25, lastSequence: 25 });
  });

  it('ignores records pushed after a problem and keeps its first verdict', () => {
    const records = buildChain(5);
    const verifier = new ChainVerifier(options());
    verifier.push(records[0]!);
    expect(verifier.push(records[2]!)).toBe(true);
    expect(verifier.push(records[3]!)).toBe(false);
    expect(verifier.push(records[1]!)).toBe(false);
    expect(verifier.finish()).toEqual({ ok: false, firstBadSequence: 2, problem: 'missing' });
    expect(verifier.finish()).toEqual({ ok: false, firstBadSequence: 2, problem: 'missing' });
  });
});

describe('verifyChainAsync', () => {
  it('verifies an async source and closes it at the first problem', async () => {
    const records = buildChain(10);
    records[4] = edited(records[4]!, { keyName: 'other' });
    let closed = false;
    async function* cursor(): AsyncGenerator<AuditRecord> {
      try {
        for (const record of records) yield record;
      } finally {
        closed = true;
      }
    }
    expect(await verifyChainAsync(cursor(), options())).toEqual({ ok: false, firstBadSequence: 5, problem: 'hash-mismatch' });
    expect(closed).toBe(true);
  });

  it('accepts an intact chain from an async source', async () => {
    async function* cursor(): AsyncGenerator<AuditRecord> {
      yield* buildChain(4);
    }
    expect(await verifyChainAsync(cursor(), options())).toMatchObject({ ok: true, count: 4 });
  });
});
