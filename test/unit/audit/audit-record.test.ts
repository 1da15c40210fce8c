import { describe, expect, it } from 'vitest';
import { AUDIT_RECORD_FIELDS, AUDIT_RECORD_FIELDS_V1, AUDIT_RECORD_FORMAT_V1, AUDIT_RECORD_FORMAT_V2, AUDIT_TRUNCATION_MARKER, MAX_AUDIT_CONTEXT_KEYS, MAX_AUDIT_STRING_LENGTH, auditContextKeys, canonicalAuditRecord, normalizeAuditEvent, parseJsonLine, roundLatencyMs, sanitizeAuditString, strictCanonicalAuditRecord, toJsonLine, type AuditEvent, type AuditRecord } from '../../../src/audit/audit-record.js';
import { genesisHead, linkAuditEvent } from '../../../src/audit/chain.js';
import { AUDIT_KEY, REPLICA, auditBatch, auditEvent, batchEvent, edited } from './audit-fixtures.js';
import { MAX_AUDIT_BATCH_ENTRIES, type AuditBatch } from '../../../src/context/caller.js';

const GOLDEN_CANONICAL =
  '["keyhold-audit/v1",1,"2026-11-28T17:23:47.123Z","req-0001","replica-a","k8s:payments:api","kubernetes",null,' +
  '"10.0.0.7","POST","/v1/keys/:name/datakey","datakey","payments","0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",3,' +
  '["kh.namespace","tenant"],"allow","allowed","payments-api",0,"ok",200,1.235]';

/** Characters a printed log line must never contain raw: C0, DEL, C1, line and paragraph separators. */
const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function chained(event: AuditEvent): AuditRecord {
  return linkAuditEvent(AUDIT_KEY, event, genesisHead(AUDIT_KEY, REPLICA)).record;
}

/** Hostile values for a free-text field such as a key name or a request id taken from a header. */
const FORGERIES: ReadonlyArray<readonly [string, string]> = [
  ['a newline followed by a second record', 'k\n{"sequence":2,"outcome":"ok","hash":"00"}'],
  ['a carriage return', 'k\r{"outcome":"ok"}'],
  ['an ANSI colour sequence', '\u001b[31mred\u001b[0m'],
  ['an ANSI cursor-up and erase-line', 'k\u001b[1A\u001b[2K'],
  ['a one-unit C1 CSI', 'k\u009b31m'],
  ['a NEL', 'k\u0085next'],
  ['a JSON fragment closing the field', 'k"},{"outcome":"ok"'],
  ['a JSON fragment closing the record', 'k"}\n{"outcome":"ok","status":200}'],
  ['escaped JSON newlines', 'k\\n{\\"outcome\\":\\"ok\\"}'],
  ['a line separator', 'k\u2028{"outcome":"ok"}'],
  ['a paragraph separator', 'k\u2029x'],
  ['a lone high surrogate', 'k\uD800x'],
  ['a lone low surrogate', 'k\uDC00x'],
  ['a NUL byte', 'k\u0000x'],
  ['a DEL', 'k\u007fx'],
  ['bidirectional overrides', 'k\u202Eevil\u202C'],
  ['a zero-width space', 'pay\u200Bments'],
  ['a very long string of newlines', '\n'.repeat(100_000)],
];

