import type { Clock } from '../lib/clock.js';
import { ValidationError } from '../errors.js';
import type { AuditKeyMaterial } from './audit-key.js';
import type { AuditRecord } from './audit-record.js';
import type { AuditQuery, AuditRepository } from './audit-repository.js';
import { HEAD_STATEMENT_INTERVAL_MS } from './audit-writer.js';
import { createCheckpoint, verifyChainAsync, type AuditCheckpoint, type ChainProblem, type ChainVerification } from './chain.js';
import type { HeadStatement } from './head-statement.js';

/**
 * How a chain ended, as far as the verifier can tell:
 * - `sealed`: its last record is the seal its process wrote at a clean shutdown.
 * - `live`: not sealed, and its writer's MAC'd heartbeat is at most {@link LIVENESS_WINDOW_MS} old.
 * - `unsealed`: neither. The process crashed or was killed, or the chain's tail was cut off (with its seal and
 *   heartbeat put back from before the cut): from the database alone the two look the same.
 */
export type ChainState = 'sealed' | 'live' | 'unsealed';

/** A heartbeat older (or further ahead, a skewed clock) than three intervals means the writer stopped. */
export const LIVENESS_WINDOW_MS = 3 * HEAD_STATEMENT_INTERVAL_MS;

export interface ChainReport {
  readonly replicaId: string;
  /** Whether the records verify, and reach every checkpoint and head statement. */
  readonly ok: boolean;
  /** Records checked (after the last purge cut). */
  readonly records: number;
  readonly lastSequence?: number;
  /** The first sequence number that is missing, altered or out of place. */
  readonly firstBadSequence?: number;
  readonly problem?: ChainProblem | 'missing-head';
  readonly state: ChainState;
  /** The time of the writer's last heartbeat (ISO 8601), when one is stored. */
  readonly heartbeat?: string;
  /** The latest head statement a witness holds for this chain, which the chain was checked against. */
  readonly witnessed?: { readonly sequence: number; readonly time: string; readonly sealed: boolean };
  /** Set when the chain is `unsealed` and the caller accepted that (a crash accounted for). */
  readonly accepted?: true;
}

export interface VerificationReport {
  /** Every chain is intact, and none ended without a seal unless accepted. */
  readonly ok: boolean;
  readonly chains: readonly ChainReport[];
}

export interface VerifyOptions {
  /** Head statements kept outside the database (`KEYHOLD_AUDIT_FILE`, the log), the latest per replica. */
  readonly witness?: ReadonlyMap<string, HeadStatement> | undefined;
  /** Chains that may have ended without a seal, or `all`: replicas known to have crashed. */
  readonly acceptUnsealed?: 'all' | ReadonlySet<string> | undefined;
}

/** What is known of one chain besides its records, for {@link reportChain}. */
export interface ChainEvidence {
  readonly replicaId: string;
  readonly head?: AuditCheckpoint | undefined;
  readonly purge?: AuditCheckpoint | undefined;
  /** The writer's last heartbeat. */
  readonly heartbeat?: HeadStatement | undefined;
  readonly witnessed?: HeadStatement | undefined;
  /** Whether the source keeps checkpoints: the database does, a JSON-lines file does not. */
  readonly checkpointed: boolean;
}

/** The heartbeat and witness statements a chain's records must reach, for the chain verifier. */
export function statementsOf(evidence: ChainEvidence): HeadStatement[] {
  return [evidence.heartbeat, evidence.witnessed].filter((statement) => statement !== undefined);
}

/**
 * The report on one chain from its verification and its evidence. The heartbeat counts for liveness only when its
 * MAC verified, which the verification did: a bad one fails it as `checkpoint-invalid`.
 */
export function reportChain(
  evidence: ChainEvidence,
  result: ChainVerification,
  now: Date,
  acceptUnsealed: VerifyOptions['acceptUnsealed'],
): ChainReport {
  const { replicaId, head, purge, heartbeat, witnessed, checkpointed } = evidence;
  const fresh = heartbeat !== undefined && Math.abs(now.getTime() - heartbeat.time.getTime()) <= LIVENESS_WINDOW_MS;
  const state: ChainState = result.ok && result.sealed ? 'sealed' : fresh ? 'live' : 'unsealed';
  const accepted = state === 'unsealed' && (acceptUnsealed === 'all' || acceptUnsealed?.has(replicaId) === true);
  const context = {
    state,
    ...(heartbeat === undefined ? {} : { heartbeat: heartbeat.time.toISOString() }),
    ...(witnessed === undefined
      ? {}
      : { witnessed: { sequence: witnessed.sequence, time: witnessed.time.toISOString(), sealed: witnessed.sealed } }),
    ...(accepted ? { accepted: true as const } : {}),
  };
  if (!result.ok) {
    return { replicaId, ok: false, records: 0, firstBadSequence: result.firstBadSequence, problem: result.problem, ...context };
  }
  if (checkpointed && head === undefined && (result.count > 0 || purge !== undefined)) {
    return { replicaId, ok: false, records: result.count, firstBadSequence: result.lastSequence, problem: 'missing-head', ...context };
  }
  return { replicaId, ok: true, records: result.count, lastSequence: result.lastSequence, ...context };
}

