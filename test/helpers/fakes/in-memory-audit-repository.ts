import type { AuditRecord } from '../../../src/audit/audit-record.js';
import { MAX_AUDIT_BATCH, type AuditQuery, type AuditRepository } from '../../../src/audit/audit-repository.js';
import type { AuditCheckpoint, ChainedAuditRecord } from '../../../src/audit/chain.js';
import { isLaterStatement, type HeadStatement } from '../../../src/audit/head-statement.js';

/**
 * {@link AuditRepository} in memory, keeping its contract: a commit lands whole, and only when the chain's head
 * checkpoint is where it expects (so a chain stays dense), checkpoints and head statements only move forwards, queries
 * come newest first by (time, replica, sequence) and find batch records by the keys their summary names, and a purge
 * deletes up to its cut and records it. `records` is the table itself: a test may tamper with it as anyone who can
 * write the database could.
 */
export class InMemoryAuditRepository implements AuditRepository {
  readonly records: AuditRecord[] = [];
  readonly #checkpoints = new Map<string, { head?: AuditCheckpoint; purge?: AuditCheckpoint }>();
  readonly #statements = new Map<string, HeadStatement>();

  async startChain(genesis: AuditCheckpoint): Promise<void> {
    this.setCheckpoint(genesis);
  }

  async append(links: readonly ChainedAuditRecord[], head: AuditCheckpoint, previousSequence: number): Promise<boolean> {
    if (links.length > MAX_AUDIT_BATCH) throw new RangeError(`At most ${MAX_AUDIT_BATCH} records a commit`);
    if (this.checkpointOf(head.replicaId, 'head')?.sequence !== previousSequence) return false;
    this.records.push(...links.map((link) => link.record));
    this.#checkpoints.set(head.replicaId, { ...this.#checkpoints.get(head.replicaId), head });
    return true;
  }

  async lastRecord(replicaId: string): Promise<{ sequence: number; hash: string } | undefined> {
    const last = this.#chain(replicaId).at(-1);
    return last === undefined ? undefined : { sequence: last.sequence, hash: last.hash };
  }

  async recordHead(statement: HeadStatement): Promise<void> {
    const stored = this.#statements.get(statement.replicaId);
    if (stored === undefined || statement.sequence > stored.sequence || (statement.sequence === stored.sequence && !isLaterStatement(stored, statement))) {
      this.#statements.set(statement.replicaId, statement);
    }
  }

  async headStatement(replicaId: string): Promise<HeadStatement | undefined> {
    return this.#statements.get(replicaId);
  }

  async replicas(): Promise<string[]> {
    return [...new Set([...this.records.map((r) => r.replicaId), ...this.#checkpoints.keys(), ...this.#statements.keys()])].sort();
  }

  async checkpoints(replicaId: string): Promise<{ head?: AuditCheckpoint; purge?: AuditCheckpoint }> {
    return { ...this.#checkpoints.get(replicaId) };
  }

  async *chain(replicaId: string, afterSequence: number): AsyncGenerator<AuditRecord> {
    yield* this.#chain(replicaId).filter((record) => record.sequence > afterSequence);
  }

  async query(query: AuditQuery): Promise<AuditRecord[]> {
    const position = (r: AuditRecord) => [r.time.getTime(), r.replicaId, r.sequence] as const;
    const newerFirst = (a: AuditRecord, b: AuditRecord) => comparePositions(position(b), position(a));
    const before = query.before;
    return this.records
      .filter(
        (r) =>
          (query.principal === undefined || r.principalId === query.principal) &&
          (query.action === undefined || r.action === query.action) &&
          (query.outcome === undefined || r.outcome === query.outcome) &&
          (query.key === undefined || r.keyName === query.key || (r.batch?.entries.some((e) => e.keyName === query.key) ?? false)) &&
          (query.since === undefined || r.time.getTime() >= query.since.getTime()) &&
          (query.until === undefined || r.time.getTime() < query.until.getTime()) &&
          (before === undefined || comparePositions(position(r), [before.time, before.replicaId, before.sequence]) < 0),
      )
      .sort(newerFirst)
      .slice(0, query.limit);
  }

  async purge(cut: AuditCheckpoint): Promise<number> {
    const before = this.records.length;
    this.setCheckpoint(cut);
    this.records.splice(0, this.records.length, ...this.records.filter((r) => r.replicaId !== cut.replicaId || r.sequence > cut.sequence));
    return before - this.records.length;
  }

  async cutsBefore(before: Date): Promise<{ replicaId: string; sequence: number; hash: string }[]> {
    const cuts = new Map<string, { replicaId: string; sequence: number; hash: string }>();
    for (const r of this.records) {
      if (r.time.getTime() >= before.getTime()) continue;
      const cut = cuts.get(r.replicaId);
      if (cut === undefined || r.sequence > cut.sequence) cuts.set(r.replicaId, { replicaId: r.replicaId, sequence: r.sequence, hash: r.hash });
    }
    return [...cuts.values()];
  }

  /** A chain's stored checkpoint of one kind. */
  checkpointOf(replicaId: string, kind: 'head' | 'purge'): AuditCheckpoint | undefined {
    return this.#checkpoints.get(replicaId)?.[kind];
  }

  /** Stores a checkpoint only forwards, as the port does. */
  protected setCheckpoint(checkpoint: AuditCheckpoint): void {
    const stored = this.#checkpoints.get(checkpoint.replicaId) ?? {};
    const current = stored[checkpoint.kind];
    if (current === undefined || checkpoint.sequence > current.sequence) {
      this.#checkpoints.set(checkpoint.replicaId, { ...stored, [checkpoint.kind]: checkpoint });
    }
  }

  /** Deletes a chain's checkpoint of one kind, as anyone who can write the database could. */
  deleteCheckpoint(replicaId: string, kind: 'head' | 'purge'): void {
    const stored = { ...this.#checkpoints.get(replicaId) };
    delete stored[kind];
    this.#checkpoints.set(replicaId, stored);
  }

  /** Sets a chain's checkpoint to anything, as anyone who can write the database could. */
  overwriteCheckpoint(checkpoint: AuditCheckpoint): void {
    this.#checkpoints.set(checkpoint.replicaId, { ...this.#checkpoints.get(checkpoint.replicaId), [checkpoint.kind]: checkpoint });
  }

  #chain(replicaId: string): AuditRecord[] {
    return this.records.filter((r) => r.replicaId === replicaId).sort((a, b) => a.sequence - b.sequence);
  }
}

function comparePositions(a: readonly [number, string, number], b: readonly [number, string, number]): number {
  if (a[0] !== b[0]) return a[0] - b[0];
  if (a[1] !== b[1]) return Buffer.compare(Buffer.from(a[1]), Buffer.from(b[1]));
  return a[2] - b[2];
}
