import type { Clock } from '../clock.js';
import { ValidationError } from '../errors.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { AuditKeyMaterial } from './audit-key.js';
import type { AuditRecord } from './audit-record.js';
import type { AuditQuery, AuditRepository } from './audit-repository.js';
import { createCheckpoint, verifyChainAsync, type ChainProblem } from './chain.js';
import type { Caller } from './trail.js';

export interface ChainReport {
  readonly replicaId: string;
  readonly ok: boolean;
  /** Records checked (after the last purge cut). */
  readonly records: number;
  readonly lastSequence?: number;
  /** The first sequence number that is missing, altered or out of place. */
  readonly firstBadSequence?: number;
  readonly problem?: ChainProblem | 'missing-head';
}

export interface VerificationReport {
  readonly ok: boolean;
  readonly chains: readonly ChainReport[];
}

export interface AuditServiceOptions {
  readonly repository: AuditRepository;
  readonly auditKey: AuditKeyMaterial;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
}

const DAY_MS = 24 * 3600 * 1000;

/** Reads, verifies and purges the audit log. Writing is the {@link AuditWriter}'s. */
export class AuditService {
  readonly #repository: AuditRepository;
  readonly #auditKey: AuditKeyMaterial;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;

  constructor(options: AuditServiceOptions) {
    this.#repository = options.repository;
    this.#auditKey = options.auditKey;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
  }

  async query(caller: Caller, query: AuditQuery): Promise<{ records: AuditRecord[]; hasMore: boolean }> {
    this.#authorizer.authorize(caller, 'audit:read', {});
    if (query.since !== undefined && query.until !== undefined && query.since.getTime() >= query.until.getTime()) {
      throw new ValidationError('since must be before until');
    }
    const rows = await this.#repository.query({ ...query, limit: query.limit + 1 });
    return { records: rows.slice(0, query.limit), hasMore: rows.length > query.limit };
  }

  async verifyAs(caller: Caller): Promise<VerificationReport> {
    this.#authorizer.authorize(caller, 'audit:read', {});
    return this.verify();
  }

  /**
   * Walks every chain from its last purge cut: each record's link hash, dense sequence numbers, and the chain's
   * head checkpoint (a truncated tail falls short of it). A chain whose records exist without a head checkpoint
   * had it deleted.
   */
  async verify(): Promise<VerificationReport> {
    const chains: ChainReport[] = [];
    for (const replicaId of await this.#repository.replicas()) {
      const { head, purge } = await this.#repository.checkpoints(replicaId);
      // Read from the very start, not from the purge cut: a row at or below the cut (forged, or left behind) must
      // reach the verifier to be reported.
      const result = await verifyChainAsync(this.#repository.chain(replicaId, Number.MIN_SAFE_INTEGER), {
        auditKey: this.#auditKey,
        replicaId,
        start: purge,
        checkpoint: head,
      });
      if (!result.ok) {
        chains.push({ replicaId, ok: false, records: 0, firstBadSequence: result.firstBadSequence, problem: result.problem });
      } else if (head === undefined && (result.count > 0 || purge !== undefined)) {
        chains.push({ replicaId, ok: false, records: result.count, firstBadSequence: result.lastSequence, problem: 'missing-head' });
      } else {
        chains.push({ replicaId, ok: true, records: result.count, lastSequence: result.lastSequence });
      }
    }
    return { ok: chains.every((chain) => chain.ok), chains };
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
      const verified = await verifyChainAsync(
        (async function* (records) {
          for await (const record of records) {
            if (record.sequence > cut.sequence) return;
            yield record;
          }
        })(this.#repository.chain(cut.replicaId, purge?.sequence ?? 0)),
        { auditKey: this.#auditKey, replicaId: cut.replicaId, start: purge },
      );
      if (!verified.ok || verified.lastSequence !== cut.sequence || verified.lastHash !== cut.hash) continue;
      const checkpoint = createCheckpoint(this.#auditKey, { ...cut, kind: 'purge' });
      purged.push({ replicaId: cut.replicaId, deleted: await this.#repository.purge(checkpoint, this.#clock.now()) });
    }
    return purged;
  }
}
