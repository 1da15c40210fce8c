import { MAX_AUDIT_BATCH_ENTRIES, type AuditBatch, type AuditBatchEntry } from '../context/caller.js';
import { MAX_CONTEXT_PAIRS } from '../crypto/encryption-context.js';
import { isAuditHash } from './audit-key.js';

/** The policy decision a request received; `null` when it never reached authorisation. */
export type AuditDecision = 'allow' | 'deny';



/**
 * What one request produces for the audit log, whatever its outcome: authentication failures, denials and bad
 * input included. It never holds a plaintext, data key, ciphertext body, token secret or context value: only
 * identifiers, names and the keys of the encryption context.
 */
export interface AuditEvent {
  readonly time: Date;
  readonly requestId: string;
  readonly replicaId: string;
  readonly principalId: string | null;
  /** `token`, `kubernetes` or `spiffe`; `null` when authentication failed. */
  readonly principalType: string | null;
  /** The API token's id from the principal's attributes, never its secret. */
  readonly tokenId: string | null;
  readonly sourceAddress: string | null;
  readonly method: string;
  /** The route pattern (`/v1/keys/:name/datakey`), not the URL; `null` when no route matched. */
  readonly route: string | null;
  readonly action: string | null;
  readonly keyName: string | null;
  readonly keyId: string | null;
  readonly keyVersion: number | null;
  /** The encryption context's keys, never its values; see {@link auditContextKeys}. */
  readonly contextKeys: readonly string[];
  readonly decision: AuditDecision | null;
  /** `admin`, `allowed`, `explicit-deny`, `no-matching-allow`, or why authentication failed. */
  readonly decisionReason: string | null;
  /** The policy and statement that decided, when one did. */
  readonly policy: string | null;
  readonly statement: number | null;
  /** `ok`, or the error code answered (`KH_ERR_FORBIDDEN`). */
  readonly outcome: string;
  /** The HTTP status answered. */
  readonly status: number;
  /** Rounded to the microsecond by {@link normalizeAuditEvent}. */
  readonly latencyMs: number;
  /** A batch request's summary; absent or `null` on every other request. */
  readonly batch?: AuditBatch | null | undefined;
}

/** An event as chained and stored: its position in its replica's chain and the chain hash that covers it. */
export interface AuditRecord extends AuditEvent {
  readonly batch: AuditBatch | null;
  /** Dense per replica: 1, 2, 3, … from the chain's start, or from the last purge cut. */
  readonly sequence: number;
  /** Lower-case hex HMAC-SHA256(auditKey, previous hash || canonical record). */
  readonly hash: string;
}

/**
 * The fields of a record in format v1 ({@link AUDIT_RECORD_FORMAT_V1}), in canonical order: every record without a
 * batch summary.
 */
export const AUDIT_RECORD_FIELDS_V1 = [
  'sequence',
  'time',
  'requestId',
  'replicaId',
  'principalId',
  'principalType',
  'tokenId',
  'sourceAddress',
  'method',
  'route',
  'action',
  'keyName',
  'keyId',
  'keyVersion',
  'contextKeys',
  'decision',
  'decisionReason',
  'policy',
  'statement',
  'outcome',
  'status',
  'latencyMs',
] as const satisfies ReadonlyArray<keyof AuditRecord>;

/**
 * The fields of a record in canonical order. The canonical encoding, the JSON-lines export and storage all take
 * their order from this list, never from an object's key order. Append-only: a new field means a new format tag.
 * `batch` came with format v2 ({@link AUDIT_RECORD_FORMAT_V2}).
 */
export const AUDIT_RECORD_FIELDS = [...AUDIT_RECORD_FIELDS_V1, 'batch'] as const satisfies ReadonlyArray<keyof AuditRecord>;

export type AuditRecordField = (typeof AUDIT_RECORD_FIELDS)[number];

