import type { FastifyReply, FastifyRequest } from 'fastify';
import { AwsAuthenticationError, AwsKmsError, awsExceptionOf, AWS_EXCEPTIONS, type AwsExceptionName } from '../../aws-kms/aws-errors.js';
import { problemOf, RETRY_AFTER_SECONDS } from './problem.js';

/** The AWS JSON 1.1 protocol's media type, which AWS SDKs send and expect for KMS. */
export const AWS_JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Errors are answered in the AWS JSON protocol's shape (`{"__type", "message"}`), not as problems. */
    awsJsonErrors?: boolean;
  }
}

export interface AwsErrorAnswer {
  readonly status: number;
  readonly type: AwsExceptionName;
  readonly body: string;
}

/**
 * Any error as AWS KMS would answer it: the exception name SDKs turn into a typed error and retry decisions, and a
 * message. As for problems, only Keyhold's own messages are shown and a 5xx says nothing of its cause.
 */
export function awsErrorOf(error: unknown, requestId: string): AwsErrorAnswer & { readonly code: ReturnType<typeof problemOf>['code'] } {
  const problem = problemOf(error, requestId);
  const type = error instanceof AwsKmsError ? error.awsType : awsExceptionOf(problem.code);
  const status = AWS_EXCEPTIONS[type];
  // The problem's own text names application/json, the native API's media type.
  const message =
    status >= 500 ? problem.title : problem.code === 'KH_ERR_UNSUPPORTED_MEDIA_TYPE' ? `The request body must be ${AWS_JSON_CONTENT_TYPE}` : problem.detail;
  return { status, type, code: problem.code, body: JSON.stringify({ __type: type, message }) };
}

/** Sets the headers of an AWS error answer; `x-amzn-ErrorType` is read before the body by some SDKs. */
export function setAwsErrorHeaders(reply: FastifyReply, request: FastifyRequest, answer: AwsErrorAnswer): FastifyReply {
  void reply
    .code(answer.status)
    .header('content-type', AWS_JSON_CONTENT_TYPE)
    .header('x-amzn-requestid', request.id)
    .header('x-amzn-errortype', answer.type);
  if (answer.status === 503) void reply.header('retry-after', RETRY_AFTER_SECONDS);
  return reply;
}

/** Answers `error` in the AWS JSON shape: the AWS endpoint's error handler. Logs 5xx as `sendProblem` does. */
export function sendAwsError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const answer = awsErrorOf(error, request.id);
  request.answeredProblem = {
    code: answer.code,
    authenticationFailure: error instanceof AwsAuthenticationError ? error.reason : undefined,
  };
  if (answer.status >= 500) request.log.error({ err: error, code: answer.code, requestId: request.id }, 'request failed');
  return setAwsErrorHeaders(reply, request, answer).send(answer.body);
}
