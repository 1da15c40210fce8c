import { auditHmac, auditMacEquals, isAuditHash, type AuditKeyMaterial } from './audit-key.js';
import { isReplicaId } from './audit-record.js';

/** Tags a head statement's MAC and its JSON line, so it can never be read as a record, a checkpoint or a link. */
export const HEAD_STATEMENT_FORMAT = 'keyhold-audit-head/v1';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** What a writer says about its chain at one moment: where its committed head was, and whether it was sealed. */
export interface HeadStatementFields {
  readonly replicaId: string;
  /** The last committed record's sequence (0 before the first). */
  readonly sequence: number;
  /** That record's hash (the genesis hash at 0). */
  readonly hash: string;
  readonly time: Date;
  /** True only in the statement made after the seal record was committed. */
  readonly sealed: boolean;
}

/**
 * A MAC'd head statement. The writer makes one at start, at least every minute and at shutdown, and sends it to the
 * database (its liveness heartbeat), to `KEYHOLD_AUDIT_FILE` and to the log. A copy kept outside the database is a
 * witness: the database's chain must reach the statement's sequence with the same hash, so putting back an older
 * head checkpoint no longer hides a cut tail.
 */
export interface HeadStatement extends HeadStatementFields {
  readonly mac: string;
}

function isStatementFields(fields: HeadStatementFields): boolean {
  return (
    typeof fields === 'object' &&
    fields !== null &&
    isReplicaId(fields.replicaId) &&
    Number.isSafeInteger(fields.sequence) &&
    fields.sequence >= 0 &&
    isAuditHash(fields.hash) &&
    fields.time instanceof Date &&
    !Number.isNaN(fields.time.getTime()) &&
    typeof fields.sealed === 'boolean'
  );
}

function statementMac(auditKey: AuditKeyMaterial, fields: HeadStatementFields): Buffer {
  const { replicaId, sequence, hash, time, sealed } = fields;
  return auditHmac(auditKey, [JSON.stringify([HEAD_STATEMENT_FORMAT, replicaId, sequence, hash, time.toISOString(), sealed])]);
}

/**
 * A head statement with its MAC: hex HMAC(auditKey, `["keyhold-audit-head/v1", replicaId, sequence, hash, time,
 * sealed]`). The time is inside the MAC, so an old statement cannot be passed off as a fresh heartbeat.
 */
export function createHeadStatement(auditKey: AuditKeyMaterial, fields: HeadStatementFields): HeadStatement {
  if (!isStatementFields(fields)) {
    throw new RangeError('A head statement has a replica id, a non-negative sequence, a hex hash, a valid time and a sealed flag');
  }
  const { replicaId, sequence, hash, sealed } = fields;
  const time = new Date(fields.time.getTime());
  return Object.freeze({ replicaId, sequence, hash, time, sealed, mac: statementMac(auditKey, fields).toString('hex') });
}

/** Whether a statement is well formed and its MAC is right; a wrong audit key (not 32 bytes) still throws. */
export function verifyHeadStatement(auditKey: AuditKeyMaterial, statement: HeadStatement): boolean {
  return isStatementFields(statement) && auditMacEquals(statementMac(auditKey, statement), statement.mac);
}

/** The statement as the log and the JSON-lines file carry it: plain JSON, the time as ISO 8601. */
export function headStatementJson(statement: HeadStatement): Record<string, string | number | boolean> {
  return {
    headStatement: HEAD_STATEMENT_FORMAT,
    replicaId: statement.replicaId,
    sequence: statement.sequence,
    hash: statement.hash,
    time: statement.time.toISOString(),
    sealed: statement.sealed,
    mac: statement.mac,
  };
}

/** One line of the JSON-lines file, newline included. Its `headStatement` field tells it apart from a record. */
export function headStatementLine(statement: HeadStatement): string {
  return `${JSON.stringify(headStatementJson(statement))}\n`;
}

const STATEMENT_KEYS = ['headStatement', 'replicaId', 'sequence', 'hash', 'time', 'sealed', 'mac'];

/** Whether a parsed line of the JSON-lines file is a head statement rather than a record. */
export function isHeadStatementJson(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && 'headStatement' in value;
}

/**
 * Reads a statement written by {@link headStatementJson} back. Throws `TypeError` on anything else: a missing,
 * extra or mistyped field, another format tag, a time not in the writer's exact form. Whether it is genuine is for
 * {@link verifyHeadStatement} to say.
 */
export function parseHeadStatement(value: unknown): HeadStatement {
  if (!isHeadStatementJson(value)) throw new TypeError('A head statement is a JSON object with a headStatement field');
  const fields = value as Record<string, unknown>;
  const keys = Object.keys(fields);
  if (keys.length !== STATEMENT_KEYS.length || !STATEMENT_KEYS.every((key) => keys.includes(key))) {
    throw new TypeError(`A head statement has exactly the fields ${STATEMENT_KEYS.join(', ')}`);
  }
  if (fields.headStatement !== HEAD_STATEMENT_FORMAT) throw new TypeError(`A head statement is ${HEAD_STATEMENT_FORMAT}`);
  const { replicaId, sequence, hash, time, sealed, mac } = fields;
  const date = typeof time === 'string' && ISO_TIME.test(time) ? new Date(time) : undefined;
  if (date === undefined || Number.isNaN(date.getTime()) || date.toISOString() !== time) {
    throw new TypeError('A head statement time is ISO 8601 UTC with milliseconds');
  }
  const statement = { replicaId, sequence, hash, time: date, sealed, mac } as HeadStatement;
  if (!isStatementFields(statement) || !isAuditHash(mac)) {
    throw new TypeError('A head statement has a replica id, a non-negative sequence, a hex hash, a sealed flag and a hex MAC');
  }
  return Object.freeze(statement);
}

/** Whether `a` says more than `b` about the same chain: a later head, or the same head later (or sealed). */
export function isLaterStatement(a: HeadStatement, b: HeadStatement): boolean {
  if (a.sequence !== b.sequence) return a.sequence > b.sequence;
  if (a.sealed !== b.sealed) return a.sealed;
  return a.time.getTime() > b.time.getTime();
}
