import type { Knex } from 'knex';
import { isPostgres, type Database } from '../storage/database.js';
import { AUDIT_RECORD_FIELDS, type AuditRecord, type AuditRecordField } from './audit-record.js';
import type { AuditCheckpoint, ChainedAuditRecord, CheckpointKind } from './chain.js';
import type { HeadStatement } from './head-statement.js';

interface AuditRow {
  replica_id: string;
  sequence: number | string;
  time: number | string;
  request_id: string;
  principal_id: string | null;
  principal_type: string | null;
  token_id: string | null;
  source_address: string | null;
  method: string;
  route: string | null;
  action: string | null;
  key_name: string | null;
  key_id: string | null;
  key_version: number | null;
  context_keys: string;
  decision: string | null;
  decision_reason: string | null;
  policy: string | null;
  statement: number | null;
  outcome: string;
  status: number;
  latency_ms: number | string;
  hash: string;
}

interface CheckpointRow {
  replica_id: string;
  kind: string;
  sequence: number | string;
  hash: string;
  mac: string;
  updated_at: number | string;
}

/** A field's column: its name in snake case (`keyVersion` is `key_version`). */
function columnOf(field: AuditRecordField): string {
  return field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/**
 * How the statement reads a canonical field, at its position in the canonical array, into its column: as text (SQL
 * null for JSON null), unless the column needs a conversion.
 */
const POSTGRES_CONVERSIONS: Readonly<Partial<Record<AuditRecordField, (position: number) => string>>> = {
  sequence: (position) => `(r.fields ->> ${position})::bigint`,
  // The canonical time is ISO 8601 UTC with milliseconds; the column holds epoch milliseconds.
  time: (position) => `(extract(epoch from (r.fields ->> ${position})::timestamptz) * 1000)::bigint`,
  keyVersion: (position) => `(r.fields ->> ${position})::bigint`,
  // The column holds the keys as a JSON array, the field's value in jsonb's rendering (`["a", "b"]`); readers parse it.
  contextKeys: (position) => `(r.fields -> ${position})::text`,
  statement: (position) => `(r.fields ->> ${position})::integer`,
  status: (position) => `(r.fields ->> ${position})::integer`,
  latencyMs: (position) => `(r.fields ->> ${position})::double precision`,
};

function readField(field: AuditRecordField, position: number): string {
  return POSTGRES_CONVERSIONS[field]?.(position) ?? `r.fields ->> ${position}`;
}

/**
 * A group commit on PostgreSQL, in one statement: move the head checkpoint if it is where this batch expects it
 * (waiting for the row lock of a commit still running), and insert the records only if it moved. The records come
 * as one JSON parameter, `[[canonical, hash], …]`: each record's canonical text (`canonicalAuditText`, which its hash
 * covers and which the writer has already built) is a JSON array of its fields in `AUDIT_RECORD_FIELDS` order, read
 * here by position, so a record is serialised once. The text is the same for every batch size, so it is prepared
 * once per connection, and the driver binds seven values.
 */
const POSTGRES_APPEND =
  'with advanced as (update audit_checkpoints set sequence = $1, hash = $2, mac = $3, updated_at = $4 ' +
  "where replica_id = $5 and kind = 'head' and sequence = $6 returning 1), " +
  `appended as (insert into audit_records (${AUDIT_RECORD_FIELDS.map(columnOf).join(', ')}, hash) ` +
  // Position 0 of a canonical array is the format tag; the fields follow it.
  `select ${AUDIT_RECORD_FIELDS.map((field, i) => readField(field, i + 1)).join(', ')}, r.hash ` +
  'from (select e -> 0 as fields, e ->> 1 as hash from jsonb_array_elements($7::jsonb) e) r ' +
  'where exists (select 1 from advanced) returning 1) ' +
  'select count(*) as appended from appended';

/**
 * The statement's name on each connection: prepared once there, then only bound and executed, so PostgreSQL does
 * not parse and plan it again for every group commit (a fifth of its CPU per audited request, measured).
 */
const POSTGRES_APPEND_STATEMENT = 'keyhold_audit_append';

/** The driver's client, as knex's pool hands it out. */
interface PgConnection {
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: { appended?: number | string }[] }>;
}