describe('canonicalAuditRecord', () => {
  it('encodes a fixed event to the golden JSON array', () => {
    expect(canonicalAuditRecord(auditEvent(), 1).toString('utf8')).toBe(GOLDEN_CANONICAL);
  });

  it('starts with the format tag v1, then the fields in AUDIT_RECORD_FIELDS_V1 order, for an event without a batch', () => {
    const values = JSON.parse(canonicalAuditRecord(auditEvent(), 7).toString('utf8')) as unknown[];
    expect(values[0]).toBe(AUDIT_RECORD_FORMAT_V1);
    const event = normalizeAuditEvent(auditEvent());
    AUDIT_RECORD_FIELDS_V1.forEach((field, i) => {
      const expected = field === 'sequence' ? 7 : field === 'time' ? event.time.toISOString() : event[field];
      expect(values[i + 1]).toEqual(expected);
    });
    expect(values).toHaveLength(AUDIT_RECORD_FIELDS_V1.length + 1);
  });

  it('puts each field at its own position, for an event whose every field differs from the others', () => {
    const event: AuditEvent = {
      time: new Date('2026-11-28T17:23:47.123Z'),
      requestId: 'f-requestId',
      replicaId: 'f-replicaId',
      principalId: 'f-principalId',
      principalType: 'f-principalType',
      tokenId: 'f-tokenId',
      sourceAddress: 'f-sourceAddress',
      method: 'f-method',
      route: 'f-route',
      action: 'f-action',
      keyName: 'f-keyName',
      keyId: 'f-keyId',
      keyVersion: 11,
      contextKeys: ['f-contextKeys'],
      decision: 'deny',
      decisionReason: 'f-decisionReason',
      policy: 'f-policy',
      statement: 12,
      outcome: 'f-outcome',
      status: 403,
      latencyMs: 1.5,
    };
    const values = JSON.parse(canonicalAuditRecord(event, 7).toString('utf8')) as unknown[];
    const expected = AUDIT_RECORD_FIELDS_V1.map((field) =>
      field === 'sequence' ? 7 : field === 'time' ? event.time.toISOString() : event[field],
    );
    expect(values).toEqual([AUDIT_RECORD_FORMAT_V1, ...expected]);
  });

  it('lists the fields in one fixed order, v2 appending batch to those of v1', () => {
    expect(AUDIT_RECORD_FIELDS).toEqual([...AUDIT_RECORD_FIELDS_V1, 'batch']);
    expect(AUDIT_RECORD_FIELDS_V1).toEqual([
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
    ]);
  });

  it('does not depend on the key order of the event object', () => {
    const event = auditEvent();
    const reversed = Object.fromEntries(Object.entries(event).reverse()) as unknown as AuditEvent;
    expect(canonicalAuditRecord(reversed, 1)).toEqual(canonicalAuditRecord(event, 1));
  });

  it('ignores properties that are not audit fields', () => {
    const withExtra = { ...auditEvent(), plaintext: 'secret', token: 'kh_secret' } as AuditEvent;
    expect(canonicalAuditRecord(withExtra, 1)).toEqual(canonicalAuditRecord(auditEvent(), 1));
  });

  it('differs when any one field differs', () => {
    const base = canonicalAuditRecord(auditEvent(), 1).toString('utf8');
    const changes: Array<Partial<AuditEvent>> = [
      { time: new Date('2026-11-28T17:23:47.124Z') },
      { requestId: 'req-0002' },
      { replicaId: 'replica-b' },
      { principalId: null },
      { principalType: 'spiffe' },
      { tokenId: 'tok-1' },
      { sourceAddress: null },
      { method: 'GET' },
      { route: null },
      { action: 'encrypt' },
      { keyName: 'payment' },
      { keyId: null },
      { keyVersion: 4 },
      { contextKeys: ['kh.namespace'] },
      { decision: 'deny' },
      { decisionReason: 'explicit-deny' },
      { policy: null },
      { statement: 1 },
      { outcome: 'KH_ERR_FORBIDDEN' },
      { status: 403 },
      { latencyMs: 1.236 },
    ];
    expect(changes).toHaveLength(AUDIT_RECORD_FIELDS_V1.length - 1);
    for (const change of changes) {
      expect(canonicalAuditRecord(auditEvent(change), 1).toString('utf8'), JSON.stringify(change)).not.toBe(base);
    }
    expect(canonicalAuditRecord(auditEvent(), 2).toString('utf8')).not.toBe(base);
  });

  it('tells null from the string "null" and from the empty string', () => {
    const encodings = [null, 'null', ''].map((keyName) => canonicalAuditRecord(auditEvent({ keyName }), 1).toString());
    expect(new Set(encodings).size).toBe(3);
  });

  it('keeps a JSON fragment in a name inside its own string, so no second field appears', () => {
    const keyName = 'k","outcome":"ok';
    const values = JSON.parse(canonicalAuditRecord(auditEvent({ keyName, outcome: 'KH_ERR_FORBIDDEN' }), 1).toString());
    expect(values).toHaveLength(AUDIT_RECORD_FIELDS_V1.length + 1);
    expect(values[1 + AUDIT_RECORD_FIELDS_V1.indexOf('keyName')]).toBe(keyName);
    expect(values[1 + AUDIT_RECORD_FIELDS_V1.indexOf('outcome')]).toBe('KH_ERR_FORBIDDEN');
  });

  it('encodes a raw event and its normalised form to the same bytes', () => {
    const raw = auditEvent({ keyName: 'k\n\u001b[31m', requestId: 'x'.repeat(2000), latencyMs: 0.00049 });
    expect(canonicalAuditRecord(normalizeAuditEvent(raw), 3)).toEqual(canonicalAuditRecord(raw, 3));
  });

  it.each([0, -1, 1.5, Number.NaN, 2 ** 53])('refuses the sequence number %s', (sequence) => {
    expect(() => canonicalAuditRecord(auditEvent(), sequence)).toThrow(TypeError);
  });

  it.each<[string, Partial<Record<keyof AuditEvent, unknown>>]>([
    ['an invalid time', { time: new Date(Number.NaN) }],
    ['a time given as text', { time: '2026-11-28T17:23:47.123Z' }],
    ['an undefined required string', { requestId: undefined }],
    ['an undefined nullable string', { keyName: undefined }],
    ['a number where a string belongs', { keyId: 42 }],
    ['a key version given as text (as a bigint column may come back)', { keyVersion: '3' }],
    ['a fractional statement index', { statement: 1.5 }],
    ['an unknown decision', { decision: 'maybe' }],
    ['a negative latency', { latencyMs: -1 }],
    ['an infinite latency', { latencyMs: Number.POSITIVE_INFINITY }],
    ['a status that is not an HTTP status', { status: 1000 }],
    ['context keys that are not an array', { contextKeys: 'tenant' }],
    ['a context key that is not a string', { contextKeys: ['tenant', 7] }],
  ])('refuses an event with %s', (_name, change) => {
    expect(() => canonicalAuditRecord({ ...auditEvent(), ...change } as AuditEvent, 1)).toThrow(TypeError);
  });
});

