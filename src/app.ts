import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { TlsOptions } from 'node:tls';
import pino, { type DestinationStream, type Logger } from 'pino';
import { systemClock, type Clock } from './lib/clock.js';
import type { Config } from './config.js';
import { answerFrameworkError, registerAuditHook } from './http/plugins/audit-hook.js';
import { registerAuthentication } from './http/plugins/authentication.js';
import { registerJsonBodyParser } from './http/plugins/json-body.js';
import { MIN_CHANGE_WAIT_MS, registerMinChange } from './http/plugins/min-change.js';
import { registerProblemHandlers } from './http/plugins/problem.js';
import { registerRequestMetrics, type HttpMetrics } from './http/plugins/request-metrics.js';
import { registerSlowRequestLog } from './http/plugins/slow-requests.js';
import { SHARED_SCHEMAS } from './http/schemas/components.js';
import { auditRoutes } from './http/routes/audit.js';
import { awsKmsRoutes } from './http/routes/aws-kms.js';
import { sendAwsError } from './http/plugins/aws-json.js';
import { batchRoutes } from './http/routes/batch.js';
import { cryptoRoutes } from './http/routes/crypto.js';
import { eventRoutes } from './http/routes/events.js';
import { keyRoutes } from './http/routes/keys.js';
import { policyRoutes } from './http/routes/policies.js';
import { systemRoutes } from './http/routes/system.js';
import { tokenRoutes } from './http/routes/tokens.js';
import { awsCredentialRoutes } from './http/routes/aws-credentials.js';
import { uiRoutes } from './http/routes/ui.js';
import type { Services } from './services.js';

export const BODY_LIMIT_BYTES = 1024 * 1024;
const MAX_HEADER_BYTES = 32 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Pino redaction for everything secret that could reach a log line. Request bodies are never logged; these paths
 * catch headers and any object that carries key material or tokens.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  '*.plaintext',
  '*.token',
  '*.ciphertext',
  '*.secret',
  '*.secretAccessKey',
  '*.rootKey',
  'plaintext',
  'token',
  'secretAccessKey',
];

export interface AppOptions {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** The server's TLS options, read by the caller (`tlsServerOptions`) before it opened anything; plain HTTP without. */
  readonly tls?: TlsOptions;
  /** Observes every answer and the open event streams; served by the metrics listener, never by this app. */
  readonly metrics?: HttpMetrics | undefined;
  /** Where the AWS-KMS-compatible endpoint answers on this app, when `services.awsKms` is set. */
  readonly awsKmsPath?: string | undefined;
  /**
   * A log line for every request and its answer (`KEYHOLD_ACCESS_LOG=on`). Default off: the audit log records every
   * request durably, and a line per request on stdout cost about a quarter of the throughput (bench/README.md).
   */
  readonly accessLog?: boolean;
  /** Answers later than this many milliseconds are logged at warn (`KEYHOLD_SLOW_REQUEST_MS`); undefined logs none. */
  readonly slowRequestMs?: number | undefined;
}

export function createLogger(config: Config, stream?: DestinationStream): Logger {
  const options = { level: config.logLevel, redact: { paths: REDACT_PATHS, censor: '[REDACTED]' } };
  return stream === undefined ? pino(options) : pino(options, stream);
}

/**
 * A fastify instance with what every listener of the API shares: limits, request ids, problem answers, request
 * metrics, the audit hook and the JSON body parser. Routes come after.
 */
function createServer(services: Services, options: AppOptions, errorFormat: 'problem' | 'aws-json' = 'problem') {
  const clock = options.clock ?? systemClock;
  const { logger } = options;
  const tlsOptions = options.tls;

  const accessLog = options.accessLog === true;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Errors (5xx, in problem.ts), slow answers and start-up stay in the log either way.
    logController: new LogController({ disableRequestLogging: !accessLog }),
    // A child logger per request pays off only when request lines are logged (the access log, at info and below).
    // Otherwise requests share the root logger, and the few lines they write name the request id themselves.
    childLoggerFactory: (parent, bindings, options) =>
      accessLog && (parent as Logger).isLevelEnabled('info') ? parent.child(bindings, options) : parent,
    bodyLimit: BODY_LIMIT_BYTES,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    genReqId: (request) => {
      const incoming = request.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    requestTimeout: 30_000,
    // Node's default 16 KiB would answer an oversized credential with a bare 431; this leaves room for the
    // authentication hook to refuse it as a 401 problem, while still bounding what a connection may send.
    ...(tlsOptions === undefined
      ? { http: { maxHeaderSize: MAX_HEADER_BYTES } }
      : { https: { ...tlsOptions, maxHeaderSize: MAX_HEADER_BYTES } }),
    // Errors fastify raises before routing (a malformed URL, say) are answered as the port's other errors are, and
    // audited: they are answered on a context without the onSend hooks.
    frameworkErrors: (error, request, reply) => {
      void answerFrameworkError(error, request as FastifyRequest, reply as unknown as FastifyReply, services.auditWriter, clock, errorFormat);
    },
    // Key names may be 128 characters; fastify's default bound on a path parameter is 100.
    routerOptions: { maxParamLength: 512 },
    ajv: {
      // Unknown fields are refused, not silently dropped; types are not coerced.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    done();
  });
  // Fastify ends the connections that are idle when close() starts, but one busy then would stay open for keep-alive
  // after its answer and hold the shutdown open until keepAliveTimeout. Node reads that timeout each time a
  // connection falls idle, so shortening it now ends each connection right after its last answer, at no cost per
  // request.
  app.addHook('preClose', async () => {
    app.server.keepAliveTimeout = 1;
  });

  // On the AWS endpoint's own port only AWS clients call: errors outside its route are in AWS's shape too.
  if (errorFormat === 'problem') registerProblemHandlers(app);
  else registerProblemHandlers(app, sendAwsError);
  // Before any route: each route gets its observer as it is registered.
  if (options.metrics !== undefined) registerRequestMetrics(app, options.metrics);
  if (options.slowRequestMs !== undefined) registerSlowRequestLog(app, options.slowRequestMs);
  if (services.auditWriter !== undefined) registerAuditHook(app, services.auditWriter, clock);
  registerJsonBodyParser(app);
  return app;
}

