import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ERROR_CODE_LIST, ERROR_CODES } from '../errors.js';
import { BOUND_ATTRIBUTES, KEY_NAME_PATTERN, KEY_STATES, KEY_VERSION_STATES, type KeyRecord } from '../keys/key-record.js';
import { ACTIONS } from '../context/actions.js';
import { MAX_STATEMENTS } from '../policy/policy.js';
import { MAX_CONTEXT_PAIRS } from '../crypto/encryption-context.js';
import {
  MAX_DATA_KEY_BYTES,
  MAX_ENCRYPT_PLAINTEXT_BYTES,
  MIN_DATA_KEY_BYTES,
} from '../keys/envelope-service.js';
import { MAX_PENDING_WINDOW_DAYS, MAX_RETAIN_VERSIONS, MIN_PENDING_WINDOW_DAYS } from '../keys/lifecycle.js';

/**
 * The one source of truth for request and response shapes: fastify validates requests and serialises responses
 * with these schemas, and `openapi.yaml` is generated from them. A response schema is also a guard: a field it
 * does not declare is never sent.
 */

const STANDARD_BASE64 = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$';
const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4;

export const KeyName = Type.String({ pattern: KEY_NAME_PATTERN, description: 'The key name.' });
export const KeyNameParams = Type.Object({ name: KeyName }, { additionalProperties: false });
export const KeyVersionParams = Type.Object(
  { name: KeyName, version: Type.String({ pattern: '^[1-9][0-9]{0,9}$', description: 'A key version number.' }) },
  { additionalProperties: false },
);

export const EncryptionContext = Type.Record(Type.String(), Type.String({ maxLength: 8192 }), {
  maxProperties: MAX_CONTEXT_PAIRS,
  propertyNames: { minLength: 1, maxLength: 1024 },
  description:
    'String-to-string pairs bound to the ciphertext as authenticated data; decryption needs exactly the same pairs. ' +
    `At most ${MAX_CONTEXT_PAIRS} pairs and 8 KiB encoded. Keys starting with "kh." are reserved.`,
});

export const Ciphertext = Type.String({
  pattern: '^kh1:[A-Za-z0-9_-]+$',
  maxLength: 16384,
  description: 'A Keyhold ciphertext: "kh1:" and unpadded base64url (docs/ciphertext-format.md).',
});

/** Serialised from a `Date` as RFC 3339 by fast-json-stringify; the static type says so. */
const timestamp = (description: string) => Type.Unsafe<Date>(Type.String({ format: 'date-time', description }));
const nullableTimestamp = (description: string) => Type.Union([timestamp(description), Type.Null()]);

export const Labels = Type.Record(Type.String(), Type.String({ maxLength: 256, pattern: '^[^\\u0000]*$' }), {
  maxProperties: 64,
  propertyNames: { pattern: '^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$' },
  description: 'Free-form labels: lower-case keys of up to 63 characters, values of up to 256.',
});

const BoundContext = Type.Array(Type.Union(BOUND_ATTRIBUTES.map((a) => Type.Literal(a))), {
  maxItems: BOUND_ATTRIBUTES.length,
  uniqueItems: true,
  description:
    'Caller attributes bound into every encryption context of this key as "kh.ATTRIBUTE": a ciphertext made by one ' +
    'namespace (say) never decrypts for another, whatever the policies allow. Set at creation; it cannot change.',
});

export const KeyVersion = Type.Object(
  {
    version: Type.Integer({ minimum: 1 }),
    state: Type.Union(KEY_VERSION_STATES.map((s) => Type.Literal(s))),
    rootKeyId: Type.String({ description: 'The root key that wraps this version at rest.' }),
    createdAt: timestamp('When the version was created.'),
    updatedAt: timestamp('When the version last changed state.'),
    destroyedAt: nullableTimestamp('When the material was erased.'),
  },
  { additionalProperties: false },
);

