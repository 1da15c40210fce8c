import type { FastifyInstance } from 'fastify';

/**
 * Logs, at `warn`, every answer sent later than `thresholdMs` after its request arrived: the one request line the
 * application log keeps when the access log is off (`KEYHOLD_ACCESS_LOG`, default off; the audit log records every
 * request). It names the request id, so the line leads to its audit record. A request costs one comparison.
 */
export function registerSlowRequestLog(app: FastifyInstance, thresholdMs: number): void {
  app.addHook('onResponse', (request, reply, done) => {
    const ms = reply.elapsedTime;
    if (ms > thresholdMs) {
      request.log.warn(
        {
          requestId: request.id,
          method: request.method,
          // The route pattern, never the URL: a path may carry names the log need not hold, and a query, values.
          route: request.routeOptions.url ?? 'unmatched',
          statusCode: reply.statusCode,
          ms: Math.round(ms),
          thresholdMs,
        },
        'slow request',
      );
    }
    done();
  });
}