/** The verdict over chain reports: each intact, and none unsealed unless accepted. */
export function verdictOf(chains: readonly ChainReport[]): VerificationReport {
  return { ok: chains.every((chain) => chain.ok && (chain.state !== 'unsealed' || chain.accepted === true)), chains };
}

export interface AuditLogOptions {
  readonly repository: AuditRepository;
  readonly auditKey: AuditKeyMaterial;
  readonly clock: Clock;
}

const DAY_MS = 24 * 3600 * 1000;

/**
 * Reads, verifies and purges the audit log, for whoever holds it: the sweeper, `keyhold audit verify`, and the
 * {@link AuditService} once it has authorised its caller. Writing is the {@link AuditWriter}'s.
 */
export class AuditLog {
  readonly #repository: AuditRepository;
  readonly #auditKey: AuditKeyMaterial;
  readonly #clock: Clock;

  constructor(options: AuditLogOptions) {
    this.#repository = options.repository;
    this.#auditKey = options.auditKey;
    this.#clock = options.clock;
  }

  /** Records matching `query`, oldest first, and whether more follow. */
  async read(query: AuditQuery): Promise<{ records: AuditRecord[]; hasMore: boolean }> {
    if (query.since !== undefined && query.until !== undefined && query.since.getTime() >= query.until.getTime()) {
      throw new ValidationError('since must be before until');
    }
    const rows = await this.#repository.query({ ...query, limit: query.limit + 1 });
    return { records: rows.slice(0, query.limit), hasMore: rows.length > query.limit };
  }

  /**
   * Walks every chain from its last purge cut: each record's link hash, dense sequence numbers, the chain's head
   * checkpoint and its writer's last heartbeat (a truncated tail falls short of them), and, given a witness, the
   * witness's latest statement (which a rollback of the database cannot reach). A chain whose records exist
   * without a head checkpoint had it deleted; a chain the witness knows and the database lacks was deleted whole.
   * Each chain is reported sealed, live or unsealed ({@link ChainState}).
   */
  async verify(options: VerifyOptions = {}): Promise<VerificationReport> {
    const { witness = new Map<string, HeadStatement>() } = options;
    const now = this.#clock.now();
    const replicas = new Set([...(await this.#repository.replicas()), ...witness.keys()]);
    const chains: ChainReport[] = [];
    for (const replicaId of [...replicas].sort()) {
      const { head, purge } = await this.#repository.checkpoints(replicaId);
      const evidence: ChainEvidence = {
        replicaId,
        head,
        purge,
        heartbeat: await this.#repository.headStatement(replicaId),
        witnessed: witness.get(replicaId),
        checkpointed: true,
      };
      // Read from the very start, not from the purge cut: a row at or below the cut (forged, or left behind) must
      // reach the verifier to be reported.
      const result = await verifyChainAsync(this.#repository.chain(replicaId, Number.MIN_SAFE_INTEGER), {
        auditKey: this.#auditKey,
        replicaId,
        start: purge,
        checkpoint: head,
        statements: statementsOf(evidence),
      });
      chains.push(reportChain(evidence, result, now, options.acceptUnsealed));
    }
    return verdictOf(chains);
  }

  /**
   * Deletes records older than the retention period. Each chain's cut is recorded as a MAC'd purge checkpoint in
   * the same transaction, after the part to be deleted was verified: a purge must not erase the evidence of
   * tampering it would otherwise carry away.
   */
  async purgeOlderThan(retentionDays: number): Promise<{ replicaId: string; deleted: number }[]> {
    const before = new Date(this.#clock.now().getTime() - retentionDays * DAY_MS);
    const purged: { replicaId: string; deleted: number }[] = [];
    for (const cut of await this.#repository.cutsBefore(before)) {
      const { purge } = await this.#repository.checkpoints(cut.replicaId);
      const start = purge?.sequence ?? 0;
      let beforeLast = { sequence: start, hash: purge?.hash ?? '' };
      const verified = await verifyChainAsync(
        (async function* (records) {
          let previous = beforeLast;
          for await (const record of records) {
            if (record.sequence > cut.sequence) return;
            beforeLast = previous;
            previous = record;
            yield record;
          }
        })(this.#repository.chain(cut.replicaId, start)),
        { auditKey: this.#auditKey, replicaId: cut.replicaId, start: purge },
      );
      if (!verified.ok || verified.lastSequence !== cut.sequence || verified.lastHash !== cut.hash) continue;
      // A chain's seal is kept: without it an old chain would read as ended without one.
      const kept = verified.sealed ? beforeLast : cut;
      if (kept.sequence <= start) continue;
      const checkpoint = createCheckpoint(this.#auditKey, { replicaId: cut.replicaId, sequence: kept.sequence, hash: kept.hash, kind: 'purge' });
      purged.push({ replicaId: cut.replicaId, deleted: await this.#repository.purge(checkpoint, this.#clock.now()) });
    }
    return purged;
  }
}
