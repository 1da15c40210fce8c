import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { auditContextKeys, type AuditEvent } from '../../audit/audit-record.js';
import type { AuditWriter } from '../../audit/audit-writer.js';
import type { Clock } from '../../lib/clock.js';
import type { EncryptionContext } from '../../crypto/encryption-context.js';
import { awsErrorOf, sendAwsError, setAwsErrorHeaders } from './aws-json.js';
import { problemOf, PROBLEM_CONTENT_TYPE, RETRY_AFTER_SECONDS, sendProblem } from './problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Set by a route whose one URL serves many operations (the AWS endpoint): the record's route names the operation
     * (`aws-kms:GenerateDataKey`), and its context keys come from the operation's input, not from `body.context`.
     */
    auditedAs: { route: string; context?: EncryptionContext | undefined } | undefined;
  }
}

function contextOf(body: unknown): Readonly<Record<string, string>> | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const context = (body as { context?: unknown }).context;
  return typeof context === 'object' && context !== null && !Array.isArray(context) ? (context as Record<string, string>) : undefined;
}

/**
 * The audit event of an answered request: identifiers, names and outcomes; never a secret or a context value.
 * `route` is the matched route pattern (`request.routeOptions.url`, undefined when none matched), which the caller
 * reads: fastify builds the route options afresh on every read.
 */
export function auditEventOf(
  request: FastifyRequest,
  reply: FastifyReply,
  replicaId: string,
  now: Date,
  route: string | undefined,
): AuditEvent {
  const caller = request.caller as FastifyRequest['caller'] | null;
  const trail = caller?.trail;
  const decision = trail?.decision;
  const decided = decision?.matched[0];
  const problem = request.answeredProblem;
  const params = request.params as { name?: unknown } | undefined;
  const keyFromUrl = route?.startsWith('/v1/keys/:name') === true && typeof params?.name === 'string' ? params.name : null;
  const auditedAs = request.auditedAs;
  const attributes = caller?.principal.attributes;
  return {
    time: now,
    requestId: request.id,
    replicaId,
    principalId: caller?.principal.id ?? null,
    principalType: caller?.principal.type ?? null,
    // The AWS access key that signed the request, or the API token presented.
    tokenId: attributes?.accessKeyId ?? attributes?.tokenId ?? null,
    sourceAddress: request.ip ?? null,
    method: request.method,
    route: auditedAs?.route ?? route ?? null,
    action: trail?.recordedAction ?? null,
    keyName: trail?.keyName ?? keyFromUrl,
    keyId: trail?.keyId ?? null,
    keyVersion: trail?.keyVersion ?? null,
    contextKeys: auditContextKeys(auditedAs === undefined ? contextOf(request.body) : auditedAs.context),
    decision: decision === undefined ? null : decision.allowed ? 'allow' : 'deny',
    decisionReason: problem?.authenticationFailure ?? decision?.reason ?? null,
    policy: decided?.policy ?? null,
    statement: decided?.statement ?? null,
    outcome: reply.statusCode < 400 ? 'ok' : (problem?.code ?? `HTTP_${reply.statusCode}`),
    status: reply.statusCode,
    latencyMs: reply.elapsedTime,
  };
}

/**
 * Appends the request's record and waits for its commit. A batch's record carries its summary; a summary too long
 * for one record is split over several, each the request's record with one part, and all of them must commit.
 */
async function appendRecords(writer: AuditWriter, event: AuditEvent, request: FastifyRequest): Promise<void> {
  const parts = (request.caller as FastifyRequest['caller'] | null)?.trail.batchParts();
  if (parts === undefined) return writer.append(event);
  await Promise.all(parts.map((batch) => writer.append({ ...event, batch })));
}

/**
 * Answers an error fastify raised before routing (a malformed URL, an over-long parameter), as a problem, or in AWS's
 * JSON shape on the AWS endpoint's own port. Those are sent on a context without onSend hooks, so the record is
 * written here first; if it cannot be, the answer is a 503.
 */
export async function answerFrameworkError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  writer: AuditWriter | undefined,
  clock: Clock,
  format: 'problem' | 'aws-json',
): Promise<void> {
  const send = format === 'aws-json' ? sendAwsError : sendProblem;
  if (writer === undefined) {
    send(error, request, reply);
    return;
  }
  const problem = problemOf(error, request.id);
  request.answeredProblem = { code: problem.code, authenticationFailure: undefined };
  void reply.code(format === 'aws-json' ? awsErrorOf(error, request.id).status : problem.status);
  try {
    await writer.append(auditEventOf(request, reply, writer.replicaId, clock.now(), request.routeOptions.url));
  } catch (auditError) {
    send(auditError, request, reply);
    return;
  }
  send(error, request, reply);
}

/**
 * Every answer waits for its audit record to be committed (group commit), so no data key or plaintext leaves
 * before the record of its release is durable. When the record cannot be committed, the answer is replaced by a
 * 503 problem: fail closed. Liveness and readiness probes and the OpenAPI document (public routes) are not audited.
 */
export function registerAuditHook(app: FastifyInstance, writer: AuditWriter, clock: Clock): void {
  app.decorateRequest('auditedAs', undefined);
  app.addHook('onSend', async (request, reply, payload) => {
    const { config, url } = request.routeOptions;
    if (config?.public === true) return payload;
    try {
      await appendRecords(writer, auditEventOf(request, reply, writer.replicaId, clock.now(), url), request);
      return payload;
    } catch (error) {
      if (config?.awsJsonErrors === true) {
        const answer = awsErrorOf(error, request.id);
        setAwsErrorHeaders(reply, request, answer).removeHeader('etag');
        return answer.body;
      }
      const problem = problemOf(error, request.id);
      void reply
        .code(problem.status)
        .header('content-type', PROBLEM_CONTENT_TYPE)
        .header('retry-after', RETRY_AFTER_SECONDS)
        .removeHeader('etag');
      return JSON.stringify(problem);
    }
  });
}