const GOLDEN_BATCH_CANONICAL =
  '["keyhold-audit/v2",1,"2026-11-28T17:23:47.123Z","req-0001","replica-a","k8s:payments:api","kubernetes",null,' +
  '"10.0.0.7","POST","/v1/batch","batch",null,null,null,[],"deny","no-matching-allow",null,null,"ok",207,1.235,' +
  '{"items":5,"part":1,"parts":1,"entries":[' +
  '{"action":"decrypt","keyName":"payments","keyId":"0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0","keyVersion":2,"outcome":"ok","count":3},' +
  '{"action":"decrypt","keyName":"hr-salaries","keyId":null,"keyVersion":null,"outcome":"KH_ERR_FORBIDDEN","count":1},' +
  '{"action":"decrypt","keyName":null,"keyId":null,"keyVersion":null,"outcome":"KH_ERR_DECRYPTION_FAILED","count":1}]}]';

describe('canonicalAuditRecord: format v2, a batch summary', () => {
  it('encodes a batch event to the golden v2 array: the v1 fields, then the summary', () => {
    expect(canonicalAuditRecord(batchEvent(), 1).toString('utf8')).toBe(GOLDEN_BATCH_CANONICAL);
    const values = JSON.parse(GOLDEN_BATCH_CANONICAL) as unknown[];
    expect(values[0]).toBe(AUDIT_RECORD_FORMAT_V2);
    expect(values).toHaveLength(AUDIT_RECORD_FIELDS.length + 1);
  });

  it('encodes an event whose batch is null or absent in v1, byte for byte as before v2', () => {
    const { batch: _absent, ...withoutBatch } = auditEvent();
    expect(canonicalAuditRecord(withoutBatch, 1).toString('utf8')).toBe(GOLDEN_CANONICAL);
    expect(canonicalAuditRecord(auditEvent({ batch: null }), 1).toString('utf8')).toBe(GOLDEN_CANONICAL);
  });

  it('does not depend on the key order of the summary or its entries (jsonb gives them back sorted)', () => {
    const batch = auditBatch();
    const shuffled = JSON.parse(JSON.stringify(batch, Object.keys(batch).reverse().concat(['action', 'keyName', 'keyId', 'keyVersion', 'outcome', 'count'].reverse())));
    expect(Object.keys(shuffled)).not.toEqual(Object.keys(batch));
    expect(canonicalAuditRecord(batchEvent({ batch: shuffled as typeof batch }), 1).toString('utf8')).toBe(GOLDEN_BATCH_CANONICAL);
  });

  it('differs when a count, a key, a version or an outcome of the summary differs', () => {
    const base = canonicalAuditRecord(batchEvent(), 1).toString('utf8');
    const entry = auditBatch().entries[0]!;
    for (const change of [{ count: 4 }, { keyName: 'payment' }, { keyVersion: 3 }, { outcome: 'KH_ERR_KEY_DISABLED' }]) {
      const batch = auditBatch({ entries: [{ ...entry, ...change }, ...auditBatch().entries.slice(1)] });
      expect(canonicalAuditRecord(batchEvent({ batch }), 1).toString('utf8'), JSON.stringify(change)).not.toBe(base);
    }
  });

  it('sanitises the strings of the summary', () => {
    const entry = { ...auditBatch().entries[0]!, keyName: 'k\n\u001b[31m' };
    const { batch } = normalizeAuditEvent(batchEvent({ batch: auditBatch({ entries: [entry] }) }));
    expect(batch?.entries[0]?.keyName).toBe('k\\u000a\\u001b[31m');
  });

  it(`refuses a summary of no entries or of more than ${MAX_AUDIT_BATCH_ENTRIES}, rather than cut one and hide keys`, () => {
    const entry = auditBatch().entries[0]!;
    const entries = Array.from({ length: MAX_AUDIT_BATCH_ENTRIES + 1 }, (_, i) => ({ ...entry, keyName: `k${i}` }));
    expect(() => normalizeAuditEvent(batchEvent({ batch: auditBatch({ entries }) }))).toThrow(TypeError);
    expect(() => normalizeAuditEvent(batchEvent({ batch: auditBatch({ entries: entries.slice(0, MAX_AUDIT_BATCH_ENTRIES) }) }))).not.toThrow();
    expect(() => normalizeAuditEvent(batchEvent({ batch: auditBatch({ entries: [] }) }))).toThrow(TypeError);
  });

  it.each<[string, Partial<AuditBatch>]>([
    ['a part after the last', { part: 2, parts: 1 }],
    ['no items', { items: 0 }],
    ['an entry counted zero times', { entries: [{ ...auditBatch().entries[0]!, count: 0 }] }],
    ['an entry with a fractional version', { entries: [{ ...auditBatch().entries[0]!, keyVersion: 1.5 }] }],
  ])('refuses a summary with %s', (_name, change) => {
    expect(() => normalizeAuditEvent(batchEvent({ batch: auditBatch(change) }))).toThrow(TypeError);
  });
});