export const Key = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: KeyName,
    description: Type.String(),
    labels: Labels,
    boundContext: BoundContext,
    state: Type.Union(KEY_STATES.map((s) => Type.Literal(s))),
    primaryVersion: Type.Integer({ minimum: 1, description: 'The version that encrypts and issues data keys.' }),
    minDecryptionVersion: Type.Integer({ minimum: 1, description: 'Older versions refuse to decrypt.' }),
    rotationPeriodSeconds: Type.Union([Type.Integer(), Type.Null()]),
    retainVersions: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
      description: 'How many of the newest versions stay decryptable after each rotation; null keeps them all.',
    }),
    nextRotationAt: nullableTimestamp('When scheduled rotation is next due.'),
    deletionDate: nullableTimestamp('When a key pending deletion is destroyed.'),
    createdAt: timestamp('When the key was created.'),
    updatedAt: timestamp('When the key last changed.'),
    destroyedAt: nullableTimestamp('When the key was destroyed.'),
    versions: Type.Array(KeyVersion),
  },
  { $id: 'Key', additionalProperties: false },
);
/** Routes refer to shared schemas by id, so `openapi.yaml` lists each once under components. */
export const KeyRef = Type.Unsafe<KeyRecord>(Type.Ref('Key'));

/** PostgreSQL text cannot hold NUL, so it is refused here as bad input rather than failing in the database. */
const Description = Type.String({ maxLength: 1024, pattern: '^[^\\u0000]*$' });

const RotationPeriod = Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
  description: 'Seconds between scheduled rotations: 0 or null turns it off, otherwise at least 3600.',
});

const RetainVersions = Type.Union([Type.Integer({ minimum: 1, maximum: MAX_RETAIN_VERSIONS }), Type.Null()], {
  description:
    'Each rotation raises minDecryptionVersion so that only this many of the newest versions decrypt; null keeps ' +
    'them all. It applies from the next rotation on, and retired versions keep their material.',
});

export const CreateKeyBody = Type.Object(
  {
    name: KeyName,
    description: Type.Optional(Description),
    labels: Type.Optional(Labels),
    rotationPeriodSeconds: Type.Optional(RotationPeriod),
    retainVersions: Type.Optional(RetainVersions),
    boundContext: Type.Optional(BoundContext),
  },
  { additionalProperties: false },
);

export const UpdateKeyBody = Type.Object(
  {
    description: Type.Optional(Description),
    labels: Type.Optional(Labels),
    rotationPeriodSeconds: Type.Optional(RotationPeriod),
    retainVersions: Type.Optional(RetainVersions),
    minDecryptionVersion: Type.Optional(Type.Integer({ minimum: 1, maximum: 0xffffffff })),
  },
  { additionalProperties: false, minProperties: 1 },
);

/** Query parameters may be present but empty (`?prefix=`), which means the same as absent. */
const PageLimit = Type.String({ pattern: '^(?:[1-9][0-9]?|[1-4][0-9]{2}|500)?$', description: 'Page size, 1 to 500; default 100.' });
const pageCursor = (maxLength: number) =>
  Type.String({ pattern: `^[A-Za-z0-9_-]{0,${maxLength}}$`, description: 'The nextCursor of the previous page.' });

export const ListKeysQuery = Type.Object(
  {
    prefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{0,128}$', description: 'Only names that start with this.' })),
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(200)),
  },
  { additionalProperties: false },
);

