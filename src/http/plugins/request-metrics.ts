import type { FastifyInstance, onResponseHookHandler } from 'fastify';

/** Counts one route's answers; made once per route, so a request costs no label lookup of its own. */
export interface RouteObserver {
  /** `code` is the problem code answered, undefined for a success or an answer that is not a problem. */
  answered(statusCode: number, code: string | undefined, seconds: number): void;
}

/** The HTTP side of the metrics, implemented by the metrics module (`src/metrics/`). */
export interface HttpMetrics {
  /** The observer of a route pattern (`/v1/keys/:name`, never a URL); `undefined` for requests no route matched. */
  route(method: string, route: string | undefined): RouteObserver;
  /** Reads how many event streams are open, at each scrape. */
  watchEventStreams(open: () => number): void;
}

/**
 * Observes every answer's route, status, problem code and latency. Each route gets its own `onResponse` hook bound to
 * its observer when it is registered, so the hook reads neither the route options (which fastify builds afresh on
 * every read) nor any table; requests no route matched share one. Register before the routes.
 */
export function registerRequestMetrics(app: FastifyInstance, metrics: HttpMetrics): void {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      const observer = metrics.route(method, route.url);
      const hook: onResponseHookHandler = (request, reply, done) => {
        if (request.method === method) observer.answered(reply.statusCode, request.answeredProblem?.code, reply.elapsedTime / 1000);
        done();
      };
      const existing = route.onResponse;
      route.onResponse = existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook];
    }
  });
  const unmatched = metrics.route('*', undefined);
  app.addHook('onResponse', (request, reply, done) => {
    if (request.is404) unmatched.answered(reply.statusCode, request.answeredProblem?.code, reply.elapsedTime / 1000);
    done();
  });
}