// Compile-time proof that the list names every field of a record except the hash, which is computed over the rest.
type Unlisted = Exclude<keyof AuditRecord, AuditRecordField | 'hash'>;
const EVERY_FIELD_IS_LISTED: [Unlisted] extends [never] ? true : never = true;
void EVERY_FIELD_IS_LISTED;

/**
 * The first element of every canonical encoding, so one format can never be read as another. A record without a
 * batch summary is encoded in v1, the fields of {@link AUDIT_RECORD_FIELDS_V1}: byte for byte what the code before v2
 * wrote, so every stored v1 record still verifies and a request that is not a batch pays nothing for v2.
 */
export const AUDIT_RECORD_FORMAT_V1 = 'keyhold-audit/v1';
/** The format of a record with a batch summary: the v1 fields, then `batch`. */
export const AUDIT_RECORD_FORMAT_V2 = 'keyhold-audit/v2';

/** The longest string a record holds, in UTF-16 code units, truncation marker included. */
export const MAX_AUDIT_STRING_LENGTH = 512;
/** Ends a string that was cut to {@link MAX_AUDIT_STRING_LENGTH}. */
export const AUDIT_TRUNCATION_MARKER = '…[truncated]';
/** The most context keys a record lists; more are cut and counted in a last entry `…[+N more]`. */
export const MAX_AUDIT_CONTEXT_KEYS = MAX_CONTEXT_PAIRS;

/**
 * Is the UTF-16 code unit one a log line must not hold raw? C0 and C1 controls and DEL (ESC starts ANSI sequences,
 * U+009B is the one-byte CSI, U+0085 is a newline to some readers), U+2028/2029 (line breaks to JavaScript and
 * many viewers), invisible and bidirectional format characters ("Trojan Source", CVE-2021-42574), BOM and
 * non-characters. The set is fixed here rather than taken from Unicode property classes, which grow with the
 * Unicode version of the runtime: the canonical encoding of a stored record must never change under a new Node.
 */
function isUnsafeCodeUnit(unit: number): boolean {
  return (
    unit <= 0x1f ||
    (unit >= 0x7f && unit <= 0x9f) ||
    unit === 0xad ||
    unit === 0x61c ||
    unit === 0x180e ||
    (unit >= 0x200b && unit <= 0x200f) ||
    (unit >= 0x2028 && unit <= 0x202e) ||
    (unit >= 0x2060 && unit <= 0x206f) ||
    unit === 0xfeff ||
    (unit >= 0xfff9 && unit <= 0xfffb) ||
    unit === 0xfffe ||
    unit === 0xffff
  );
}

/** Everything {@link isUnsafeCodeUnit} refuses, plus every surrogate: the fast path must see only plain text. */
const NEEDS_SLOW_PATH =
  /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ufffe\uffff\ud800-\udfff]/;

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

function escapeCodeUnit(unit: number): string {
  return `\\u${unit.toString(16).padStart(4, '0')}`;
}

/**
 * Makes a string safe to store, hash and print: every unsafe code unit (see above) and every lone surrogate
 * becomes the six printable characters `\uXXXX`, and a result longer than `maxLength` code units is cut, on a
 * character boundary and never inside an escape, and ends with {@link AUDIT_TRUNCATION_MARKER}.
 *
 * ANSI sequences lose their ESC (or the one-unit CSI) and so are inert text: `\u001b[31m`. Quotes, backslashes and
 * `"}` fragments stay as they are; JSON encoding escapes them, so they cannot close a field or a record.
 *
 * The function is idempotent (its output contains nothing it would change), so a record stored in sanitised form
 * encodes to the same canonical bytes when it is read back. The price is that a name that literally contains the
 * text `\u001b` prints like one that contained ESC; which one it was is not worth a log line an attacker can shape.
 */
