import type { FastifyRequest } from 'fastify';

/**
 * For POSTs whose body fields are all optional (state changes, datakey): a missing or empty body is the same as
 * `{}`; anything else is validated as usual.
 */
export function defaultEmptyBody(request: FastifyRequest, _reply: unknown, done: () => void): void {
  if (request.body === undefined || request.body === null) request.body = {};
  done();
}
