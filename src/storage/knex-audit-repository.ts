import type { Knex } from 'knex';
import { isPostgres, type Database } from './database.js';
import { AUDIT_RECORD_FIELDS, type AuditRecord, type AuditRecordField } from '../audit/audit-record.js';
import type { AuditCheckpoint, ChainedAuditRecord, CheckpointKind } from '../audit/chain.js';
import type { HeadStatement } from '../audit/head-statement.js';
import type { AuditQuery, AuditRepository } from '../audit/audit-repository.js';
import type { AuditBatch } from '../context/caller.js';
import { keyUsageOf, type KeyUsage, type KeyUsageIncrement, type KeyUsageQuery, type KeyUsageRepository } from '../audit/key-usage.js';

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
  /** The batch summary as JSON; null on every record of a request that was not a batch. */
  batch: string | null;
  hash: string;
}

interface RecordKeyRow {
  replica_id: string;
  sequence: number;
  key_name: string;
  time: number;
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
  // Absent from a v1 record's array, so SQL null; a summary is kept in jsonb's rendering, as contextKeys is.
  batch: (position) => `(r.fields -> ${position})::text`,
};

function readField(field: AuditRecordField, position: number): string {
  return POSTGRES_CONVERSIONS[field]?.(position) ?? `r.fields ->> ${position}`;
}

/** The rollup row's identity (see migrations/20261207000000_key_usage.ts). */
const KEY_USAGE_CONFLICT = 'key_id, hour, key_version, principal_id, action, replica_id';

/** How an increment is added to a rollup row that exists: count summed, first and last seen widened. */
function usageMerge(least: string, greatest: string): string {
  return (
    'count = key_usage.count + excluded.count, first_seen = ' +
    `${least}(key_usage.first_seen, excluded.first_seen), last_seen = ${greatest}(key_usage.last_seen, excluded.last_seen)`
  );
}

interface KeyUsageRow {
  key_id: string;
  hour: number;
  key_version: number;
  principal_id: string;
  action: string;
  replica_id: string;
  count: number;
  first_seen: number;
  last_seen: number;
}

function toUsageRow(increment: KeyUsageIncrement): KeyUsageRow {
  return {
    key_id: increment.keyId,
    hour: increment.hour,
    key_version: increment.keyVersion,
    principal_id: increment.principal,
    action: increment.action,
    replica_id: increment.replicaId,
    count: increment.count,
    first_seen: increment.firstSeen,
    last_seen: increment.lastSeen,
  };
}

/**
 * A group commit on PostgreSQL, in one statement: move the head checkpoint if it is where this batch expects it
 * (waiting for the row lock of a commit still running), and insert the records only if it moved. The records come
 * as one JSON parameter, `[[canonical, hash], …]`: each record's canonical text (`canonicalAuditText`, which its hash
 * covers and which the writer has already built) is a JSON array of its fields in `AUDIT_RECORD_FIELDS` order, read
 * here by position, so a record is serialised once. The text is the same for every batch size, so it is prepared
 * once per connection, and the driver binds seven values.
 */
const POSTGRES_APPEND_HEAD =
  'with advanced as (update audit_checkpoints set sequence = $1, hash = $2, mac = $3, updated_at = $4 ' +
  "where replica_id = $5 and kind = 'head' and sequence = $6 returning 1), " +
  `appended as (insert into audit_records (${AUDIT_RECORD_FIELDS.map(columnOf).join(', ')}, hash) ` +
  // Position 0 of a canonical array is the format tag; the fields follow it.
  `select ${AUDIT_RECORD_FIELDS.map((field, i) => readField(field, i + 1)).join(', ')}, r.hash ` +
  'from (select e -> 0 as fields, e ->> 1 as hash from jsonb_array_elements($7::jsonb) e) r ' +
  'where exists (select 1 from advanced) returning 1), ' +
  // The fleet inventory's rollup, in the same statement: $8 is `keyUsageOf` the batch, one row per conflict target,
  // sorted. Rows are per chain, and a chain's commits wait for its head's row lock (taken by `advanced`, which this
  // waits for) before they reach these rows: commits never wait on each other here, nor deadlock.
  'used as (insert into key_usage (key_id, hour, key_version, principal_id, action, replica_id, count, first_seen, last_seen) ' +
  'select u.key_id, u.hour, u.key_version, u.principal_id, u.action, u.replica_id, u.count, u.first_seen, u.last_seen ' +
  'from jsonb_to_recordset($8::jsonb) as u(key_id text, hour bigint, key_version bigint, principal_id text, action text, ' +
  'replica_id text, count bigint, first_seen bigint, last_seen bigint) where exists (select 1 from advanced) ' +
  `on conflict (${KEY_USAGE_CONFLICT}) do update set ${usageMerge('least', 'greatest')} returning 1) `;

const POSTGRES_APPEND = `${POSTGRES_APPEND_HEAD}select count(*) as appended from appended`;

function positionOf(field: AuditRecordField): number {
  return AUDIT_RECORD_FIELDS.indexOf(field) + 1;
}