export function sanitizeAuditString(value: string, maxLength: number = MAX_AUDIT_STRING_LENGTH): string {
  if (typeof value !== 'string') throw new TypeError('sanitizeAuditString takes a string');
  if (!Number.isSafeInteger(maxLength) || maxLength < AUDIT_TRUNCATION_MARKER.length + 6) {
    throw new RangeError('maxLength must leave room for the truncation marker and one escape');
  }
  if (value.length <= maxLength && !NEEDS_SLOW_PATH.test(value)) return value;

  const budget = maxLength - AUDIT_TRUNCATION_MARKER.length;
  const pieces: string[] = [];
  let length = 0;
  let piecesWithinBudget = 0;
  for (let i = 0; i < value.length; ) {
    const unit = value.charCodeAt(i);
    let piece: string;
    if (isHighSurrogate(unit) && i + 1 < value.length && isLowSurrogate(value.charCodeAt(i + 1))) {
      piece = value.slice(i, i + 2);
      i += 2;
    } else {
      piece = isUnsafeCodeUnit(unit) || isHighSurrogate(unit) || isLowSurrogate(unit) ? escapeCodeUnit(unit) : value[i]!;
      i += 1;
    }
    if (length + piece.length > maxLength) {
      return pieces.slice(0, piecesWithinBudget).join('') + AUDIT_TRUNCATION_MARKER;
    }
    pieces.push(piece);
    length += piece.length;
    if (length <= budget) piecesWithinBudget = pieces.length;
  }
  return pieces.join('');
}

/** Whether a value can name a chain: a non-empty string that sanitising leaves as it is. */
export function isReplicaId(replicaId: unknown): replicaId is string {
  return typeof replicaId === 'string' && replicaId.length > 0 && sanitizeAuditString(replicaId) === replicaId;
}

/**
 * The context keys of a request as an event lists them: sorted by UTF-16 code units, so two requests with the
 * same context list the same keys in the same order, whatever the order of their JSON properties.
 */
export function auditContextKeys(context: Readonly<Record<string, string>> | undefined): string[] {
  return context === undefined ? [] : Object.keys(context).sort();
}

/** Rounds a latency to the microsecond. Idempotent: a rounded value read back from storage rounds to itself. */
export function roundLatencyMs(latencyMs: number): number {
  return Math.round(latencyMs * 1000) / 1000;
}

function requiredString(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`Audit field ${name} must be a string`);
  // The common case, plain text within bounds, without the argument checks of the public function.
  if (value.length <= MAX_AUDIT_STRING_LENGTH && !NEEDS_SLOW_PATH.test(value)) return value;
  return sanitizeAuditString(value);
}

function nullableString(name: string, value: unknown): string | null {
  return value === null ? null : requiredString(name, value);
}

function nullableCount(name: string, value: unknown): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`Audit field ${name} must be a non-negative integer or null`);
  }
  return value;
}

function contextKeysOf(value: unknown): readonly string[] {
  if (!Array.isArray(value)) throw new TypeError('Audit field contextKeys must be an array of strings');
  const keys = value.map((key: unknown) => requiredString('contextKeys', key));
  if (keys.length <= MAX_AUDIT_CONTEXT_KEYS) return Object.freeze(keys);
  // Keep the list within the bound including the count entry, so that normalising again changes nothing.
  const kept = keys.slice(0, MAX_AUDIT_CONTEXT_KEYS - 1);
  kept.push(`…[+${keys.length - kept.length} more]`);
  return Object.freeze(kept);
}

/** An event as {@link normalizeAuditEvent} returns it: the batch summary is there, `null` when there is none. */
export type NormalizedAuditEvent = Omit<AuditRecord, 'sequence' | 'hash'>;

function positiveCount(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`Audit field ${name} must be a positive integer`);
  }
  return value;
}

/**
 * A batch summary with its strings sanitised, its objects rebuilt with their keys in one order (storage may give
 * them back in another) and frozen. A summary over the bound is refused rather than cut: cutting would hide keys.
 */