function toRow(record: AuditRecord): AuditRow {
  return {
    replica_id: record.replicaId,
    sequence: record.sequence,
    time: record.time.getTime(),
    request_id: record.requestId,
    principal_id: record.principalId,
    principal_type: record.principalType,
    token_id: record.tokenId,
    source_address: record.sourceAddress,
    method: record.method,
    route: record.route,
    action: record.action,
    key_name: record.keyName,
    key_id: record.keyId,
    key_version: record.keyVersion,
    context_keys: JSON.stringify(record.contextKeys),
    decision: record.decision,
    decision_reason: record.decisionReason,
    policy: record.policy,
    statement: record.statement,
    outcome: record.outcome,
    status: record.status,
    latency_ms: record.latencyMs,
    hash: record.hash,
  };
}

function toRecord(row: AuditRow): AuditRecord {
  return {
    replicaId: row.replica_id,
    sequence: Number(row.sequence),
    time: new Date(Number(row.time)),
    requestId: row.request_id,
    principalId: row.principal_id,
    principalType: row.principal_type,
    tokenId: row.token_id,
    sourceAddress: row.source_address,
    method: row.method,
    route: row.route,
    action: row.action,
    keyName: row.key_name,
    keyId: row.key_id,
    keyVersion: row.key_version === null ? null : Number(row.key_version),
    contextKeys: JSON.parse(row.context_keys) as string[],
    decision: row.decision as AuditRecord['decision'],
    decisionReason: row.decision_reason,
    policy: row.policy,
    statement: row.statement === null ? null : Number(row.statement),
    outcome: row.outcome,
    status: Number(row.status),
    latencyMs: Number(row.latency_ms),
    hash: row.hash,
  };
}

interface HeadRow {
  replica_id: string;
  sequence: number | string;
  hash: string;
  time: number | string;
  sealed: boolean | number;
  mac: string;
}

function toHeadStatement(row: HeadRow): HeadStatement {
  return {
    replicaId: row.replica_id,
    sequence: Number(row.sequence),
    hash: row.hash,
    time: new Date(Number(row.time)),
    // SQLite stores a boolean as 0 or 1.
    sealed: row.sealed === true || row.sealed === 1,
    mac: row.mac,
  };
}

function toCheckpoint(row: CheckpointRow): AuditCheckpoint {
  return {
    replicaId: row.replica_id,
    kind: row.kind as CheckpointKind,
    sequence: Number(row.sequence),
    hash: row.hash,
    mac: row.mac,
  };
}

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

/** A generous bound: one group commit's rows in one statement stays under every driver's parameter limit. */
export const MAX_AUDIT_BATCH = 500;

/** Persistence of audit records and checkpoints. No other module writes SQL for them. */
export class AuditRepository {
  constructor(private readonly db: Database) {}

  /** Records a new chain's head at its genesis, so that every commit after it can advance it conditionally. */
  async startChain(genesis: AuditCheckpoint, now: Date): Promise<void> {
    await this.db.transaction(async (trx) => upsertCheckpoint(trx, genesis, now));
  }

