import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Services } from '../../services.js';
import { AUTHENTICATED_PROBLEMS, json, problems } from '../schemas/common.js';
import { Health, Readiness, Whoami } from '../schemas/system.js';

export function systemRoutes(services: Pick<Services, 'readiness'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/healthz', {
      config: { public: true },
      schema: {
        operationId: 'health',
        summary: 'Liveness: the process answers.',
        tags: ['system'],
        response: { 200: json(Health, 'Alive.') },
      },
    }, async () => ({ status: 'ok' as const }));

    app.get('/readyz', {
      config: { public: true },
      schema: {
        operationId: 'readiness',
        summary: 'Readiness: the database answers, the root key is loaded and migrations are current.',
        tags: ['system'],
        response: { 200: json(Readiness, 'Ready.'), 503: json(Readiness, 'Not ready; the checks say why.') },
      },
    }, async (_request, reply) => {
      const checks = await services.readiness();
      const ready = checks.database && checks.rootKey && checks.migrations;
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', checks });
    });

    app.get('/v1/whoami', {
      schema: {
        operationId: 'whoami',
        summary: 'The calling principal and its attributes.',
        tags: ['system'],
        response: { 200: json(Whoami, 'The caller.'), ...problems(AUTHENTICATED_PROBLEMS) },
      },
    }, async (request) => request.caller.principal);
  };
}