function batchOf(value: unknown): AuditBatch | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'object') throw new TypeError('Audit field batch must be an object or null');
  const batch = value as AuditBatch;
  const entries: unknown = batch.entries;
  if (!Array.isArray(entries) || entries.length < 1 || entries.length > MAX_AUDIT_BATCH_ENTRIES) {
    throw new TypeError(`Audit field batch.entries must hold 1 to ${MAX_AUDIT_BATCH_ENTRIES} entries`);
  }
  const part = positiveCount('batch.part', batch.part);
  const parts = positiveCount('batch.parts', batch.parts);
  if (part > parts) throw new TypeError('Audit field batch.part must not exceed batch.parts');
  return Object.freeze({
    items: positiveCount('batch.items', batch.items),
    part,
    parts,
    entries: Object.freeze(
      entries.map((entry: unknown) => {
        if (typeof entry !== 'object' || entry === null) throw new TypeError('A batch entry must be an object');
        const e = entry as AuditBatchEntry;
        return Object.freeze({
          action: requiredString('batch.action', e.action),
          keyName: nullableString('batch.keyName', e.keyName),
          keyId: nullableString('batch.keyId', e.keyId),
          keyVersion: nullableCount('batch.keyVersion', e.keyVersion),
          outcome: requiredString('batch.outcome', e.outcome),
          count: positiveCount('batch.count', e.count),
        });
      }),
    ),
  });
}

/**
 * The event as it is chained and stored: every string sanitised ({@link sanitizeAuditString}), the context key
 * list bounded, the latency rounded, the types checked. Throws `TypeError` for a value of the wrong type, which is
 * a bug in the caller and must fail the request (the audit log is fail-closed). Idempotent, so normalising a
 * stored record gives back the same record.
 */
export function normalizeAuditEvent(event: AuditEvent): NormalizedAuditEvent {
  if (typeof event !== 'object' || event === null) throw new TypeError('An audit event must be an object');
  const { time, decision, status, latencyMs } = event;
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new TypeError('Audit field time must be a valid Date');
  if (decision !== null && decision !== 'allow' && decision !== 'deny') {
    throw new TypeError('Audit field decision must be "allow", "deny" or null');
  }
  if (typeof status !== 'number' || !Number.isSafeInteger(status) || status < 0 || status > 999) {
    throw new TypeError('Audit field status must be an HTTP status');
  }
  if (typeof latencyMs !== 'number' || !Number.isFinite(latencyMs) || latencyMs < 0) {
    throw new TypeError('Audit field latencyMs must be a finite, non-negative number');
  }
  return Object.freeze({
    time: new Date(time.getTime()),
    requestId: requiredString('requestId', event.requestId),
    replicaId: requiredString('replicaId', event.replicaId),
    principalId: nullableString('principalId', event.principalId),
    principalType: nullableString('principalType', event.principalType),
    tokenId: nullableString('tokenId', event.tokenId),
    sourceAddress: nullableString('sourceAddress', event.sourceAddress),
    method: requiredString('method', event.method),
    route: nullableString('route', event.route),
    action: nullableString('action', event.action),
    keyName: nullableString('keyName', event.keyName),
    keyId: nullableString('keyId', event.keyId),
    keyVersion: nullableCount('keyVersion', event.keyVersion),
    contextKeys: contextKeysOf(event.contextKeys),
    decision,
    decisionReason: nullableString('decisionReason', event.decisionReason),
    policy: nullableString('policy', event.policy),
    statement: nullableCount('statement', event.statement),
    outcome: requiredString('outcome', event.outcome),
    status,
    latencyMs: roundLatencyMs(latencyMs),
    batch: batchOf(event.batch),
  });
}

function assertSequence(sequence: unknown): asserts sequence is number {
  if (typeof sequence !== 'number' || !Number.isSafeInteger(sequence) || sequence < 1) {
    throw new TypeError('An audit sequence number must be a positive integer');
  }
}

type FieldValue = string | number | null | readonly string[] | AuditBatch;

/** The fields a normalised event is encoded with: those of v1 when it has no batch summary, else all of them. */
function fieldsOf(normalized: NormalizedAuditEvent): readonly AuditRecordField[] {
  return normalized.batch === null ? AUDIT_RECORD_FIELDS_V1 : AUDIT_RECORD_FIELDS;
}

