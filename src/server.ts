import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { loadConfig, type Config } from './config.js';
import { SecretBytes } from './crypto/secret-bytes.js';

/** The only place that reads `process.env` and listens. */
export async function startServer(): Promise<FastifyInstance> {
  const config = loadConfig(process.env);
  const app = await buildApp(config);
  const generated = app.keyhold.generatedAdminToken;
  if (generated !== undefined) {
    // Printed once, straight to the terminal and never through the logger, so it cannot land in log storage.
    process.stdout.write(
      `\n  Keyhold generated the first admin token. It is shown once, and saved (mode 0600) to ${generated.path}:\n\n` +
        `    ${generated.token}\n\n`,
    );
  }
  const address = await app.listen({ host: config.host, port: config.port });
  process.stdout.write(`Keyhold listening on ${address}\n`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      app.log.info({ signal }, 'shutting down');
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
  return app;
}

/** Builds the app on a throwaway in-memory store, only to print the OpenAPI document. */
export async function renderOpenApi(): Promise<string> {
  const config: Config = {
    ...loadConfig({ KEYHOLD_DATABASE_URL: 'sqlite::memory:', KEYHOLD_LOG_LEVEL: 'silent' }),
    rootKey: { kind: 'inline', key: SecretBytes.random(32) },
  };
  const app = await buildApp(config, { sweeper: false });
  try {
    await app.ready();
    return app.swagger({ yaml: true });
  } finally {
    await app.close();
  }
}
