import { Type } from '@sinclair/typebox';
import type { KeyOperation } from '../../context/caller.js';
import type { ErrorCode } from '../../errors.js';
import { BOUND_ATTRIBUTES, KEY_STATES, KEY_VERSION_STATES, type KeyRecord, type KeySummary as KeySummaryRecord } from '../../keys/key-record.js';
import {
  KEY_OPERATION_TABLE,
  MAX_PENDING_WINDOW_DAYS,
  MAX_RETAIN_VERSIONS,
  MIN_PENDING_WINDOW_DAYS,
  VERSION_OPERATION_TABLE,
  VERSION_READ_TABLE,
  type VersionOperation,
  type VersionReadOperation,
} from '../../keys/lifecycle.js';
import { KeyName, KeyNameParam, NO_NUL, nullableTimestamp, pageCursor, PageLimit, ref, timestamp } from './common.js';

/** Key administration: the key record, its versions, and the bodies that create and change it. */

export const KeyVersionParams = Type.Object(
  { name: KeyNameParam, version: Type.String({ pattern: '^[1-9][0-9]{0,9}$', description: 'A key version number.' }) },
  { additionalProperties: false },
);

export const Labels = Type.Record(Type.String(), Type.String({ maxLength: 256, pattern: NO_NUL }), {
  maxProperties: 64,
  propertyNames: { pattern: '^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$' },
  $id: 'Labels',
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
  { $id: 'KeyVersion', additionalProperties: false },
);

/** What a key and its summary share: everything but the versions. */
const KEY_FIELDS = {
  id: Type.String({ format: 'uuid' }),
  name: ref(KeyName),
  description: Type.String(),
  labels: ref(Labels),
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
};

export const Key = Type.Object({ ...KEY_FIELDS, versions: Type.Array(ref(KeyVersion)) }, { $id: 'Key', additionalProperties: false });
/** Routes refer to shared schemas by id, so `openapi.yaml` lists each once under components. */
export const KeyRef = Type.Unsafe<KeyRecord>(Type.Ref('Key'));

/**
 * A key in a listing: its versions counted rather than listed, so that a page is the same size however often its keys
 * were rotated. `GET /v1/keys/{name}` has the versions.
 */
export const KeySummary = Type.Object(
  {
    ...KEY_FIELDS,
    versionCount: Type.Integer({ minimum: 0, description: 'How many versions the key has, destroyed ones included.' }),
    enabledVersionCount: Type.Integer({ minimum: 0, description: 'How many of them are enabled.' }),
    primaryVersionCreatedAt: timestamp('When the primary version was created: the last rotation.'),
  },
  { $id: 'KeySummary', additionalProperties: false },
);
export const KeySummaryRef = Type.Unsafe<KeySummaryRecord>(Type.Ref('KeySummary'));

/** A key's description, on the native API and through the AWS endpoint's CreateKey. */
export const Description = Type.String({ maxLength: 1024, pattern: NO_NUL });

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
    name: ref(KeyName),
    description: Type.Optional(Description),
    labels: Type.Optional(ref(Labels)),
    rotationPeriodSeconds: Type.Optional(RotationPeriod),
    retainVersions: Type.Optional(RetainVersions),
    boundContext: Type.Optional(BoundContext),
  },
  { additionalProperties: false },
);

export const UpdateKeyBody = Type.Object(
  {
    description: Type.Optional(Description),
    labels: Type.Optional(ref(Labels)),
    rotationPeriodSeconds: Type.Optional(RotationPeriod),
    retainVersions: Type.Optional(RetainVersions),
    minDecryptionVersion: Type.Optional(Type.Integer({ minimum: 1, maximum: 0xffffffff })),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const ListKeysQuery = Type.Object(
  {
    prefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{0,128}$', description: 'Only names that start with this.' })),
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(200)),
  },
  { additionalProperties: false },
);

export const KeyList = Type.Object(
  { keys: Type.Array(KeySummaryRef), nextCursor: Type.Optional(Type.String()) },
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

const refusals = (verdicts: ReadonlyArray<string>): ErrorCode[] =>
  verdicts.filter((verdict): verdict is ErrorCode => verdict !== 'ok' && verdict !== 'noop');

/** The codes keys/lifecycle.ts refuses `operation` with in some key state: the documentation follows the table. */
export function keyStateRefusals(operation: KeyOperation): ErrorCode[] {
  return refusals(Object.values(KEY_OPERATION_TABLE).map((row) => row[operation]));
}

/** The codes keys/lifecycle.ts refuses a version operation with in some version state. */
export function versionStateRefusals(operation: VersionOperation): ErrorCode[] {
  return refusals(Object.values(VERSION_OPERATION_TABLE).map((row) => row[operation]));
}

/** The codes keys/lifecycle.ts refuses reading ciphertext under a version with, by the version's standing. */
export function versionReadRefusals(operation: VersionReadOperation): ErrorCode[] {
  return refusals(Object.values(VERSION_READ_TABLE).map((row) => row[operation]));
}