  /**
   * One group commit: the records, and the chain's head checkpoint moved from `previousSequence` to the last of
   * them, in one transaction, and only if the head is still at `previousSequence`. A commit sent while the one before
   * it is still running waits for that one's row lock on the head, then finds the head where it expects it only if
   * that one committed; so commits can overlap and the chain still never gets a gap. False when nothing was written.
   */
  async append(links: readonly ChainedAuditRecord[], head: AuditCheckpoint, previousSequence: number, now: Date): Promise<boolean> {
    if (isPostgres(this.db)) {
      // Hashes are lower-case hex: nothing in them needs escaping.
      const batch = `[${links.map(({ canonical, record }) => `[${canonical},"${record.hash}"]`).join(',')}]`;
      // One statement is one transaction and one round trip: no BEGIN and COMMIT around it. It goes to the driver
      // directly: knex's per-query work costs more than the statement itself on this path.
      const connection = (await this.db.client.acquireConnection()) as PgConnection;
      try {
        const result = await connection.query({
          name: POSTGRES_APPEND_STATEMENT,
          text: POSTGRES_APPEND,
          values: [head.sequence, head.hash, head.mac, now.getTime(), head.replicaId, previousSequence, batch],
        });
        return Number(result.rows[0]?.appended ?? 0) === links.length;
      } finally {
        await this.db.client.releaseConnection(connection);
      }
    }
    return this.db.transaction(async (trx) => {
      const advanced = await trx('audit_checkpoints')
        .where({ replica_id: head.replicaId, kind: 'head', sequence: previousSequence })
        .update({ sequence: head.sequence, hash: head.hash, mac: head.mac, updated_at: now.getTime() });
      if (Number(advanced) !== 1) return false;
      await trx('audit_records').insert(links.map(({ record }) => toRow(record)));
      return true;
    });
  }

  /** The last stored record of a chain, to resume after a write whose outcome is unknown. */
  async lastRecord(replicaId: string): Promise<{ sequence: number; hash: string } | undefined> {
    const row = (await this.db('audit_records')
      .select('sequence', 'hash')
      .where({ replica_id: replicaId })
      .orderBy('sequence', 'desc')
      .first()) as { sequence: number | string; hash: string } | undefined;
    return row === undefined ? undefined : { sequence: Number(row.sequence), hash: row.hash };
  }

  /**
   * Stores a chain's head statement, only ever forwards (a later head, or the same head later): a statement delayed
   * behind a newer one must not replace it.
   */
  async recordHead(statement: HeadStatement, now: Date): Promise<void> {
    await this.db('audit_heads')
      .insert({
        replica_id: statement.replicaId,
        sequence: statement.sequence,
        hash: statement.hash,
        time: statement.time.getTime(),
        sealed: statement.sealed,
        mac: statement.mac,
        updated_at: now.getTime(),
      })
      .onConflict('replica_id')
      .merge(['sequence', 'hash', 'time', 'sealed', 'mac', 'updated_at'])
      .where('audit_heads.sequence', '<', statement.sequence)
      .orWhere((same) =>
        same.where('audit_heads.sequence', '=', statement.sequence).andWhere('audit_heads.time', '<=', statement.time.getTime()),
      );
  }

  /** A chain's stored head statement: its writer's last heartbeat. */
  async headStatement(replicaId: string): Promise<HeadStatement | undefined> {
    const row = (await this.db<HeadRow>('audit_heads').where({ replica_id: replicaId }).first()) as HeadRow | undefined;
    return row === undefined ? undefined : toHeadStatement(row);
  }

  /** Every chain that has records, checkpoints or a head statement. */
  async replicas(): Promise<string[]> {
    const rows = (await this.db
      .select('replica_id')
      .from('audit_records')
      .union((union) => union.select('replica_id').from('audit_checkpoints'))
      .union((union) => union.select('replica_id').from('audit_heads'))) as { replica_id: string }[];
    return [...new Set(rows.map((row) => row.replica_id))].sort();
  }

  async checkpoints(replicaId: string): Promise<{ head?: AuditCheckpoint; purge?: AuditCheckpoint }> {
    const rows = (await this.db<CheckpointRow>('audit_checkpoints').where({ replica_id: replicaId })) as CheckpointRow[];
    const found: { head?: AuditCheckpoint; purge?: AuditCheckpoint } = {};
    for (const row of rows) {
      if (row.kind === 'head' || row.kind === 'purge') found[row.kind] = toCheckpoint(row);
    }
    return found;
  }

  /** A chain's records in sequence order, read page by page so a walk over millions of rows stays small. */
  async *chain(replicaId: string, afterSequence: number, pageSize = 5000): AsyncGenerator<AuditRecord> {
    let after = afterSequence;
    for (;;) {
      const rows = (await this.db<AuditRow>('audit_records')
        .where({ replica_id: replicaId })
        .andWhere('sequence', '>', after)
        .orderBy('sequence')
        .limit(pageSize)) as AuditRow[];
      for (const row of rows) yield toRecord(row);
      if (rows.length < pageSize) return;
      after = Number(rows[rows.length - 1]!.sequence);
    }
  }

