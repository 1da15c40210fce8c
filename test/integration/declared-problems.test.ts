import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { KeyholdError, type ErrorCode } from '../../src/errors.js';
import { registerProblemHandlers } from '../../src/http/plugins/problem.js';
import { Problem, problems } from '../../src/http/schemas/common.js';
import { takeUndeclaredProblems } from '../helpers/declared-problems.js';

/** The check the test helpers run on every app: it must catch a problem a route does not declare. */
describe('the declared-problems check', () => {
  let app: FastifyInstance | undefined;

  afterEach(async () => {
    await app?.close();
    takeUndeclaredProblems();
  });

  async function answering(code: ErrorCode): Promise<void> {
    app = Fastify();
    registerProblemHandlers(app);
    app.addSchema(Problem);
    app.get('/thing', { schema: { response: { 200: { type: 'null' }, ...problems('KH_ERR_KEY_NOT_FOUND') } } }, async () => {
      throw new KeyholdError(code);
    });
    await app.inject({ method: 'GET', url: '/thing' });
  }

  it('records a problem code the route does not declare for its status', async () => {
    await answering('KH_ERR_POLICY_NOT_FOUND');
    expect(takeUndeclaredProblems()).toEqual([{ route: 'GET /thing', status: 404, code: 'KH_ERR_POLICY_NOT_FOUND' }]);
  });

  it('records a status the route declares no problems for', async () => {
    await answering('KH_ERR_FORBIDDEN');
    expect(takeUndeclaredProblems()).toEqual([{ route: 'GET /thing', status: 403, code: 'KH_ERR_FORBIDDEN' }]);
  });

  it('accepts a declared code', async () => {
    await answering('KH_ERR_KEY_NOT_FOUND');
    expect(takeUndeclaredProblems()).toEqual([]);
  });
});
