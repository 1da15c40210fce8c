import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Services } from '../../compose.js';
import { problemOf } from '../plugins/problem.js';
import { json, problems } from '../schemas/common.js';
import { BatchBody, BatchResult } from '../schemas/batch.js';
import { dataKeyView, decryptView } from '../views.js';

export function batchRoutes(services: Services): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post('/v1/batch', {
      schema: {
        operationId: 'batch',
        summary: 'Run up to 1000 datakey, encrypt, decrypt and rewrap operations; 207 when any item failed.',
        tags: ['crypto'],
        body: BatchBody,
        response: {
          200: json(BatchResult, 'Every item succeeded.'),
          207: json(BatchResult, 'Some items failed; each result carries its own status and problem.'),
          ...problems(400, 401, 413, 415, 503),
        },
      },
    }, async (request, reply) => {
      const outcomes = await services.batch.run(request.caller, request.body.items);
      const results = outcomes.map((outcome) => {
        if (!outcome.ok) {
          const problem = problemOf(outcome.error, request.id);
          return { status: problem.status, problem };
        }
        if (outcome.op === 'datakey') return { status: 200, result: dataKeyView(outcome.result) };
        if (outcome.op === 'decrypt') return { status: 200, result: decryptView(outcome.result) };
        return { status: 200, result: outcome.result };
      });
      return reply.code(outcomes.every((outcome) => outcome.ok) ? 200 : 207).send({ results });
    });
  };
}