/**
 * The same, for a commit that holds a batch record: it also indexes, in the same statement, each distinct key name
 * of a record's batch summary other than the record's own key name (see `indexedKeysOf`). A commit without one
 * runs {@link POSTGRES_APPEND}, so a request that is not a batch pays nothing for the index.
 */
const POSTGRES_APPEND_WITH_KEYS =
  `${POSTGRES_APPEND_HEAD}, indexed as (insert into audit_record_keys (replica_id, sequence, key_name, time) ` +
  `select distinct ${readField('replicaId', positionOf('replicaId'))}, ${readField('sequence', positionOf('sequence'))}, ` +
  `entry ->> 'keyName', ${readField('time', positionOf('time'))} ` +
  'from (select e -> 0 as fields from jsonb_array_elements($7::jsonb) e) r ' +
  `cross join lateral jsonb_array_elements(r.fields -> ${positionOf('batch')} -> 'entries') entry ` +
  `where exists (select 1 from advanced) and entry ->> 'keyName' is not null ` +
  `and entry ->> 'keyName' is distinct from r.fields ->> ${positionOf('keyName')} returning 1) ` +
  'select count(*) as appended from appended';

/**
 * The statement's name on each connection: prepared once there, then only bound and executed, so PostgreSQL does
 * not parse and plan it again for every group commit (a fifth of its CPU per audited request, measured).
 */
const POSTGRES_APPEND_STATEMENT = 'keyhold_audit_append';
const POSTGRES_APPEND_WITH_KEYS_STATEMENT = 'keyhold_audit_append_with_keys';

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
    batch: record.batch === null ? null : JSON.stringify(record.batch),
    hash: record.hash,
  };
}

/**
 * The keys a record names besides its own `keyName`: each distinct key name of its batch summary. These are the rows
 * the key filter finds it by, next to the `key_name` column.
 */
