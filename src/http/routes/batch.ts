import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Services } from '../../services.js';
import { problemOf } from '../plugins/problem.js';
import { AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, json, problems } from '../schemas/common.js';
import { BatchBody, BatchResult } from '../schemas/batch.js';
import { dataKeyView, decryptView } from '../views.js';

export function batchRoutes(services: Pick<Services, 'batch'>): FastifyPluginAsyncTypebox {
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
          // An item's refusal is in its own result; only an unexpected error fails the whole request.
          ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS),
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
