import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { canonicalAuditRecord, type AuditEvent, type AuditRecord } from '../../../src/audit/audit-record.js';
import { MAX_AUDIT_BATCH } from '../../../src/audit/audit-repository.js';
import { AuditWriter, HEAD_STATEMENT_INTERVAL_MS } from '../../../src/audit/audit-writer.js';
import {
  createCheckpoint,
  linkAuditEvent,
  verifyChain,
  verifyCheckpoint,
  type AuditCheckpoint,
  type ChainedAuditRecord,
} from '../../../src/audit/chain.js';
import { verifyHeadStatement, type HeadStatement } from '../../../src/audit/head-statement.js';
import { sealEvent, SEAL_METHOD } from '../../../src/audit/seal.js';
import { UnavailableError } from '../../../src/errors.js';
import { ManualClock } from '../../helpers/clock.js';
import { InMemoryAuditRepository } from '../../helpers/fakes/in-memory-audit-repository.js';
import { AUDIT_KEY, REPLICA, auditEvent } from './audit-fixtures.js';

/** What the writer may do to storage, and how a test makes it fail. */
type AppendBehaviour = 'store' | 'fail' | 'store-then-fail' | 'hang';

/**
 * The in-memory AuditRepository, scripted: each append call is kept, so a test sees how records were grouped into
 * commits, and can be made to fail, hang, or land and then fail. Head statements are kept as a history.
 */
class FakeAuditRepository extends InMemoryAuditRepository {
  readonly calls: Array<{ records: readonly AuditRecord[]; head: AuditCheckpoint; previousSequence: number }> = [];
  lastRecordCalls = 0;
  /** Behaviours for the next append calls, in order; `store` once they run out. */
  readonly script: AppendBehaviour[] = [];
  /** Set to hold the next append until `release` is called. */
  gate: Promise<void> | undefined;
  /** Every head statement stored, in order. */
  readonly statements: HeadStatement[] = [];

  /** This replica's stored records. */
  get stored(): AuditRecord[] {
    return this.records;
  }

  /** The stored head checkpoint; setting it (even to `undefined`) is what an attacker with the database can do. */
  get head(): AuditCheckpoint | undefined {
    return this.checkpointOf(REPLICA, 'head');
  }

  set head(checkpoint: AuditCheckpoint | undefined) {
    if (checkpoint === undefined) this.deleteCheckpoint(REPLICA, 'head');
    else this.overwriteCheckpoint(checkpoint);
  }

  override async recordHead(statement: HeadStatement): Promise<void> {
    this.statements.push(statement);
    await super.recordHead(statement);
  }

  override async append(links: readonly ChainedAuditRecord[], head: AuditCheckpoint, previousSequence: number): Promise<boolean> {
    // PostgreSQL stores each record from the canonical text it comes with: it must be the one its hash covers.
    for (const { record, canonical } of links) expect(canonical).toBe(canonicalAuditRecord(record, record.sequence).toString('utf8'));
    this.calls.push({ records: links.map((link) => link.record), head, previousSequence });
    const behaviour = this.script.shift() ?? 'store';
    if (this.gate !== undefined) {
      const gate = this.gate;
      this.gate = undefined;
      await gate;
    }
    if (behaviour === 'hang') return new Promise<boolean>(() => undefined);
    if (behaviour === 'fail') throw new Error('insert failed');
    const landed = await super.append(links, head, previousSequence);
    // The commit landed, but its answer was lost: the writer cannot know.
    if (landed && behaviour === 'store-then-fail') throw new Error('connection reset after commit');
    return landed;
  }

  override async lastRecord(replicaId: string): Promise<{ sequence: number; hash: string } | undefined> {
    this.lastRecordCalls += 1;
    return super.lastRecord(replicaId);
  }
}

function gated(repository: FakeAuditRepository): () => void {
  let release!: () => void;
  repository.gate = new Promise<void>((resolve) => (release = resolve));
  return release;
}

function writerOver(repository: FakeAuditRepository, timeoutMs = 1000, logger = pino({ level: 'silent' })): AuditWriter {
  return new AuditWriter({
    repository,
    auditKey: AUDIT_KEY,
    replicaId: REPLICA,
    clock: new ManualClock(),
    logger,
    timeoutMs,
  });
}

function events(count: number, from = 1): AuditEvent[] {
  return Array.from({ length: count }, (_, i) => auditEvent({ requestId: `req-${from + i}` }));
}