describe('sanitizeAuditString', () => {
  it('leaves plain printable text, quotes and backslashes included, unchanged', () => {
    const text = 'payments/eu-west-1 "prod" \\ {}[]:, ümlaut 鍵 🔑';
    expect(sanitizeAuditString(text)).toBe(text);
  });

  it('escapes ESC, so an ANSI sequence is inert text', () => {
    expect(sanitizeAuditString('\u001b[31mred\u001b[0m')).toBe('\\u001b[31mred\\u001b[0m');
  });

  it.each([
    ['\n', '\\u000a'],
    ['\r', '\\u000d'],
    ['\t', '\\u0009'],
    ['\u0000', '\\u0000'],
    ['\u007f', '\\u007f'],
    ['\u0085', '\\u0085'],
    ['\u009b', '\\u009b'],
    ['\u2028', '\\u2028'],
    ['\u2029', '\\u2029'],
    ['\u202e', '\\u202e'],
    ['\u200b', '\\u200b'],
    ['\ufeff', '\\ufeff'],
    ['\ud800', '\\ud800'],
    ['\udfff', '\\udfff'],
  ])('escapes %j as %s', (raw, escaped) => {
    expect(sanitizeAuditString(`a${raw}b`)).toBe(`a${escaped}b`);
  });

  it('keeps a well-formed surrogate pair and escapes a reversed one', () => {
    expect(sanitizeAuditString('\ud83d\udd11')).toBe('\ud83d\udd11');
    expect(sanitizeAuditString('\udd11\ud83d')).toBe('\\udd11\\ud83d');
  });

  it(`cuts a long string to ${MAX_AUDIT_STRING_LENGTH} code units ending with the truncation marker`, () => {
    const result = sanitizeAuditString('x'.repeat(100_000));
    expect(result).toHaveLength(MAX_AUDIT_STRING_LENGTH);
    expect(result.endsWith(AUDIT_TRUNCATION_MARKER)).toBe(true);
  });

  it('keeps a string of exactly the maximum length whole', () => {
    const text = 'y'.repeat(MAX_AUDIT_STRING_LENGTH);
    expect(sanitizeAuditString(text)).toBe(text);
  });

  it('never cuts inside an escape', () => {
    for (let prefix = 0; prefix < 8; prefix += 1) {
      const result = sanitizeAuditString('a'.repeat(prefix) + '\n'.repeat(200));
      const body = result.slice(0, -AUDIT_TRUNCATION_MARKER.length);
      expect(body.slice(prefix)).toMatch(/^(\\u000a)*$/);
      expect(result.length).toBeLessThanOrEqual(MAX_AUDIT_STRING_LENGTH);
    }
  });

  it('never cuts a surrogate pair in half', () => {
    for (let prefix = 0; prefix < 4; prefix += 1) {
      const result = sanitizeAuditString('a'.repeat(prefix) + '🔑'.repeat(400));
      expect(result).not.toMatch(LONE_SURROGATE);
      expect(result.endsWith(AUDIT_TRUNCATION_MARKER)).toBe(true);
    }
  });

  it('is idempotent, so a stored value sanitises to itself', () => {
    for (const [, value] of FORGERIES) {
      const once = sanitizeAuditString(value);
      expect(sanitizeAuditString(once)).toBe(once);
    }
  });

  it.each(FORGERIES)('leaves no raw control character or lone surrogate in %s', (_name, value) => {
    const result = sanitizeAuditString(value);
    expect(result).not.toMatch(RAW_CONTROL);
    expect(result).not.toMatch(LONE_SURROGATE);
    expect(result.length).toBeLessThanOrEqual(MAX_AUDIT_STRING_LENGTH);
  });

  it('refuses something that is not a string', () => {
    expect(() => sanitizeAuditString(42 as unknown as string)).toThrow(TypeError);
  });
});