/**
 * Builds the HTTP application over the services: routes, hooks and the OpenAPI document. It opens nothing (the
 * composition root in `compose.ts` does) and nothing listens here (`cli/server.ts` does). Closing the app closes
 * no service either; whoever opened them closes them after it.
 */
export async function buildApp(services: Services, options: AppOptions): Promise<FastifyInstance> {
  const app = createServer(services, options);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Keyhold',
        version: '1',
        description:
          'Key management for container workloads: envelope-encryption keys, data keys, rotation and revocation. ' +
          'Any authenticated request may carry `Keyhold-Min-Change: <seq>`, a change sequence such as the last `GET /v1/events` ' +
          `event id: a replica that has not applied it yet catches up first (up to ${MIN_CHANGE_WAIT_MS / 1000} s), or answers 503 KH_ERR_UNAVAILABLE ` +
          'rather than from older state. A sequence beyond the latest change is satisfied once the replica has caught up; ' +
          'a malformed one is 400 KH_ERR_VALIDATION.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API token.' } },
      },
      security: [{ bearer: [] }],
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, index) => (typeof json.$id === 'string' ? json.$id : `def-${index}`),
    },
    transform: ({ schema, url, route }) => {
      const transformed = { ...schema } as Record<string, unknown>;
      if (route.config?.public === true) transformed.security = [];
      return { schema: transformed as typeof schema, url };
    },
  });
  registerAuthentication(app, {
    authenticators: services.authenticators,
    // Admins bypass policies, so only workloads wait for a stale policy set to be read again.
    beforeHandling: (principal) => (principal.admin ? undefined : services.policyStore.ensureFresh()),
  });
  registerMinChange(app, {
    barrier: services.changes,
    // The catch-up may have invalidated the policy set that authentication just made sure of.
    afterCatchUp: (principal) => (principal.admin ? undefined : services.policyStore.ensureFresh()),
  });
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);

  await app.register(systemRoutes(services));
  await app.register(keyRoutes(services));
  await app.register(cryptoRoutes(services));
  await app.register(batchRoutes(services));
  await app.register(tokenRoutes(services));
  await app.register(awsCredentialRoutes(services));
  await app.register(policyRoutes(services));
  await app.register(auditRoutes(services));
  await app.register(eventRoutes(services, options.metrics));
  // The console: static files, public like /healthz; every API call it makes carries the user's bearer token.
  await app.register(uiRoutes());
  if (services.awsKms !== undefined && options.awsKmsPath !== undefined) {
    await app.register(awsKmsRoutes({ awsKms: services.awsKms, policyStore: services.policyStore }, options.awsKmsPath));
  }

  app.get('/openapi.yaml', {
    config: { public: true },
    schema: { hide: true },
  }, async (_request, reply) => reply.type('application/yaml').send(app.swagger({ yaml: true })));

  return app;
}

/**
 * The AWS-KMS-compatible endpoint alone, at `/`, for a port of its own (`KEYHOLD_AWS_KMS_PORT`): the same services,
 * audit and limits as the API, and nothing else of it.
 */
export async function buildAwsKmsApp(services: Services, options: AppOptions): Promise<FastifyInstance> {
  if (services.awsKms === undefined) throw new Error('The AWS KMS endpoint is off');
  const app = createServer(services, options, 'aws-json');
  await app.register(awsKmsRoutes({ awsKms: services.awsKms, policyStore: services.policyStore }, '/'));
  return app;
}
