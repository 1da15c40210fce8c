import { describe, expect, it } from 'vitest';
import { AUDIT_RECORD_FIELDS, roundLatencyMs, type AuditRecord } from '../../../src/audit/audit-record.js';
import {
  createCheckpoint,
  verifyChain,
  type AuditCheckpoint,
  type ChainProblem,
  type ChainVerification,
} from '../../../src/audit/chain.js';
import { AUDIT_KEY, OTHER_AUDIT_KEY, REPLICA, auditBatch, buildChain, edited } from './audit-fixtures.js';

/** mulberry32: a small seeded generator, so that a failing case can be replayed from its seed. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Random = () => number;

function pick(random: Random, upTo: number): number {
  return Math.floor(random() * upTo);
}

const EDITABLE_FIELDS = AUDIT_RECORD_FIELDS.filter((field) => field !== 'sequence');

/** The record with one field changed to another valid value, as a database edit would leave it. */
function withFieldChanged(record: AuditRecord, field: (typeof EDITABLE_FIELDS)[number]): AuditRecord {
  switch (field) {
    case 'time':
      return edited(record, { time: new Date(record.time.getTime() + 1) });
    case 'keyVersion':
    case 'statement':
      return edited(record, { [field]: (record[field] ?? 0) + 1 });
    case 'status':
      return edited(record, { status: record.status === 200 ? 403 : 200 });
    case 'latencyMs':
      return edited(record, { latencyMs: roundLatencyMs(record.latencyMs + 0.001) });
    case 'contextKeys':
      return edited(record, { contextKeys: [...record.contextKeys, 'zz'] });
    case 'decision':
      return edited(record, { decision: record.decision === 'allow' ? 'deny' : 'allow' });
    case 'batch':
      // Adding a summary makes a v1 record encode as v2; taking it away, or changing a count, is an edit too.
      return edited(record, {
        batch: record.batch === null ? auditBatch() : { ...record.batch, entries: [{ ...record.batch.entries[0]!, count: 9 }] },
      });
    default:
      return edited(record, { [field]: `${record[field] ?? ''}x` });
  }
}

const TAMPERS = [
  'edit-field',
  'edit-hash',
  'delete',
  'swap-positions',
  'swap-sequence-numbers',
  'duplicate',
  'truncate',
  'rechain-under-another-key',
] as const;
type Tamper = (typeof TAMPERS)[number];

interface Case {
  readonly records: AuditRecord[];
  readonly start: AuditCheckpoint | undefined;
  readonly checkpoint: AuditCheckpoint;
}

/** A chain of 1 to 12 records, sometimes purged up to a random cut, with a head checkpoint at its last record. */
function randomCase(random: Random): Case {
  const full = buildChain(1 + pick(random, 12));
  const last = full.at(-1)!;
  const checkpoint = createCheckpoint(AUDIT_KEY, { replicaId: REPLICA, sequence: last.sequence, hash: last.hash, kind: 'head' });
  if (full.length < 2 || random() < 0.6) return { records: full, start: undefined, checkpoint };
  const cut = 1 + pick(random, full.length - 1);
  const cutRecord = full[cut - 1]!;
  const start = createCheckpoint(AUDIT_KEY, {
    replicaId: REPLICA,
    sequence: cutRecord.sequence,
    hash: cutRecord.hash,
    kind: 'purge',
  });
  return { records: full.slice(cut), start, checkpoint };
}

