import type { AuditRecord } from './audit-record.js';
import type { AuditCheckpoint, ChainedAuditRecord } from './chain.js';
import type { HeadStatement } from './head-statement.js';

export interface AuditQuery {
  readonly since?: Date | undefined;
  readonly until?: Date | undefined;
  readonly principal?: string | undefined;
  readonly key?: string | undefined;
  readonly action?: string | undefined;
  readonly outcome?: string | undefined;
  /** Newest first: records before this position. */
  readonly before?: { readonly time: number; readonly replicaId: string; readonly sequence: number } | undefined;
  readonly limit: number;
}

/**
 * The most records one group commit may hand to {@link AuditRepository.append}: a generous bound under which one
 * commit's rows in one statement stay under every driver's parameter limit.
 */
export const MAX_AUDIT_BATCH = 500;

/** Persistence of audit chains: their records, checkpoints and head statements. */
export interface AuditRepository {
  /** Records a new chain's head at its genesis, so that every commit after it can advance it conditionally. */
  startChain(genesis: AuditCheckpoint, now: Date): Promise<void>;
  /**
   * One group commit: the records, and the chain's head checkpoint moved from `previousSequence` to the last of
   * them, atomically, and only if the head is still at `previousSequence`. False when nothing was written. At most
   * {@link MAX_AUDIT_BATCH} records.
   */
  append(links: readonly ChainedAuditRecord[], head: AuditCheckpoint, previousSequence: number, now: Date): Promise<boolean>;
  /** The last stored record of a chain, to resume after a write whose outcome is unknown. */
  lastRecord(replicaId: string): Promise<{ sequence: number; hash: string } | undefined>;
  /** Stores a chain's head statement, only ever forwards (a later head, or the same head later). */
  recordHead(statement: HeadStatement, now: Date): Promise<void>;
  /** A chain's stored head statement: its writer's last heartbeat. */
  headStatement(replicaId: string): Promise<HeadStatement | undefined>;
  /** Every chain that has records, checkpoints or a head statement, sorted. */
  replicas(): Promise<string[]>;
  checkpoints(replicaId: string): Promise<{ head?: AuditCheckpoint; purge?: AuditCheckpoint }>;
  /** A chain's records after `afterSequence`, in sequence order, read page by page. */
  chain(replicaId: string, afterSequence: number, pageSize?: number): AsyncGenerator<AuditRecord>;
  /**
   * Records newest first, keyset-paginated on (time, replica, sequence). A record matches the key filter by its own
   * key name or by a key its batch summary names.
   */
  query(query: AuditQuery): Promise<AuditRecord[]>;
  /**
   * Deletes a chain's records up to and including `cut.sequence`, recording the cut as the chain's purge checkpoint
   * in the same commit. Returns how many were deleted.
   */
  purge(cut: AuditCheckpoint, now: Date): Promise<number>;
  /** Per chain, the highest sequence among records older than `before`, with its hash: where a retention purge cuts. */
  cutsBefore(before: Date): Promise<{ replicaId: string; sequence: number; hash: string }[]>;
}
