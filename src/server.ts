import type { FastifyInstance } from 'fastify';
import { buildApp, createLogger } from './app.js';
import { deriveAuditKeyFromSecret } from './audit/audit-key.js';
import { AuditRepository } from './audit/audit-repository.js';
import { AuditService } from './audit/audit-service.js';
import { systemClock } from './clock.js';
import { StartupError } from './errors.js';
import { PolicyAuthorizer } from './policy/authorizer.js';
import { EMPTY_POLICY_SET } from './policy/evaluate.js';
import { loadRootKey } from './root-key-loader.js';
import { createDatabase, migrationsAreCurrent } from './storage/database.js';
import { RootKeyRepository } from './storage/root-key-repository.js';
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

/**
 * `keyhold audit verify`: walks every audit chain in the configured store with the audit key derived from the
 * configured root key, prints the report as JSON, and resolves to whether every chain is intact.
 */
export async function verifyAuditFromEnvironment(): Promise<boolean> {
  const config = loadConfig(process.env);
  const logger = createLogger({ ...config, logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel });
  const db = createDatabase(config.database, { acquireTimeoutMs: config.databaseTimeoutMs });
  try {
    if (!(await migrationsAreCurrent(db))) throw new StartupError('The store is not migrated; start the server once first');
    const rootKey = await loadRootKey(config.rootKey, new RootKeyRepository(db), systemClock, logger);
    const audit = new AuditService({
      repository: new AuditRepository(db),
      auditKey: await rootKey.deriveKey(deriveAuditKeyFromSecret),
      authorizer: new PolicyAuthorizer(() => EMPTY_POLICY_SET),
      clock: systemClock,
    });
    const report = await audit.verify();
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return report.ok;
  } finally {
    await db.destroy();
  }
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