describe('normalizeAuditEvent', () => {
  it('rounds the latency to the microsecond', () => {
    expect(normalizeAuditEvent(auditEvent({ latencyMs: 12.3456789 })).latencyMs).toBe(12.346);
  });

  it('is idempotent', () => {
    const raw = auditEvent({
      keyName: 'k\n',
      latencyMs: 0.1 + 0.2,
      contextKeys: Array.from({ length: 100 }, (_, i) => `key-${i}`),
    });
    const once = normalizeAuditEvent(raw);
    expect(normalizeAuditEvent(once)).toEqual(once);
  });

  it(`keeps at most ${MAX_AUDIT_CONTEXT_KEYS} context keys, the last one counting those left out`, () => {
    const keys = Array.from({ length: 100 }, (_, i) => `key-${String(i).padStart(3, '0')}`);
    const listed = normalizeAuditEvent(auditEvent({ contextKeys: keys })).contextKeys;
    expect(listed).toHaveLength(MAX_AUDIT_CONTEXT_KEYS);
    expect(listed.slice(0, -1)).toEqual(keys.slice(0, MAX_AUDIT_CONTEXT_KEYS - 1));
    expect(listed.at(-1)).toBe(`…[+${100 - MAX_AUDIT_CONTEXT_KEYS + 1} more]`);
  });

  it('returns a frozen copy and leaves the event alone', () => {
    const contextKeys = ['b\n'];
    const event = auditEvent({ contextKeys });
    const normalized = normalizeAuditEvent(event);
    expect(Object.isFrozen(normalized)).toBe(true);
    expect(Object.isFrozen(normalized.contextKeys)).toBe(true);
    expect(contextKeys).toEqual(['b\n']);
  });
});

