import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, KeyholdError, type ErrorCode } from '../../errors.js';
import { AuthenticationFailedError } from '../../identity/authenticator.js';
import { isDatabaseUnavailable } from '../../lib/database-errors.js';
import type { ProblemBody } from '../schemas/common.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The problem a request was answered with, for its audit record. */
    answeredProblem: { readonly code: ErrorCode; readonly authenticationFailure: string | undefined } | undefined;
  }
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
export const RETRY_AFTER_SECONDS = '5';

/** Fastify's own error codes that are the caller's fault, mapped to ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'KH_ERR_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'KH_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'KH_ERR_VALIDATION',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'KH_ERR_VALIDATION',
  FST_ERR_CTP_INVALID_JSON_BODY: 'KH_ERR_VALIDATION',
  FST_ERR_VALIDATION: 'KH_ERR_VALIDATION',
  FST_ERR_BAD_URL: 'KH_ERR_VALIDATION',
  FST_ERR_MAX_PARAM_LENGTH: 'KH_ERR_VALIDATION',
};

/** Turns any error into the problem the caller sees. Only KeyholdError messages are shown; 5xx are masked. */
export function problemOf(error: unknown, requestId: string): ProblemBody {
  const known = classify(error);
  const { status, title } = ERROR_CODES[known.code];
  return {
    type: `https://keyhold.dev/problems/${known.code.slice('KH_ERR_'.length).toLowerCase().replaceAll('_', '-')}`,
    title,
    status,
    detail: status >= 500 ? title : known.detail,
    code: known.code,
    requestId,
  };
}

function classify(error: unknown): { code: ErrorCode; detail: string } {
  if (error instanceof KeyholdError) return { code: error.code, detail: error.message };
  if (isDatabaseUnavailable(error)) return { code: 'KH_ERR_UNAVAILABLE', detail: ERROR_CODES.KH_ERR_UNAVAILABLE.title };
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown; validationContext?: string };
  if (fastifyError.validation !== undefined) {
    return { code: 'KH_ERR_VALIDATION', detail: fastifyError.message ?? 'The request is not valid' };
  }
  const mapped = typeof fastifyError.code === 'string' ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (mapped !== undefined) return { code: mapped, detail: ERROR_CODES[mapped].title };
  // JSON.parse and our own body checks report malformed bodies as SyntaxError or with a 400 status.
  if (error instanceof SyntaxError || fastifyError.statusCode === 400) {
    return { code: 'KH_ERR_VALIDATION', detail: 'The request body is not valid JSON' };
  }
  if (fastifyError.statusCode === 413) return { code: 'KH_ERR_PAYLOAD_TOO_LARGE', detail: ERROR_CODES.KH_ERR_PAYLOAD_TOO_LARGE.title };
  if (fastifyError.statusCode === 415) {
    return { code: 'KH_ERR_UNSUPPORTED_MEDIA_TYPE', detail: ERROR_CODES.KH_ERR_UNSUPPORTED_MEDIA_TYPE.title };
  }
  return { code: 'KH_ERR_INTERNAL', detail: ERROR_CODES.KH_ERR_INTERNAL.title };
}

/**
 * Answers `error` as a problem: the one place that logs 5xx (masked for the caller), sets the headers a status
 * calls for, and sends the body. The error handler, the not-found handler and fastify's framework errors use it.
 */
export function sendProblem(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = problemOf(error, request.id);
  request.answeredProblem = {
    code: problem.code,
    authenticationFailure: error instanceof AuthenticationFailedError ? error.reason : undefined,
  };
  if (problem.status >= 500) {
    request.log.error({ err: error, code: problem.code, requestId: request.id }, 'request failed');
  }
  if (problem.code === 'KH_ERR_UNAVAILABLE') void reply.header('retry-after', RETRY_AFTER_SECONDS);
  if (problem.code === 'KH_ERR_UNAUTHENTICATED') void reply.header('www-authenticate', 'Bearer realm="keyhold"');
  return reply.code(problem.status).header('x-request-id', request.id).type(PROBLEM_CONTENT_TYPE).send(problem);
}

/**
 * Replaces fastify's default handlers, which echo `err.message` for 5xx, with RFC 9457 problems, or with what `send`
 * writes (the AWS endpoint's own port answers in AWS's shape). Every 5xx is logged with its request id; its detail
 * never reaches the caller.
 */
export function registerProblemHandlers(
  app: FastifyInstance,
  send: (error: unknown, request: FastifyRequest, reply: FastifyReply) => FastifyReply = sendProblem,
): void {
  app.decorateRequest('answeredProblem', undefined);
  app.setErrorHandler((error, request, reply) => send(error, request, reply));
  app.setNotFoundHandler((request, reply) => {
    const path = (request.url.split('?')[0] ?? '').slice(0, 200);
    return send(new KeyholdError('KH_ERR_ROUTE_NOT_FOUND', `No route for ${request.method} ${path}`), request, reply);
  });
}