/** The values of a normalised event in {@link fieldsOf} order, with the time as ISO 8601 text. */
function fieldValues(normalized: NormalizedAuditEvent, sequence: number): FieldValue[] {
  return fieldsOf(normalized).map((field): FieldValue => {
    if (field === 'sequence') return sequence;
    if (field === 'time') return normalized.time.toISOString();
    return normalized[field];
  });
}

/**
 * The canonical text: a JSON array, so the order is fixed by position, and JSON string escaping makes every string
 * one token, so no field value can end its own string or add a field. Sanitised strings hold no lone surrogate, so
 * its UTF-8 bytes are exact. The array is written out field by field rather than built from the list: this runs
 * once per request, and unit tests hold it to {@link AUDIT_RECORD_FIELDS}.
 */
export function canonicalAuditText(normalized: NormalizedAuditEvent, sequence: number): string {
  const n = normalized;
  const values: unknown[] = [
    AUDIT_RECORD_FORMAT_V1,
    sequence,
    n.time.toISOString(),
    n.requestId,
    n.replicaId,
    n.principalId,
    n.principalType,
    n.tokenId,
    n.sourceAddress,
    n.method,
    n.route,
    n.action,
    n.keyName,
    n.keyId,
    n.keyVersion,
    n.contextKeys,
    n.decision,
    n.decisionReason,
    n.policy,
    n.statement,
    n.outcome,
    n.status,
    n.latencyMs,
  ];
  if (n.batch !== null) {
    values[0] = AUDIT_RECORD_FORMAT_V2;
    values.push(n.batch);
  }
  return JSON.stringify(values);
}

/**
 * The canonical bytes of an event at `sequence`, which the chain hash covers: the UTF-8 JSON array
 * `["keyhold-audit/v1", sequence, time, requestId, …, latencyMs]` in {@link AUDIT_RECORD_FIELDS_V1} order, of the
 * normalised event ({@link normalizeAuditEvent}); for an event with a batch summary, `["keyhold-audit/v2", …,
 * latencyMs, batch]`, the summary's keys in a fixed order. Two events encode alike only if they normalise alike.
 */
export function canonicalAuditRecord(event: AuditEvent, sequence: number): Buffer {
  assertSequence(sequence);
  return Buffer.from(canonicalAuditText(normalizeAuditEvent(event), sequence), 'utf8');
}

function sameEntry(a: AuditBatchEntry, b: AuditBatchEntry): boolean {
  return (
    typeof b === 'object' &&
    b !== null &&
    Object.keys(b).length === Object.keys(a).length &&
    a.action === b.action &&
    a.keyName === b.keyName &&
    a.keyId === b.keyId &&
    a.keyVersion === b.keyVersion &&
    a.outcome === b.outcome &&
    a.count === b.count
  );
}

/**
 * Whether a stored summary is the normalised one, whatever the order of its keys (PostgreSQL's jsonb sorts them),
 * and holds nothing else: a property the hash does not cover must not ride along in a verified record.
 */
function sameBatch(normalized: AuditBatch | null, stored: unknown): boolean {
  if (normalized === null) return stored === null || stored === undefined;
  const b = stored as AuditBatch;
  return (
    typeof b === 'object' &&
    b !== null &&
    Object.keys(b).length === Object.keys(normalized).length &&
    normalized.items === b.items &&
    normalized.part === b.part &&
    normalized.parts === b.parts &&
    Array.isArray(b.entries) &&
    normalized.entries.length === b.entries.length &&
    normalized.entries.every((entry, i) => sameEntry(entry, b.entries[i]!))
  );
}

function sameValue(a: FieldValue | Date, b: FieldValue | Date): boolean {
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => item === b[i]);
  }
  return a === b;
}

/**
 * The canonical bytes of a record as it was read back, refusing (`TypeError`) one that is not already in
 * normalised form. The writer only ever stores normalised records, so a stored string with a raw control character
 * was put there by someone else, even when it would sanitise to the value that was hashed.
 */
