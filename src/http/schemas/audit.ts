import { Type } from '@sinclair/typebox';
import { KeyNameParam, pageCursor, PageLimit, ref, timestamp } from './common.js';

/** The audit log: query its records and verify its chains. */

const NullableString = Type.Union([Type.String(), Type.Null()]);
const NullableInteger = Type.Union([Type.Integer(), Type.Null()]);

const AuditBatchView = Type.Object(
  {
    items: Type.Integer({ minimum: 1, description: 'Items in the whole batch request.' }),
    part: Type.Integer({ minimum: 1, description: 'This record\'s part of the summary; a long one spans several records.' }),
    parts: Type.Integer({ minimum: 1 }),
    entries: Type.Array(
      Type.Object(
        {
          action: Type.String(),
          keyName: NullableString,
          keyId: NullableString,
          keyVersion: NullableInteger,
          outcome: Type.String({ description: '"ok" or the error code the item answered.' }),
          count: Type.Integer({ minimum: 1 }),
        },
        { additionalProperties: false },
      ),
      { description: 'Each distinct action, key, version and outcome of the items, with how many had it.' },
    ),
  },
  { additionalProperties: false },
);

export const AuditRecordView = Type.Object(
  {
    replicaId: Type.String({ description: 'The chain: one per server process.' }),
    sequence: Type.Integer({ minimum: 1 }),
    time: timestamp('When the request was answered.'),
    requestId: Type.String(),
    principalId: NullableString,
    principalType: NullableString,
    tokenId: NullableString,
    sourceAddress: NullableString,
    method: Type.String(),
    route: NullableString,
    action: NullableString,
    keyName: NullableString,
    keyId: NullableString,
    keyVersion: NullableInteger,
    contextKeys: Type.Array(Type.String(), { description: 'The encryption context keys; values are never recorded.' }),
    decision: Type.Union([Type.Literal('allow'), Type.Literal('deny'), Type.Null()]),
    decisionReason: NullableString,
    policy: NullableString,
    statement: NullableInteger,
    outcome: Type.String({ description: '"ok" or the error code answered.' }),
    status: Type.Integer(),
    latencyMs: Type.Number(),
    batch: Type.Union([AuditBatchView, Type.Null()], { description: 'A batch request\'s summary; null on any other.' }),
    hash: Type.String({ description: 'HMAC-SHA256 chain hash over the previous hash and this record.' }),
  },
  { $id: 'AuditRecord', additionalProperties: false },
);

const AuditTime = Type.String({ format: 'date-time', description: 'RFC 3339.' });
export const AuditQueryString = Type.Object(
  {
    since: Type.Optional(AuditTime),
    until: Type.Optional(AuditTime),
    principal: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    key: Type.Optional(KeyNameParam),
    action: Type.Optional(Type.String({ pattern: '^[a-z:-]{1,32}$' })),
    outcome: Type.Optional(Type.String({ pattern: '^(ok|KH_ERR_[A-Z_]{1,48}|HTTP_[0-9]{3})$' })),
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(400)),
  },
  { additionalProperties: false },
);

export const AuditPage = Type.Object(
  { records: Type.Array(ref(AuditRecordView)), nextCursor: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

export const AuditVerification = Type.Object(
  {
    ok: Type.Boolean(),
    chains: Type.Array(
      Type.Object(
        {
          replicaId: Type.String(),
          ok: Type.Boolean(),
          records: Type.Integer({ minimum: 0 }),
          lastSequence: Type.Optional(Type.Integer({ minimum: 0 })),
          firstBadSequence: Type.Optional(Type.Integer({ minimum: 0 })),
          problem: Type.Optional(Type.String()),
          state: Type.Union([Type.Literal('sealed'), Type.Literal('live'), Type.Literal('unsealed')], {
            description:
              'sealed: its process shut down cleanly and wrote the seal record; live: its writer\'s heartbeat is under ' +
              '3 minutes old; unsealed: neither, a crash or a cut tail, which the database alone cannot tell apart.',
          }),
          heartbeat: Type.Optional(Type.String({ format: 'date-time', description: "The writer's last MAC'd head statement." })),
          witnessed: Type.Optional(
            Type.Object(
              { sequence: Type.Integer({ minimum: 0 }), time: Type.String({ format: 'date-time', description: 'When the witness statement was made.' }), sealed: Type.Boolean() },
              { additionalProperties: false },
            ),
          ),
          accepted: Type.Optional(Type.Literal(true, { description: 'Unsealed, and accepted by the caller.' })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** The fleet inventory of a key: `GET /v1/keys/{name}/usage`. */
export const KeyUsageQueryString = Type.Object(
  {
    version: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,9}$', description: 'Only this key version.' })),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'RFC 3339, inclusive; default: 30 days before until.' })),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'RFC 3339, exclusive; default: now.' })),
  },
  { additionalProperties: false },
);

export const KeyUsageReportView = Type.Object(
  {
    keyName: Type.String(),
    keyId: Type.String({ format: 'uuid' }),
    since: timestamp('The window answered, inclusive: the one asked for, widened to whole UTC hours.'),
    until: timestamp('The window answered, exclusive, widened to a whole UTC hour.'),
    usage: Type.Array(
      Type.Object(
        {
          principal: Type.String(),
          keyVersion: Type.Integer({ minimum: 1 }),
          action: Type.String({ description: 'datakey, encrypt, decrypt, rewrap or rewrap-revoked.' }),
          count: Type.Integer({ minimum: 1, description: 'Successful uses in the window; denials and failures are not counted.' }),
          firstSeen: timestamp('The first use in the window.'),
          lastSeen: timestamp('The last use in the window.'),
        },
        { additionalProperties: false },
      ),
      { description: 'One line per principal, version and action, sorted by lastSeen (newest first), then principal, version, action.' },
    ),
  },
  { additionalProperties: false },
);
