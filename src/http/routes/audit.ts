import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ValidationError } from '../../errors.js';
import type { Services } from '../../services.js';
import { given, pageLimit } from '../pagination.js';
import { AUTHENTICATED_PROBLEMS, json, KeyNameParams, problems } from '../schemas/common.js';
import { AuditPage, AuditQueryString, AuditVerification, KeyUsageQueryString, KeyUsageReportView } from '../schemas/audit.js';

const tags = ['audit'];

interface Position {
  readonly time: number;
  readonly replicaId: string;
  readonly sequence: number;
}

function encodeCursor(position: Position): string {
  return Buffer.from(JSON.stringify([position.time, position.replicaId, position.sequence]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): Position {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(value) &&
      value.length === 3 &&
      Number.isSafeInteger(value[0]) &&
      typeof value[1] === 'string' &&
      value[1].length <= 128 &&
      Number.isSafeInteger(value[2])
    ) {
      return { time: value[0] as number, replicaId: value[1], sequence: value[2] as number };
    }
  } catch {
    // fall through to the validation error
  }
  throw new ValidationError('cursor is not valid');
}

function date(raw: string | undefined, name: string): Date | undefined {
  const text = given(raw);
  if (text === undefined) return undefined;
  const parsed = new Date(text);
  if (Number.isNaN(parsed.getTime())) throw new ValidationError(`${name} is not an RFC 3339 time`);
  return parsed;
}

export function auditRoutes(services: Pick<Services, 'audit' | 'keyUsage'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { audit, keyUsage } = services;

    app.get('/v1/audit', {
      schema: {
        operationId: 'queryAudit',
        summary: 'Audit records, newest first, filtered by time, principal, key, action and outcome.',
        tags,
        querystring: AuditQueryString,
        response: { 200: json(AuditPage, 'A page of records.'), ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN') },
      },
    }, async (request) => {
      const { query } = request;
      const cursor = given(query.cursor);
      const page = await audit.query(request.caller, {
        since: date(query.since, 'since'),
        until: date(query.until, 'until'),
        principal: given(query.principal),
        key: given(query.key),
        action: given(query.action),
        outcome: given(query.outcome),
        before: cursor === undefined ? undefined : decodeCursor(cursor),
        limit: pageLimit(query.limit),
      });
      const records = page.records.map(({ batch, ...record }) => ({
        ...record,
        contextKeys: [...record.contextKeys],
        batch: batch === null ? null : { ...batch, entries: [...batch.entries] },
      }));
      const last = page.records[page.records.length - 1];
      return page.hasMore && last !== undefined
        ? { records, nextCursor: encodeCursor({ time: last.time.getTime(), replicaId: last.replicaId, sequence: last.sequence }) }
        : { records };
    });

    app.get('/v1/audit/verify', {
      schema: {
        operationId: 'verifyAudit',
        summary: 'Walk every audit chain and report, per replica, the first missing or altered sequence number.',
        tags,
        response: { 200: json(AuditVerification, 'The verdict per chain.'), ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN') },
      },
    }, async (request) => {
      const report = await audit.verify(request.caller);
      return { ok: report.ok, chains: [...report.chains] };
    });

    app.get('/v1/keys/:name/usage', {
      schema: {
        operationId: 'keyUsage',
        summary: 'The fleet inventory of a key: which principals used which version for what, how often, and when, over a window.',
        description:
          'Successful uses only (datakey, encrypt, decrypt, rewrap, rewrap-revoked, and the items of batches), counted from the ' +
          'audit log into an hourly rollup; the window (default: the last 30 days) is widened to whole UTC hours. Authorised ' +
          'as audit:read.',
        tags,
        params: KeyNameParams,
        querystring: KeyUsageQueryString,
        response: {
          200: json(KeyUsageReportView, 'The key\'s uses in the window.'),
          ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_KEY_NOT_FOUND'),
        },
      },
    }, async (request) => {
      const { query } = request;
      const version = given(query.version);
      const report = await keyUsage.usage(request.caller, request.params.name, {
        version: version === undefined ? undefined : Number(version),
        since: date(query.since, 'since'),
        until: date(query.until, 'until'),
      });
      return { ...report, usage: [...report.usage] };
    });
  };
}