export const KeyList = Type.Object(
  { keys: Type.Array(KeyRef), nextCursor: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

export const EmptyBody = Type.Object({}, { additionalProperties: false });

export const ScheduleDeletionBody = Type.Object(
  {
    pendingWindowDays: Type.Optional(
      Type.Integer({ minimum: MIN_PENDING_WINDOW_DAYS, maximum: MAX_PENDING_WINDOW_DAYS, description: 'Default 30.' }),
    ),
  },
  { additionalProperties: false },
);

const Plaintext = Type.String({
  pattern: STANDARD_BASE64,
  maxLength: base64Length(MAX_ENCRYPT_PLAINTEXT_BYTES),
  description: `Standard base64 of at most ${MAX_ENCRYPT_PLAINTEXT_BYTES} bytes.`,
});

const dataKeyFields = {
  context: Type.Optional(EncryptionContext),
  includePlaintext: Type.Optional(Type.Boolean({ description: 'Default true. When false, only the wrapped key is returned.' })),
  bytes: Type.Optional(Type.Integer({ minimum: MIN_DATA_KEY_BYTES, maximum: MAX_DATA_KEY_BYTES, description: 'Default 32.' })),
};
const encryptFields = { plaintext: Plaintext, context: Type.Optional(EncryptionContext) };
const decryptFields = { ciphertext: Ciphertext, context: Type.Optional(EncryptionContext) };
const rewrapFields = { ...decryptFields, destinationContext: Type.Optional(EncryptionContext) };

export const DataKeyBody = Type.Object(dataKeyFields, { additionalProperties: false });
export const EncryptBody = Type.Object(encryptFields, { additionalProperties: false });
export const DecryptBody = Type.Object(decryptFields, { additionalProperties: false });
export const RewrapBody = Type.Object(rewrapFields, { additionalProperties: false });
/** No destination context: the migrated ciphertext keeps the context of the one it replaces. */
export const RewrapRevokedBody = Type.Object(decryptFields, { additionalProperties: false });

const keyVersionRefFields = { keyId: Type.String({ format: 'uuid' }), keyName: KeyName, keyVersion: Type.Integer({ minimum: 1 }) };

export const DataKeyResult = Type.Object(
  {
    ...keyVersionRefFields,
    ciphertext: Ciphertext,
    plaintext: Type.Optional(Type.String({ description: 'Standard base64 of the data key; absent when includePlaintext is false.' })),
  },
  { additionalProperties: false },
);
export const CiphertextResult = Type.Object(
  { ...keyVersionRefFields, ciphertext: Ciphertext },
  { additionalProperties: false },
);
export const DecryptResult = Type.Object(
  { ...keyVersionRefFields, plaintext: Type.String({ description: 'Standard base64.' }) },
  { additionalProperties: false },
);

export const MAX_BATCH_ITEMS = 1000;

export const BatchItem = Type.Union(
  [
    Type.Object({ op: Type.Literal('datakey'), key: KeyName, ...dataKeyFields }, { additionalProperties: false }),
    Type.Object({ op: Type.Literal('encrypt'), key: KeyName, ...encryptFields }, { additionalProperties: false }),
    Type.Object({ op: Type.Literal('decrypt'), key: Type.Optional(KeyName), ...decryptFields }, { additionalProperties: false }),
    Type.Object({ op: Type.Literal('rewrap'), key: KeyName, ...rewrapFields }, { additionalProperties: false }),
  ],
  { description: 'One operation; decrypt takes an optional key, which then must be the ciphertext’s.' },
);

export const BatchBody = Type.Object(
  { items: Type.Array(BatchItem, { minItems: 1, maxItems: MAX_BATCH_ITEMS }) },
  { additionalProperties: false },
);

export const Problem = Type.Object(
  {
    type: Type.String({ description: 'A URI naming the problem type.' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.Union(ERROR_CODE_LIST.map((code) => Type.Literal(code)), {
      description: ERROR_CODE_LIST.map((code) => `${code} (${ERROR_CODES[code].status}): ${ERROR_CODES[code].title}`).join('\n'),
    }),
    requestId: Type.String(),
  },
  { $id: 'Problem', additionalProperties: false, description: 'RFC 9457 problem details.' },
);
export type ProblemBody = Static<typeof Problem>;
export const ProblemRef = Type.Unsafe<ProblemBody>(Type.Ref('Problem'));


export const BatchResult = Type.Object(
  {
    results: Type.Array(
      Type.Object(
        {
          status: Type.Integer(),
          result: Type.Optional(Type.Union([DataKeyResult, CiphertextResult, DecryptResult])),
          problem: Type.Optional(ProblemRef),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const CreateTokenBody = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }),
    admin: Type.Optional(Type.Boolean({ description: 'Admin tokens bypass policies. Only admins may create them.' })),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 24 * 3600 })),
  },
  { additionalProperties: false },
);

const tokenFields = {
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  admin: Type.Boolean(),
  createdAt: timestamp('When the token was issued.'),
  expiresAt: nullableTimestamp('When the token stops working.'),
};
export const Token = Type.Object(tokenFields, { additionalProperties: false });
export const IssuedToken = Type.Object(
  { ...tokenFields, token: Type.String({ description: 'The secret. It is shown only here, once.' }) },
  { additionalProperties: false },
);
export const TokenList = Type.Object(
  { tokens: Type.Array(Token), nextCursor: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export const ListTokensQuery = Type.Object(
  {
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(400)),
  },
  { additionalProperties: false },
);
export const TokenIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });

export const Whoami = Type.Object(
  {
    id: Type.String(),
    type: Type.Union([Type.Literal('token'), Type.Literal('kubernetes'), Type.Literal('spiffe')]),
    admin: Type.Boolean(),
    attributes: Type.Record(Type.String(), Type.String()),
  },
  { additionalProperties: false },
);

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
  { additionalProperties: false },
);