/** Settles every promise and reports each as `ok` or the error it rejected with. */
async function outcomes(promises: Array<Promise<void>>): Promise<Array<'ok' | unknown>> {
  return (await Promise.allSettled(promises)).map((result) => (result.status === 'fulfilled' ? 'ok' : result.reason));
}

function expectIntactChain(repository: FakeAuditRepository): void {
  const verdict = verifyChain(repository.stored, { auditKey: AUDIT_KEY, replicaId: REPLICA, checkpoint: repository.head });
  expect(verdict).toMatchObject({ ok: true, count: repository.stored.length, lastSequence: repository.stored.length });
}

describe('AuditWriter', () => {
  it('puts the records of one tick into one append call', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await Promise.all(events(3).map((event) => writer.append(event)));
    expect(repository.calls).toHaveLength(1);
    expect(repository.calls[0]!.records.map((record) => record.requestId)).toEqual(['req-1', 'req-2', 'req-3']);
    expect(writer.metrics).toEqual({ records: 3, commits: 1, commitFailures: 0, fileFailures: 0 });
  });

  it('groups records that arrive during a commit into the next commit', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    const release = gated(repository);
    const first = writer.append(auditEvent({ requestId: 'req-1' }));
    await new Promise((resolve) => setImmediate(resolve));
    expect(repository.calls).toHaveLength(1);
    const later = events(2, 2).map((event) => writer.append(event));
    release();
    await Promise.all([first, ...later]);
    expect(repository.calls.map((call) => call.records.map((record) => record.requestId))).toEqual([['req-1'], ['req-2', 'req-3']]);
  });

  it('chains records in arrival order with dense sequence numbers, and moves the head checkpoint with each commit', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await Promise.all(events(2).map((event) => writer.append(event)));
    await Promise.all(events(3, 3).map((event) => writer.append(event)));
    expect(repository.stored.map((record) => [record.sequence, record.requestId])).toEqual([
      [1, 'req-1'],
      [2, 'req-2'],
      [3, 'req-3'],
      [4, 'req-4'],
      [5, 'req-5'],
    ]);
    for (const { records, head } of repository.calls) {
      const last = records.at(-1)!;
      expect(head).toMatchObject({ replicaId: REPLICA, kind: 'head', sequence: last.sequence, hash: last.hash });
      expect(verifyCheckpoint(AUDIT_KEY, head)).toBe(true);
    }
    expect(writer.head).toEqual({ sequence: 5, hash: repository.stored[4]!.hash });
    expectIntactChain(repository);
  });

  it('splits a queue longer than one batch into several appends, in order', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await Promise.all(events(MAX_AUDIT_BATCH + 1).map((event) => writer.append(event)));
    expect(repository.calls.map((call) => call.records.length)).toEqual([MAX_AUDIT_BATCH, 1]);
    expectIntactChain(repository);
  });

  it('rejects every request waiting on a failed append with KH_ERR_UNAVAILABLE', async () => {
    const repository = new FakeAuditRepository();
    repository.script.push('fail');
    const writer = writerOver(repository);
    const results = await outcomes(events(3).map((event) => writer.append(event)));
    expect(repository.calls).toHaveLength(1);
    for (const result of results) {
      expect(result).toBeInstanceOf(UnavailableError);
      expect(result).toMatchObject({ code: 'KH_ERR_UNAVAILABLE', status: 503 });
    }
    expect(writer.metrics).toMatchObject({ records: 0, commits: 0, commitFailures: 1 });
  });

  it('after a failed append that did not land, reads the head back and reuses the sequence numbers', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await writer.append(auditEvent({ requestId: 'req-1' }));
    const readsBefore = repository.lastRecordCalls;
    repository.script.push('fail');
    await expect(writer.append(auditEvent({ requestId: 'lost' }))).rejects.toBeInstanceOf(UnavailableError);
    await writer.append(auditEvent({ requestId: 'req-2' }));
    expect(repository.lastRecordCalls).toBe(readsBefore + 1);
    expect(repository.stored.map((record) => [record.sequence, record.requestId])).toEqual([
      [1, 'req-1'],
      [2, 'req-2'],
    ]);
    expectIntactChain(repository);
  });

  it('after a failed append that did land, reads the head back and continues after it rather than overwriting it', async () => {
    const repository = new FakeAuditRepository();
    repository.script.push('store-then-fail');
    const writer = writerOver(repository);
    await expect(writer.append(auditEvent({ requestId: 'landed' }))).rejects.toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    const readsBefore = repository.lastRecordCalls;
    await writer.append(auditEvent({ requestId: 'next' }));
    expect(repository.lastRecordCalls).toBe(readsBefore + 1);
    expect(repository.stored.map((record) => [record.sequence, record.requestId])).toEqual([
      [1, 'landed'],
      [2, 'next'],
    ]);
    expectIntactChain(repository);
    // Once resynchronised, the head is trusted again: no more reads.
    await writer.append(auditEvent({ requestId: 'after' }));
    expect(repository.lastRecordCalls).toBe(readsBefore + 1);
  });

  it('a failed commit fails only its own batch: records queued behind it are committed', async () => {
    const repository = new FakeAuditRepository();
    repository.script.push('fail');
    const writer = writerOver(repository);
    const release = gated(repository);
    const doomed = writer.append(auditEvent({ requestId: 'doomed' }));
    await new Promise((resolve) => setImmediate(resolve));
    const queued = events(2).map((event) => writer.append(event));
    release();
    expect(await outcomes([doomed, ...queued])).toEqual([expect.any(UnavailableError), 'ok', 'ok']);
    expect(repository.stored.map((record) => record.requestId)).toEqual(['req-1', 'req-2']);
    expectIntactChain(repository);
  });

  it('chains a record as its event arrives, once the head is known', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await writer.append(auditEvent({ requestId: 'req-1' }));
    const release = gated(repository);
    const inFlight = writer.append(auditEvent({ requestId: 'req-2' }));
    await new Promise((resolve) => setImmediate(resolve));
    const event = auditEvent({ requestId: 'req-3' }) as { requestId: string };
    const queued = writer.append(event as unknown as AuditEvent);
    // What the caller does with the object afterwards is not what was recorded.
    event.requestId = 'changed';
    release();
    await Promise.all([inFlight, queued]);
    expect(repository.stored.map((record) => record.requestId)).toEqual(['req-1', 'req-2', 'req-3']);
    expectIntactChain(repository);
  });

  it('a commit that timed out and resumes later leaves the writer alone', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository, 20);
    const readBack = repository.lastRecord.bind(repository);
    let resume!: () => void;
    repository.lastRecord = async (replicaId) => {
      await new Promise<void>((resolve) => (resume = resolve));
      return readBack(replicaId);
    };
    await expect(writer.append(auditEvent({ requestId: 'timed-out' }))).rejects.toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    repository.lastRecord = readBack;
    await writer.append(auditEvent({ requestId: 'req-1' }));
    resume();
    await new Promise((resolve) => setImmediate(resolve));
    await writer.append(auditEvent({ requestId: 'req-2' }));
    expect(repository.calls.map((call) => call.records.map((record) => record.requestId))).toEqual([['req-1'], ['req-2']]);
    expectIntactChain(repository);
  });

  it('an event that cannot be chained fails only its own request, whether the head is known yet or not', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    const malformed = (requestId: string): AuditEvent => ({ ...auditEvent({ requestId }), status: -1 });
    // The first commit chains its records once it has recorded the chain's start; later ones as they arrive.
    const first = [writer.append(auditEvent({ requestId: 'req-1' })), writer.append(malformed('bad-1')), writer.append(auditEvent({ requestId: 'req-2' }))];
    expect(await outcomes(first)).toEqual(['ok', expect.any(TypeError), 'ok']);
    const later = [writer.append(malformed('bad-2')), writer.append(auditEvent({ requestId: 'req-3' }))];
    expect(await outcomes(later)).toEqual([expect.any(TypeError), 'ok']);
    expect(repository.stored.map((record) => [record.sequence, record.requestId])).toEqual([
      [1, 'req-1'],
      [2, 'req-2'],
      [3, 'req-3'],
    ]);
    expect(writer.metrics).toMatchObject({ records: 3, commitFailures: 0 });
    expectIntactChain(repository);
  });

  it('after a failed commit with more than two batches queued behind it, commits them all, in order and densely', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await writer.append(auditEvent({ requestId: 'req-0' }));
    repository.script.push('fail');
    const release = gated(repository);
    const doomed = writer.append(auditEvent({ requestId: 'doomed' }));
    await new Promise((resolve) => setImmediate(resolve));
    const queued = events(2 * MAX_AUDIT_BATCH + 1).map((event) => writer.append(event));
    release();
    const results = await outcomes([doomed, ...queued]);
    expect(results[0]).toBeInstanceOf(UnavailableError);
    expect(results.slice(1).every((result) => result === 'ok')).toBe(true);
    expect(repository.stored.map((record) => record.requestId)).toEqual(['req-0', ...events(2 * MAX_AUDIT_BATCH + 1).map((event) => event.requestId)]);
    expectIntactChain(repository);
  });

  it('a hanging append times out: its requests are rejected with KH_ERR_UNAVAILABLE, and the next commit resyncs', async () => {
    const repository = new FakeAuditRepository();
    repository.script.push('hang');
    const writer = writerOver(repository, 20);
    const results = await outcomes(events(2).map((event) => writer.append(event)));
    for (const result of results) expect(result).toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    expect(writer.metrics.commitFailures).toBe(1);
    const readsBefore = repository.lastRecordCalls;
    await writer.append(auditEvent({ requestId: 'after-hang' }));
    expect(repository.lastRecordCalls).toBe(readsBefore + 1);
    expect(repository.stored.map((record) => [record.sequence, record.requestId])).toEqual([[1, 'after-hang']]);
  });

  it('a hanging head read-back times out too', async () => {
    const repository = new FakeAuditRepository();
    repository.script.push('fail');
    const writer = writerOver(repository, 20);
    await expect(writer.append(auditEvent())).rejects.toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    repository.lastRecord = () => new Promise(() => undefined);
    await expect(writer.append(auditEvent())).rejects.toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    expect(repository.calls).toHaveLength(1);
  });

  it('starts a new chain by recording its genesis head, and commits only from where that head is', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await writer.append(auditEvent({ requestId: 'req-1' }));
    expect(repository.calls[0]!.previousSequence).toBe(0);
    expect(repository.head).toMatchObject({ kind: 'head', sequence: 1 });
    await writer.append(auditEvent({ requestId: 'req-2' }));
    expect(repository.calls[1]!.previousSequence).toBe(1);
  });

  it('a stored head that moved under it (a late commit landed) fails the batch closed; the writer then continues after it', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await writer.append(auditEvent({ requestId: 'req-1' }));
    // A commit of this chain that was given up on lands after all, behind the writer's back.
    const late = linkAuditEvent(AUDIT_KEY, auditEvent({ requestId: 'late' }), writer.head).record;
    repository.stored.push(late);
    repository.head = createCheckpoint(AUDIT_KEY, { replicaId: REPLICA, kind: 'head', sequence: late.sequence, hash: late.hash });
    await expect(writer.append(auditEvent({ requestId: 'refused' }))).rejects.toMatchObject({ code: 'KH_ERR_UNAVAILABLE' });
    await writer.append(auditEvent({ requestId: 'req-3' }));
    expect(repository.stored.map((record) => [record.sequence, record.requestId])).toEqual([
      [1, 'req-1'],
      [2, 'late'],
      [3, 'req-3'],
    ]);
    expectIntactChain(repository);
  });

  it('never re-anchors the chain below what it committed, so a truncated tail stays evident', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    await Promise.all(events(3).map((event) => writer.append(event)));
    // The attacker deletes records 2 and 3 and the head checkpoint.
    repository.stored.splice(1);
    repository.head = undefined;
    await outcomes([writer.append(auditEvent({ requestId: 'after-1' }))]);
    await outcomes([writer.append(auditEvent({ requestId: 'after-2' }))]);
    const verdict = verifyChain(repository.stored, { auditKey: AUDIT_KEY, replicaId: REPLICA, checkpoint: repository.head });
    expect(verdict.ok).toBe(false);
  });

  it('flush() waits until every queued record is committed', async () => {
    const repository = new FakeAuditRepository();
    const writer = writerOver(repository);
    const release = gated(repository);
    const pending = events(2).map((event) => writer.append(event));
    await new Promise((resolve) => setImmediate(resolve));
    pending.push(...events(2, 3).map((event) => writer.append(event)));
    let flushed = false;
    const flushing = writer.flush().then(() => (flushed = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(flushed).toBe(false);
    release();
    await flushing;
    expect(repository.stored).toHaveLength(4);
    await Promise.all(pending);
  });

  it('flush() on an idle writer returns at once', async () => {
    const writer = writerOver(new FakeAuditRepository());
    await expect(writer.flush()).resolves.toBeUndefined();
  });

  describe('seal and head statements', () => {
    it('refuses an event that claims to be a seal, so no request can end a chain', async () => {
      const repository = new FakeAuditRepository();
      const writer = writerOver(repository);
      await expect(writer.append(sealEvent(REPLICA, new Date()))).rejects.toBeInstanceOf(TypeError);
      await expect(writer.append(auditEvent({ method: SEAL_METHOD }))).rejects.toBeInstanceOf(TypeError);
      await writer.flush();
      expect(repository.stored).toEqual([]);
    });

    it('seal() commits what is queued, then the seal as the last record, and states the sealed head', async () => {
      const repository = new FakeAuditRepository();
      const writer = writerOver(repository);
      const queued = events(3).map((event) => writer.append(event));
      await writer.seal();
      expect(await outcomes(queued)).toEqual(['ok', 'ok', 'ok']);
      expect(repository.stored.map((record) => record.method)).toEqual(['POST', 'POST', 'POST', SEAL_METHOD]);
      expect(verifyChain(repository.stored, { auditKey: AUDIT_KEY, replicaId: REPLICA, checkpoint: repository.head })).toMatchObject({
        ok: true,
        lastSequence: 4,
        sealed: true,
      });
      const last = repository.statements.at(-1)!;
      expect(last).toMatchObject({ replicaId: REPLICA, sequence: 4, hash: repository.stored[3]!.hash, sealed: true });
      expect(verifyHeadStatement(AUDIT_KEY, last)).toBe(true);
    });

    it('after seal() every new record is refused with KH_ERR_UNAVAILABLE, and seal() again does nothing', async () => {
      const repository = new FakeAuditRepository();
      const writer = writerOver(repository);
      await writer.seal();
      await expect(writer.append(auditEvent())).rejects.toBeInstanceOf(UnavailableError);
      await writer.seal();
      expect(repository.stored.map((record) => record.method)).toEqual([SEAL_METHOD]);
    });

    it('a seal that cannot be committed is logged, not thrown, and the last statement says unsealed', async () => {
      const repository = new FakeAuditRepository();
      const lines: string[] = [];
      const writer = writerOver(repository, 1000, pino({ level: 'info' }, { write: (line: string) => lines.push(line) }));
      await writer.append(auditEvent());
      repository.script.push('fail');
      await expect(writer.seal()).resolves.toBeUndefined();
      expect(repository.stored).toHaveLength(1);
      expect(repository.statements.at(-1)).toMatchObject({ sequence: 1, sealed: false });
      expect(lines.join('')).toContain('audit chain could not be sealed');
    });

    it('a seal whose commit hangs is bounded by the audit timeout', async () => {
      const repository = new FakeAuditRepository();
      const writer = writerOver(repository, 50);
      await writer.append(auditEvent());
      repository.script.push('hang');
      await writer.seal();
      expect(repository.statements.at(-1)).toMatchObject({ sequence: 1, sealed: false });
    });

    it('the heartbeat states the head again every minute, and stops at the seal', async () => {
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      try {
        const repository = new FakeAuditRepository();
        const writer = writerOver(repository);
        await writer.startHeartbeat();
        await writer.append(auditEvent());
        vi.advanceTimersByTime(HEAD_STATEMENT_INTERVAL_MS);
        await writer.flush();
        expect(repository.statements.map((statement) => statement.sequence)).toEqual([0, 1]);
        await writer.seal();
        vi.advanceTimersByTime(10 * HEAD_STATEMENT_INTERVAL_MS);
        expect(repository.statements.map((statement) => [statement.sequence, statement.sealed])).toEqual([
          [0, false],
          [1, false],
          [2, true],
        ]);
      } finally {
        vi.useRealTimers();
      }
    });

    it('startHeartbeat() states the head at once, to the repository and the log, MAC\'d with the time', async () => {
      const repository = new FakeAuditRepository();
      const lines: string[] = [];
      const writer = writerOver(repository, 1000, pino({ level: 'info' }, { write: (line: string) => lines.push(line) }));
      await writer.startHeartbeat();
      await writer.seal();
      expect(repository.statements[0]).toMatchObject({ replicaId: REPLICA, sequence: 0, sealed: false });
      expect(verifyHeadStatement(AUDIT_KEY, repository.statements[0]!)).toBe(true);
      const logged = lines.map((line) => JSON.parse(line) as { msg: string; auditHead?: Record<string, unknown> });
      expect(logged.filter((line) => line.msg === 'audit chain head').map((line) => line.auditHead)).toEqual([
        expect.objectContaining({ headStatement: 'keyhold-audit-head/v1', sequence: 0, sealed: false }),
        expect.objectContaining({ sequence: 1, sealed: true }),
      ]);
    });
  });
});