describe('auditContextKeys', () => {
  it('lists the keys of a context in code-unit order, and never its values', () => {
    const keys = auditContextKeys({ tenant: 'acme', 'kh.namespace': 'payments', Zone: 'eu' });
    expect(keys).toEqual(['Zone', 'kh.namespace', 'tenant']);
    expect(keys.join()).not.toMatch(/acme|payments|eu$/);
  });

  it('lists nothing for no context', () => {
    expect(auditContextKeys(undefined)).toEqual([]);
  });
});

describe('roundLatencyMs', () => {
  it('gives back a rounded value unchanged, as storage returns it', () => {
    for (let i = 0; i < 2000; i += 1) {
      const rounded = roundLatencyMs(i * 0.7919);
      expect(roundLatencyMs(rounded)).toBe(rounded);
    }
  });
});

describe('toJsonLine', () => {
  it('writes one JSON object on one line, fields in canonical order then the hash; a v1 record has no batch key', () => {
    const record = chained(auditEvent());
    const line = toJsonLine(record);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    expect(Object.keys(JSON.parse(line))).toEqual([...AUDIT_RECORD_FIELDS_V1, 'hash']);
    expect(JSON.parse(line)).toMatchObject({ sequence: 1, time: '2026-11-28T17:23:47.123Z', hash: record.hash });
  });

  it.each(FORGERIES)('writes %s in a key name as one line with no control character', (_name, keyName) => {
    const line = toJsonLine(chained(auditEvent({ keyName, requestId: keyName, outcome: 'KH_ERR_VALIDATION' })));
    const body = line.slice(0, -1);
    expect(body).not.toMatch(RAW_CONTROL);
    expect(body).not.toMatch(LONE_SURROGATE);
    expect(body.split('\n')).toHaveLength(1);
  });

  it.each(FORGERIES)('reads %s back as the one record that was written, outcome unchanged', (_name, keyName) => {
    const record = chained(auditEvent({ keyName, outcome: 'KH_ERR_VALIDATION', status: 400 }));
    const parsed = parseJsonLine(toJsonLine(record));
    expect(parsed).toEqual(record);
    expect(parsed.outcome).toBe('KH_ERR_VALIDATION');
    expect(parsed.keyName).toBe(sanitizeAuditString(keyName));
  });

  it('sanitises a record that was not normalised, rather than writing raw control characters', () => {
    const record = { ...auditEvent({ keyName: 'k\n{"x":1}' }), batch: null, sequence: 1, hash: 'a'.repeat(64) };
    expect(JSON.parse(toJsonLine(record)).keyName).toBe('k\\u000a{"x":1}');
  });

  it('refuses a record without a proper hash or sequence', () => {
    const record = chained(auditEvent());
    expect(() => toJsonLine(edited(record, { hash: 'xyz' }))).toThrow(TypeError);
    expect(() => toJsonLine(edited(record, { sequence: 0 }))).toThrow(TypeError);
  });
});