const AuditTime = Type.String({ format: 'date-time', description: 'RFC 3339.' });
export const AuditQueryString = Type.Object(
  {
    since: Type.Optional(AuditTime),
    until: Type.Optional(AuditTime),
    principal: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    key: Type.Optional(KeyName),
    action: Type.Optional(Type.String({ pattern: '^[a-z:-]{1,32}$' })),
    outcome: Type.Optional(Type.String({ pattern: '^(ok|KH_ERR_[A-Z_]{1,48}|HTTP_[0-9]{3})$' })),
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(400)),
  },
  { additionalProperties: false },
);

export const AuditPage = Type.Object(
  { records: Type.Array(AuditRecordView), nextCursor: Type.Optional(Type.String()) },
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

const PolicyName = Type.String({ pattern: KEY_NAME_PATTERN, description: 'The policy name.' });
export const PolicyNameParams = Type.Object({ name: PolicyName }, { additionalProperties: false });
const NoNul = '^[^\\u0000]*$';
const PolicyAction = Type.Union([...ACTIONS, '*'].map((action) => Type.Literal(action)));

const Statement = Type.Object(
  {
    sid: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$', description: 'A statement id, shown in decisions.' })),
    effect: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
    principals: Type.Array(Type.String({ maxLength: 512 }), {
      minItems: 1,
      maxItems: 64,
      description: 'Globs over principal ids ("*" matches any run of characters): k8s:NS:SA, spiffe://…, token:NAME.',
    }),
    actions: Type.Array(PolicyAction, { minItems: 1, maxItems: 32 }),
    keys: Type.Array(Type.String({ maxLength: 256 }), {
      minItems: 1,
      maxItems: 64,
      description:
        'Globs over key names; may use ${principal.ATTRIBUTE}. Actions not about a key (tokens, policies, audit) ' +
        'are granted only by statements that list "*".',
    }),
    conditions: Type.Optional(
      Type.Object(
        {
          context: Type.Optional(
            Type.Record(Type.String({ minLength: 1, maxLength: 1024 }), Type.String({ maxLength: 1024, pattern: NoNul }), {
              maxProperties: 32,
              description: 'Encryption-context pairs the request must carry, exactly; values may use ${principal.ATTRIBUTE}.',
            }),
          ),
          principal: Type.Optional(
            Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.String({ maxLength: 1024, pattern: NoNul }), {
              maxProperties: 16,
              description:
                'Principal attributes (id, type, namespace, issuer, trustDomain, …) that must equal these values exactly; ' +
                'for example the issuer of one cluster when several share namespace names.',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const PolicyDocumentBody = Type.Object(
  {
    description: Type.Optional(Type.String({ maxLength: 1024, pattern: NoNul })),
    statements: Type.Array(Statement, { minItems: 1, maxItems: MAX_STATEMENTS }),
  },
  { additionalProperties: false },
);

export const Policy = Type.Object(
  {
    name: PolicyName,
    description: Type.Optional(Type.String()),
    statements: Type.Array(Statement),
    revision: Type.Integer({ minimum: 1, description: 'Bumped on every change; the ETag, for If-Match.' }),
    createdAt: timestamp('When the policy was created.'),
    updatedAt: timestamp('When the policy last changed.'),
  },
  { $id: 'Policy', additionalProperties: false },
);
export const PolicyRef = Type.Ref('Policy');

export const PolicyList = Type.Object(
  { policies: Type.Array(PolicyRef), nextCursor: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export const ListPoliciesQuery = Type.Object(
  {
    prefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{0,128}$', description: 'Only names that start with this.' })),
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(200)),
  },
  { additionalProperties: false },
);

const PrincipalAttributes = Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9]{0,63}$' }), Type.String({ maxLength: 1024 }), {
  maxProperties: 32,
});

export const SimulationBody = Type.Object(
  {
    principal: Type.Object(
      {
        id: Type.String({ minLength: 1, maxLength: 512 }),
        type: Type.Optional(Type.Union([Type.Literal('token'), Type.Literal('kubernetes'), Type.Literal('spiffe')])),
        attributes: Type.Optional(PrincipalAttributes),
      },
      { additionalProperties: false },
    ),
    action: Type.Union(ACTIONS.map((action) => Type.Literal(action))),
    key: Type.Optional(KeyName),
    context: Type.Optional(EncryptionContext),
  },
  { additionalProperties: false },
);

export const SimulationResult = Type.Object(
  {
    decision: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
    matched: Type.Array(
      Type.Object(
        {
          policy: Type.String(),
          statement: Type.Integer({ minimum: 0, description: 'The index in the policy\'s statements.' }),
          sid: Type.Optional(Type.String()),
          effect: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
        },
        { additionalProperties: false },
      ),
      { description: 'The deny statements that matched when denied explicitly, otherwise every allow that matched.' },
    ),
    reason: Type.String(),
  },
  { additionalProperties: false },
);

export const Health = Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false });
export const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
    checks: Type.Object(
      { database: Type.Boolean(), rootKey: Type.Boolean(), migrations: Type.Boolean() },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export const EventStreamHeaders = Type.Object({
  'last-event-id': Type.Optional(
    Type.String({
      pattern: '^(0|[1-9][0-9]{0,14})$',
      description: 'The id of the last event received, sent on reconnect: the changes after it are replayed first.',
    }),
  ),
});

/** The `data` of a `key` event. It says which key changed and how, never anything of the key itself. */
export const KeyEventData = Type.Object(
  {
    seq: Type.Integer({ minimum: 1, description: 'The change sequence; also the event id.' }),
    keyName: KeyName,
    action: Type.String({ description: 'What changed: rotate, disable, enable, update, schedule-deletion, destroy, …' }),
    at: Type.String({ format: 'date-time', description: 'When the change was committed.' }),
  },
  { $id: 'KeyEventData', additionalProperties: false, description: 'The data of a `key` event of GET /v1/events.' },
);
export type KeyEventData = Static<typeof KeyEventData>;

/** The `data` of a `resync` event. */
export const ResyncEventData = Type.Object(
  { seq: Type.Integer({ minimum: 0, description: 'The change sequence the stream resumes after; also the event id.' }) },
  { $id: 'ResyncEventData', additionalProperties: false, description: 'The data of a `resync` event of GET /v1/events.' },
);
export type ResyncEventData = Static<typeof ResyncEventData>;

/** A `text/event-stream` answer; OpenAPI 3.1 has no schema for a sequence of events, so the description tells. */
export function eventStream(description: string): TSchema {
  return {
    description,
    content: { 'text/event-stream': { schema: Type.String({ description: 'Server-Sent Events (WHATWG HTML §9.2).' }) } },
  } as unknown as TSchema;
}

/** Response entries for the problem statuses a route can answer with. */
export function problems(...statuses: number[]): Record<number, TSchema> {
  const entries: Record<number, TSchema> = {};
  for (const status of statuses) {
    entries[status] = {
      description: ERROR_CODE_LIST.filter((code) => ERROR_CODES[code].status === status).join(', '),
      content: { 'application/problem+json': { schema: ProblemRef } },
    } as unknown as TSchema;
  }
  return entries;
}

/**
 * A success response. It is a plain schema rather than one keyed by media type, so fastify picks its serialiser
 * without parsing the reply's content type on every response.
 */
export function json<T extends TSchema>(schema: T, description: string): T {
  return { ...schema, description };
}

/**
 * Registered with `app.addSchema` before any route refers to them. The event data schemas are referred to by no
 * route (an event stream has no JSON body), but registering them puts them in `openapi.yaml` for clients.
 */
export const SHARED_SCHEMAS: readonly TSchema[] = [Problem, Key, Policy, KeyEventData, ResyncEventData];
