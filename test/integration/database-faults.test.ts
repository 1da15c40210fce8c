import knexFactory from 'knex';
import { describe, expect, it } from 'vitest';
import { buildTestApp, DATABASE_KINDS } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

describe.runIf(DATABASE_KINDS.includes('postgres'))('database faults [postgres]', () => {
  it('a key row locked by a stuck transaction gives 503 with Retry-After, not a hung request', async () => {
    const t = await buildTestApp('postgres', { env: { KEYHOLD_DATABASE_TIMEOUT_MS: '300' } });
    const other = knexFactory({ client: 'pg', connection: process.env.KEYHOLD_TEST_DATABASE_URL, searchPath: [t.store.schema] });
    try {
      await t.call('POST', '/v1/keys', { name: 'stuck' });
      const trx = await other.transaction();
      await trx('keys').where({ name: 'stuck' }).forUpdate().first();
      const response = await t.call('POST', '/v1/keys/stuck/rotate');
      expectProblem(response, 503, 'KH_ERR_UNAVAILABLE');
      expect(response.headers['retry-after']).toBeDefined();
      await trx.rollback();
      expect((await t.call('POST', '/v1/keys/stuck/rotate')).status).toBe(200);
    } finally {
      await other.destroy();
      await t.close();
    }
  });
});