describe('parseJsonLine', () => {
  const line = (): Record<string, unknown> => JSON.parse(toJsonLine(chained(auditEvent()))) as Record<string, unknown>;

  it.each<[string, (fields: Record<string, unknown>) => void]>([
    ['a missing field', (fields) => delete fields.keyName],
    ['an extra field', (fields) => (fields.plaintext = 'x')],
    ['a time that is not ISO 8601 with milliseconds', (fields) => (fields.time = '2026-11-28T17:23:47Z')],
    ['a time that Date would roll over', (fields) => (fields.time = '2026-02-30T00:00:00.000Z')],
    ['a hash that is not hex', (fields) => (fields.hash = 'g'.repeat(64))],
    ['a sequence that is text', (fields) => (fields.sequence = '1')],
    ['a status that is text', (fields) => (fields.status = '200')],
  ])('refuses a line with %s', (_name, change) => {
    const fields = line();
    change(fields);
    expect(() => parseJsonLine(JSON.stringify(fields))).toThrow(TypeError);
  });

  it('refuses two records on one line', () => {
    const text = toJsonLine(chained(auditEvent()));
    expect(() => parseJsonLine(text + text)).toThrow(SyntaxError);
  });

  it('keeps an unsanitised string as it was on the line, for the verifier to see', () => {
    const fields = line();
    fields.keyName = 'k\u001b[2J';
    expect(parseJsonLine(JSON.stringify(fields)).keyName).toBe('k\u001b[2J');
  });
});

describe('toJsonLine / parseJsonLine: format v2', () => {
  it('writes a batch record with its summary last before the hash, and reads it back as the record', () => {
    const record = chained(batchEvent());
    const line = toJsonLine(record);
    expect(Object.keys(JSON.parse(line))).toEqual([...AUDIT_RECORD_FIELDS, 'hash']);
    expect(parseJsonLine(line)).toEqual(record);
  });

  it('reads a v1 line, without a batch key, as a record without a summary', () => {
    expect(parseJsonLine(toJsonLine(chained(auditEvent()))).batch).toBeNull();
  });

  it('refuses a line with a batch key of null, which no writer writes', () => {
    const fields = JSON.parse(toJsonLine(chained(auditEvent()))) as Record<string, unknown>;
    expect(() => parseJsonLine(JSON.stringify({ ...fields, batch: null }))).toThrow(TypeError);
  });
});

describe('strictCanonicalAuditRecord', () => {
  it('encodes a chained record exactly like canonicalAuditRecord', () => {
    const record = chained(auditEvent({ keyName: 'k\n' }));
    expect(strictCanonicalAuditRecord(record)).toEqual(canonicalAuditRecord(record, 1));
  });

  it('accepts a stored summary whose keys come back in another order', () => {
    const record = chained(batchEvent());
    const reordered = JSON.parse(JSON.stringify(record.batch, ['parts', 'part', 'items', 'entries', 'count', 'outcome', 'keyVersion', 'keyId', 'keyName', 'action']));
    expect(strictCanonicalAuditRecord(edited(record, { batch: reordered }))).toEqual(canonicalAuditRecord(batchEvent(), 1));
  });

  it('refuses a stored summary with a property the hash does not cover', () => {
    const record = chained(batchEvent());
    const entries = [{ ...record.batch!.entries[0]!, note: 'x' }, ...record.batch!.entries.slice(1)];
    expect(() => strictCanonicalAuditRecord(edited(record, { batch: { ...record.batch!, entries } }))).toThrow(TypeError);
    expect(() => strictCanonicalAuditRecord(edited(record, { batch: { ...record.batch!, note: 'x' } as AuditBatch }))).toThrow(TypeError);
  });

  it('refuses a raw control character in a stored summary', () => {
    const record = chained(batchEvent());
    const entries = [{ ...record.batch!.entries[0]!, keyName: 'k\n' }];
    expect(() => strictCanonicalAuditRecord(edited(record, { batch: { ...record.batch!, entries } }))).toThrow(TypeError);
  });

  it('refuses a raw control character that would sanitise to the stored value', () => {
    const record = chained(auditEvent({ keyName: 'k\u001b[2J' }));
    expect(record.keyName).toBe('k\\u001b[2J');
    expect(() => strictCanonicalAuditRecord(edited(record, { keyName: 'k\u001b[2J' }))).toThrow(TypeError);
  });

  it('refuses an unrounded latency and an over-long string', () => {
    const record = chained(auditEvent());
    expect(() => strictCanonicalAuditRecord(edited(record, { latencyMs: record.latencyMs + 1e-7 }))).toThrow(TypeError);
    expect(() => strictCanonicalAuditRecord(edited(record, { requestId: 'r'.repeat(600) }))).toThrow(TypeError);
  });
});