  /** Newest first, keyset-paginated on (time, replica, sequence); each filter has an index ending in time. */
  async query(query: AuditQuery): Promise<AuditRecord[]> {
    const builder = this.db<AuditRow>('audit_records');
    if (query.principal !== undefined) builder.where('principal_id', query.principal);
    if (query.key !== undefined) builder.where('key_name', query.key);
    if (query.action !== undefined) builder.where('action', query.action);
    if (query.outcome !== undefined) builder.where('outcome', query.outcome);
    if (query.since !== undefined) builder.where('time', '>=', query.since.getTime());
    if (query.until !== undefined) builder.where('time', '<', query.until.getTime());
    const before = query.before;
    if (before !== undefined) {
      // The plain bound lets the index range stop at the cursor; the OR below only breaks ties within its instant.
      builder.andWhere('time', '<=', before.time);
      builder.andWhere((where) =>
        where
          .where('time', '<', before.time)
          .orWhere((same) =>
            same
              .where('time', '=', before.time)
              .andWhere((tie) =>
                tie
                  .where('replica_id', '<', before.replicaId)
                  .orWhere((last) => last.where('replica_id', '=', before.replicaId).andWhere('sequence', '<', before.sequence)),
              ),
          ),
      );
    }
    builder.orderBy([
      { column: 'time', order: 'desc' },
      { column: 'replica_id', order: 'desc' },
      { column: 'sequence', order: 'desc' },
    ]);
    return ((await builder.limit(query.limit)) as AuditRow[]).map(toRecord);
  }

  /**
   * Deletes a chain's records up to and including `cut.sequence`, recording the cut as the chain's purge checkpoint
   * in the same transaction, so verification resumes exactly after what was deleted.
   */
  async purge(cut: AuditCheckpoint, now: Date): Promise<number> {
    return this.db.transaction(async (trx) => {
      await upsertCheckpoint(trx, cut, now);
      const deleted: unknown = await trx('audit_records')
        .where({ replica_id: cut.replicaId })
        .andWhere('sequence', '<=', cut.sequence)
        .delete();
      return Number(deleted);
    });
  }

  /**
   * Per chain, the highest sequence among records older than `before`, with its hash: where a retention purge
   * cuts. A chain's records are written in time order, so everything up to that sequence is old enough.
   */
  async cutsBefore(before: Date): Promise<{ replicaId: string; sequence: number; hash: string }[]> {
    const maxima = (await this.db('audit_records')
      .select('replica_id')
      .max({ sequence: 'sequence' })
      .where('time', '<', before.getTime())
      .groupBy('replica_id')) as { replica_id: string; sequence: number | string }[];
    const cuts: { replicaId: string; sequence: number; hash: string }[] = [];
    for (const { replica_id: replicaId, sequence } of maxima) {
      const row = (await this.db('audit_records').select('hash').where({ replica_id: replicaId, sequence }).first()) as
        | { hash: string }
        | undefined;
      if (row !== undefined) cuts.push({ replicaId, sequence: Number(sequence), hash: row.hash });
    }
    return cuts;
  }
}

/**
 * Records a checkpoint, only ever forwards: a head read back while a commit that timed out was still landing, or a
 * replayed purge, must not move a checkpoint below what it already vouches for.
 */
async function upsertCheckpoint(trx: Knex.Transaction, checkpoint: AuditCheckpoint, now: Date): Promise<void> {
  await trx('audit_checkpoints')
    .insert({
      replica_id: checkpoint.replicaId,
      kind: checkpoint.kind,
      sequence: checkpoint.sequence,
      hash: checkpoint.hash,
      mac: checkpoint.mac,
      updated_at: now.getTime(),
    })
    .onConflict(['replica_id', 'kind'])
    .merge(['sequence', 'hash', 'mac', 'updated_at'])
    .where('audit_checkpoints.sequence', '<', checkpoint.sequence);
}