export function strictCanonicalAuditRecord(record: AuditRecord): Buffer {
  if (typeof record !== 'object' || record === null) throw new TypeError('An audit record must be an object');
  assertSequence(record.sequence);
  const normalized = normalizeAuditEvent(record);
  if (!sameBatch(normalized.batch, record.batch)) throw new TypeError('Audit field batch is not in normalised form');
  for (const field of AUDIT_RECORD_FIELDS_V1) {
    if (field !== 'sequence' && !sameValue(normalized[field], record[field])) {
      throw new TypeError(`Audit field ${field} is not in normalised form`);
    }
  }
  return Buffer.from(canonicalAuditText(normalized, record.sequence), 'utf8');
}

/**
 * One line of the JSON-lines export, newline included: an object with the fields in {@link AUDIT_RECORD_FIELDS}
 * order, then `hash`, so the file can be verified offline with the audit key. A record without a batch summary (v1)
 * has no `batch` key, as before v2. Strings are sanitised again (a no-op for a chained record), and JSON escapes
 * quotes and backslashes, so a line is always exactly one record.
 */
export function toJsonLine(record: AuditRecord): string {
  assertSequence(record.sequence);
  if (!isAuditHash(record.hash)) {
    throw new TypeError('An audit record hash is 64 lower-case hex characters');
  }
  const normalized = normalizeAuditEvent(record);
  const values = fieldValues(normalized, record.sequence);
  const line: Record<string, FieldValue> = {};
  fieldsOf(normalized).forEach((field, i) => {
    line[field] = values[i]!;
  });
  line.hash = record.hash;
  return `${JSON.stringify(line)}\n`;
}

const LINE_KEYS_V1 = new Set<string>([...AUDIT_RECORD_FIELDS_V1, 'hash']);
const LINE_KEYS_V2 = new Set<string>([...AUDIT_RECORD_FIELDS, 'hash']);
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Reads one line written by {@link toJsonLine} back into a record, for verifying an exported file. Throws
 * (`SyntaxError`, `TypeError`) on anything else: a line with a missing, extra or mistyped field, or a time that is
 * not the exact ISO 8601 form the writer uses. Whether the record is genuine is for the chain verifier to say.
 */
export function parseJsonLine(line: string): AuditRecord {
  const text = line.endsWith('\n') ? line.slice(0, -1) : line;
  if (text.includes('\n')) throw new SyntaxError('An audit line holds exactly one record');
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new TypeError('An audit line is a JSON object');
  }
  const fields = parsed as Record<string, unknown>;
  const keys = Object.keys(fields);
  const expected = 'batch' in fields ? LINE_KEYS_V2 : LINE_KEYS_V1;
  if (keys.length !== expected.size || !keys.every((key) => expected.has(key))) {
    throw new TypeError(`An audit line has exactly the fields ${[...expected].join(', ')}`);
  }
  if (fields.batch === null) throw new TypeError('An audit line without a batch summary has no batch field');
  const { time, hash, sequence } = fields;
  const date = typeof time === 'string' && ISO_TIME.test(time) ? new Date(time) : undefined;
  // The round trip refuses dates that Date would roll over (2026-02-30 is read as 2026-03-02).
  if (date === undefined || Number.isNaN(date.getTime()) || date.toISOString() !== time) {
    throw new TypeError('Audit field time must be an ISO 8601 UTC time with milliseconds');
  }
  if (!isAuditHash(hash)) {
    throw new TypeError('An audit record hash is 64 lower-case hex characters');
  }
  assertSequence(sequence);
  const event = normalizeAuditEvent({ ...(fields as unknown as AuditEvent), time: date });
  // Keep the strings as they were on the line: the verifier must see a hand-made unsanitised value, not a cleaned one.
  return Object.freeze({ ...(fields as unknown as AuditRecord), time: event.time, sequence, hash, batch: fields.batch ?? null } as AuditRecord);
}
