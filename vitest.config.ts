import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'sdk/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // vitest's default is one worker fewer than the cores: a single worker on a 2-core machine, which then spends
    // the soak test's minute and every wait on PostgreSQL or a child process idle. Two overlap those waits.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    minWorkers: 1,
    // A worker runs file after file without loading fastify, knex and the app's modules again for each (about a
    // second of CPU per file; a third of the suite's CPU time on 2 cores). Test files share no state through
    // modules: spies are restored after each test, and stores and apps are made per test or per file.
    isolate: false,
    setupFiles: ['test/setup/share-schema-compilers.ts'],
  },
});
