import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';
import { ERROR_CODE_LIST, ERROR_CODES, type ErrorCode } from '../../errors.js';
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

/**
 * A reference to a shared schema, one with an `$id` listed in components.ts. Fastify resolves it for validation
 * and serialisation as if the schema were written out in place (the same keywords, so the same answers and the same
 * fields), and `openapi.yaml` lists the schema once under components instead of in every operation. A schema with
 * an `$id` is only ever used through this: written out in a route as well, its `$id` would be registered twice.
 */
export function ref<T extends TSchema>(schema: T): TUnsafe<Static<T>> {
  if (typeof schema.$id !== 'string') throw new Error('ref() needs a schema with an $id');
  return Type.Unsafe<Static<T>>(Type.Ref(schema.$id));
}

const keyName = { pattern: KEY_NAME_PATTERN, description: 'The key name.' };
export const KeyName = Type.String({ $id: 'KeyName', ...keyName });
/**
 * Path and query parameters are written out rather than referred to: @fastify/swagger lifts a parameter's
 * description from its schema, which it cannot do through a `$ref`.
 */
export const KeyNameParam = Type.String(keyName);
export const KeyNameParams = Type.Object({ name: KeyNameParam }, { additionalProperties: false });

export const EncryptionContext = Type.Record(Type.String(), Type.String({ maxLength: 8192 }), {
  $id: 'EncryptionContext',
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
export const ProblemRef = ref(Problem);

/**
 * What every authenticated route may answer, whatever its handler does: 400 for a malformed `Keyhold-Min-Change`
 * (plugins/min-change.ts) or a parameter its schema refuses; 401 from plugins/authentication.ts; 500 for anything
 * unexpected (plugins/problem.ts masks it); 503 when the credentials or the policies cannot be read, the replica
 * cannot catch up to `Keyhold-Min-Change`, or the request's audit record cannot be committed (plugins/audit-hook.ts).
 */
export const AUTHENTICATED_PROBLEMS: readonly ErrorCode[] = [
  'KH_ERR_VALIDATION',
  'KH_ERR_UNAUTHENTICATED',
  'KH_ERR_INTERNAL',
  'KH_ERR_UNAVAILABLE',
];

/**
 * What a request that may carry a body (POST, PUT, PATCH, DELETE) may answer before its handler runs: a body that
 * is not JSON, not UTF-8, too deep or refused by the schema (plugins/json-body.ts), over the body limit, or of
 * another media type. Fastify reads no body for GET.
 */
export const BODY_PROBLEMS: readonly ErrorCode[] = ['KH_ERR_VALIDATION', 'KH_ERR_PAYLOAD_TOO_LARGE', 'KH_ERR_UNSUPPORTED_MEDIA_TYPE'];

/**
 * Response entries for the problems a route can answer with: one per status, whose description lists the codes
 * of that status the route can return. The integration tests fail when a route answers a code it does not list.
 */
export function problems(...codes: ReadonlyArray<ErrorCode | readonly ErrorCode[]>): Record<number, TSchema> {
  const declared = new Set(codes.flat());
  const entries: Record<number, TSchema> = {};
  for (const status of new Set(ERROR_CODE_LIST.map((code) => ERROR_CODES[code].status))) {
    const listed = ERROR_CODE_LIST.filter((code) => ERROR_CODES[code].status === status && declared.has(code));
    if (listed.length === 0) continue;
    entries[status] = {
      description: listed.join(', '),
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