/** Applies one tamper and says where and how verification must notice it. */
function tamper(
  random: Random,
  records: AuditRecord[],
  kind: Tamper,
): { readonly at: number; readonly problems: readonly ChainProblem[] } {
  const pairs = kind === 'swap-positions' || kind === 'swap-sequence-numbers';
  // A swap needs a second record after the first.
  const i = pick(random, pairs ? records.length - 1 : records.length);
  const target = records[i]!;
  switch (kind) {
    case 'edit-field': {
      const field = EDITABLE_FIELDS[pick(random, EDITABLE_FIELDS.length)]!;
      records[i] = withFieldChanged(target, field);
      return { at: target.sequence, problems: field === 'replicaId' ? ['malformed'] : ['hash-mismatch'] };
    }
    case 'edit-hash': {
      const position = pick(random, 64);
      const digit = target.hash[position] === '0' ? '1' : '0';
      records[i] = edited(target, { hash: target.hash.slice(0, position) + digit + target.hash.slice(position + 1) });
      return { at: target.sequence, problems: ['hash-mismatch'] };
    }
    case 'delete': {
      records.splice(i, 1);
      return { at: target.sequence, problems: i === records.length ? ['truncated'] : ['missing'] };
    }
    case 'swap-positions': {
      const j = i + 1 + pick(random, records.length - i - 1);
      [records[i], records[j]] = [records[j]!, target];
      return { at: target.sequence, problems: ['out-of-order'] };
    }
    case 'swap-sequence-numbers': {
      // The rows trade sequence numbers; read back in sequence order, each sits where the other was.
      const j = i + 1 + pick(random, records.length - i - 1);
      const other = records[j]!;
      records[i] = edited(other, { sequence: target.sequence });
      records[j] = edited(target, { sequence: other.sequence });
      return { at: target.sequence, problems: ['hash-mismatch'] };
    }
    case 'duplicate': {
      const copy = random() < 0.5 ? target : edited(target, { outcome: 'ok', keyName: 'forged' });
      records.splice(i + 1, 0, copy);
      return { at: target.sequence, problems: ['duplicate'] };
    }
    case 'truncate': {
      records.splice(i);
      return { at: target.sequence, problems: ['truncated'] };
    }
    case 'rechain-under-another-key': {
      // Everything from the target on is rewritten consistently, by someone with the database but not the key.
      const previous = i === 0 ? undefined : records[i - 1];
      const rewritten = buildChain(records.length - i, {
        key: OTHER_AUDIT_KEY,
        head: previous ?? { sequence: target.sequence - 1, hash: '0'.repeat(64) },
      });
      records.splice(i, records.length - i, ...rewritten);
      return { at: target.sequence, problems: ['hash-mismatch'] };
    }
  }
}

function verify(c: Case): ChainVerification {
  return verifyChain(c.records, { auditKey: AUDIT_KEY, replicaId: REPLICA, start: c.start, checkpoint: c.checkpoint });
}

describe('verifyChain against random tampering', () => {
  it('accepts every untampered random chain', () => {
    const random = generator(1);
    for (let round = 0; round < 200; round += 1) {
      const c = randomCase(random);
      expect(verify(c)).toMatchObject({ ok: true, count: c.records.length });
    }
  });

  it.each(TAMPERS)('detects %s in every random chain, at the first affected sequence', (kind) => {
    const random = generator(0x5eed + TAMPERS.indexOf(kind));
    for (let round = 0; round < 300; round += 1) {
      const c = randomCase(random);
      if ((kind === 'swap-positions' || kind === 'swap-sequence-numbers') && c.records.length < 2) continue;
      const expected = tamper(random, c.records, kind);
      const result = verify(c);
      const description = `${kind}, round ${round}`;
      expect(result.ok, description).toBe(false);
      if (!result.ok) {
        expect(result.firstBadSequence, description).toBe(expected.at);
        expect(expected.problems, description).toContain(result.problem);
      }
    }
  });

  it('detects a random mix of two tampers, unless the second undid the first', () => {
    const random = generator(42);
    for (let round = 0; round < 300; round += 1) {
      const c = randomCase(random);
      const original = JSON.stringify(c.records);
      for (let n = 0; n < 2 && c.records.length > 0; n += 1) {
        const kinds = c.records.length >= 2 ? TAMPERS : TAMPERS.filter((kind) => !kind.startsWith('swap'));
        tamper(random, c.records, kinds[pick(random, kinds.length)]!);
      }
      // Swapping the same two rows twice, or deleting the exact copy a duplicate added, restores the chain.
      const unchanged = JSON.stringify(c.records) === original;
      expect(verify(c).ok, `round ${round}`).toBe(unchanged);
    }
  });
});
