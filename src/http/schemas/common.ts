import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ERROR_CODE_LIST, ERROR_CODES } from '../../errors.js';
import { KEY_NAME_PATTERN } from '../../keys/key-record.js';
import { MAX_CONTEXT_PAIRS } from '../../crypto/encryption-context.js';

/**
 * The pieces every endpoint family's schemas share. Together the files of `schemas/` are the one source of truth
 * for request and response shapes: fastify validates requests and serialises responses with them, and
 * `openapi.yaml` is generated from them. A response schema is also a guard: a field it does not declare is never
 * sent.
 */

/** Serialised from a `Date` as RFC 3339 by fast-json-stringify; the static type says so. */
export const timestamp = (description: string) => Type.Unsafe<Date>(Type.String({ format: 'date-time', description }));
export const nullableTimestamp = (description: string) => Type.Union([timestamp(description), Type.Null()]);

/** PostgreSQL text cannot hold NUL, so it is refused here as bad input rather than failing in the database. */
export const NO_NUL = '^[^\\u0000]*$';

export const KeyName = Type.String({ pattern: KEY_NAME_PATTERN, description: 'The key name.' });
export const KeyNameParams = Type.Object({ name: KeyName }, { additionalProperties: false });

export const EncryptionContext = Type.Record(Type.String(), Type.String({ maxLength: 8192 }), {
  maxProperties: MAX_CONTEXT_PAIRS,
  propertyNames: { minLength: 1, maxLength: 1024 },
  description:
    'String-to-string pairs bound to the ciphertext as authenticated data; decryption needs exactly the same pairs. ' +
    `At most ${MAX_CONTEXT_PAIRS} pairs and 8 KiB encoded. Keys starting with "kh." are reserved.`,
});

/** Query parameters may be present but empty (`?prefix=`), which means the same as absent. */
export const PageLimit = Type.String({ pattern: '^(?:[1-9][0-9]?|[1-4][0-9]{2}|500)?$', description: 'Page size, 1 to 500; default 100.' });
export const pageCursor = (maxLength: number) =>
  Type.String({ pattern: `^[A-Za-z0-9_-]{0,${maxLength}}$`, description: 'The nextCursor of the previous page.' });

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