function indexedKeysOf(record: AuditRecord): RecordKeyRow[] {
  if (record.batch === null) return [];
  const names = new Set<string>();
  for (const entry of record.batch.entries) {
    if (entry.keyName !== null && entry.keyName !== record.keyName) names.add(entry.keyName);
  }
  return [...names].map((keyName) => ({
    replica_id: record.replicaId,
    sequence: record.sequence,
    key_name: keyName,
    time: record.time.getTime(),
  }));
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
    batch: row.batch === null ? null : (JSON.parse(row.batch) as AuditBatch),
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

/**
 * Key index rows per insert on SQLite: a commit of batch records can index up to 64 keys for each of its records,
 * and knex writes a multi-row insert there as one compound SELECT, of at most 500 terms.
 */
const SQLITE_KEY_ROWS_PER_INSERT = 500;

/** Audit records, their key index, checkpoints and head statements. No other module writes SQL for them. */
export class KnexAuditRepository implements AuditRepository, KeyUsageRepository {
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
      const indexes = links.some(({ record }) => record.batch !== null);
      const connection = (await this.db.client.acquireConnection()) as PgConnection;
      try {
        const result = await connection.query({
          name: indexes ? POSTGRES_APPEND_WITH_KEYS_STATEMENT : POSTGRES_APPEND_STATEMENT,
          text: indexes ? POSTGRES_APPEND_WITH_KEYS : POSTGRES_APPEND,
          values: [
            head.sequence,
            head.hash,
            head.mac,
            now.getTime(),
            head.replicaId,
            previousSequence,
            batch,
            JSON.stringify(keyUsageOf(links.map(({ record }) => record)).map(toUsageRow)),
          ],
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
      const keys = links.flatMap(({ record }) => indexedKeysOf(record));
      for (let from = 0; from < keys.length; from += SQLITE_KEY_ROWS_PER_INSERT) {
        await trx('audit_record_keys').insert(keys.slice(from, from + SQLITE_KEY_ROWS_PER_INSERT));
      }
      const usage = keyUsageOf(links.map(({ record }) => record)).map(toUsageRow);
      for (let from = 0; from < usage.length; from += SQLITE_KEY_ROWS_PER_INSERT) {
        await trx.raw(
          `insert into key_usage (${KEY_USAGE_CONFLICT}, count, first_seen, last_seen) values ` +
            usage.slice(from, from + SQLITE_KEY_ROWS_PER_INSERT).map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ') +
            ` on conflict (${KEY_USAGE_CONFLICT}) do update set ${usageMerge('min', 'max')}`,
          usage
            .slice(from, from + SQLITE_KEY_ROWS_PER_INSERT)
            .flatMap((row) => [row.key_id, row.hour, row.key_version, row.principal_id, row.action, row.replica_id, row.count, row.first_seen, row.last_seen]),
        );
      }
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

  /**
   * Newest first, keyset-paginated on (time, replica, sequence); each filter has an index ending in time. A record
   * matches the key filter by its `key_name` or by a key its batch summary names (`audit_record_keys`): the two are
   * read each from its own index, at most a page from each, and merged.
   */
  async query(query: AuditQuery): Promise<AuditRecord[]> {
    const order = [
      { column: 'time', order: 'desc' },
      { column: 'replica_id', order: 'desc' },
      { column: 'sequence', order: 'desc' },
    ] as const;
    if (query.key === undefined) {
      const builder = this.db<AuditRow>('audit_records as r');
      filterRecords(builder, query, 'r');
      return ((await builder.orderBy([...order]).limit(query.limit)) as AuditRow[]).map(toRecord);
    }
    const byColumn = this.db('audit_records as r').select('r.*').where('r.key_name', query.key);
    filterRecords(byColumn, query, 'r');
    byColumn.orderBy(order.map(({ column, order: direction }) => ({ column: `r.${column}`, order: direction }))).limit(query.limit);
    const bySummary = this.db('audit_record_keys as k')
      .join('audit_records as r', (on) => on.on('r.replica_id', 'k.replica_id').andOn('r.sequence', 'k.sequence'))
      .select('r.*')
      .where('k.key_name', query.key);
    // The position filters read the index's own copy of the time, so its range and order serve the page.
    filterRecords(bySummary, query, 'k', 'r');
    bySummary.orderBy(order.map(({ column, order: direction }) => ({ column: `k.${column}`, order: direction }))).limit(query.limit);
    // Each part is a subquery of its own: SQLite allows no ORDER BY or LIMIT on the members of a UNION.
    const merged = this.db
      .select('*')
      .from(byColumn.as('by_column'))
      .unionAll((union) => union.select('*').from(bySummary.as('by_summary')));
    const rows = (await this.db
      .select('*')
      .from(merged.as('matched'))
      .orderBy([...order])
      .limit(query.limit)) as AuditRow[];
    return rows.map(toRecord);
  }

  /**
   * The fleet inventory, from the rollup alone: the key's rows of the window's hours (a range of the primary key),
   * summed over hours and chains.
   */
  async keyUsage(query: KeyUsageQuery): Promise<KeyUsage[]> {
    const builder = this.db('key_usage')
      .select('principal_id', 'key_version', 'action')
      .sum({ count: 'count' })
      .min({ first_seen: 'first_seen' })
      .max({ last_seen: 'last_seen' })
      .where('key_id', query.keyId)
      .andWhere('hour', '>=', query.since.getTime())
      .andWhere('hour', '<', query.until.getTime())
      .groupBy('principal_id', 'key_version', 'action')
      .orderByRaw('max(last_seen) desc, principal_id, key_version, action');
    if (query.version !== undefined) builder.andWhere('key_version', query.version);
    const rows = (await builder) as {
      principal_id: string;
      key_version: number | string;
      action: string;
      count: number | string;
      first_seen: number | string;
      last_seen: number | string;
    }[];
    return rows.map((row) => ({
      principal: row.principal_id,
      keyVersion: Number(row.key_version),
      action: row.action,
      count: Number(row.count),
      firstSeen: new Date(Number(row.first_seen)),
      lastSeen: new Date(Number(row.last_seen)),
    }));
  }

  /**
   * Deletes a chain's records up to and including `cut.sequence`, recording the cut as the chain's purge checkpoint
   * in the same transaction, so verification resumes exactly after what was deleted.
   */
  async purge(cut: AuditCheckpoint, now: Date): Promise<number> {
    return this.db.transaction(async (trx) => {
      await upsertCheckpoint(trx, cut, now);
      await trx('audit_record_keys').where({ replica_id: cut.replicaId }).andWhere('sequence', '<=', cut.sequence).delete();
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

/**
 * The query's filters other than the key, on the records aliased `record`, and its time range and cursor on the
 * (time, replica_id, sequence) columns of `position` (the records themselves, or the key index's copy of them).
 */
function filterRecords(builder: Knex.QueryBuilder, query: AuditQuery, position: string, record: string = position): void {
  if (query.principal !== undefined) builder.where(`${record}.principal_id`, query.principal);
  if (query.action !== undefined) builder.where(`${record}.action`, query.action);
  if (query.outcome !== undefined) builder.where(`${record}.outcome`, query.outcome);
  const time = `${position}.time`;
  if (query.since !== undefined) builder.where(time, '>=', query.since.getTime());
  if (query.until !== undefined) builder.where(time, '<', query.until.getTime());
  const before = query.before;
  if (before === undefined) return;
  const replicaId = `${position}.replica_id`;
  const sequence = `${position}.sequence`;
  // The plain bound lets the index range stop at the cursor; the OR below only breaks ties within its instant.
  builder.andWhere(time, '<=', before.time);
  builder.andWhere((where) =>
    where
      .where(time, '<', before.time)
      .orWhere((same) =>
        same
          .where(time, '=', before.time)
          .andWhere((tie) =>
            tie
              .where(replicaId, '<', before.replicaId)
              .orWhere((last) => last.where(replicaId, '=', before.replicaId).andWhere(sequence, '<', before.sequence)),
          ),
      ),
  );
}
