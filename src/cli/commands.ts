import type { FastifyInstance } from 'fastify';
import { buildApp, createLogger } from '../app.js';
import { KnexAuditRepository } from '../storage/knex-audit-repository.js';
import { readWitness, verifyAuditFile } from '../audit/audit-file.js';
import { AuditService, type VerificationReport } from '../audit/audit-service.js';
import { systemClock } from '../lib/clock.js';
import { StartupError } from '../errors.js';
import { PolicyAuthorizer } from '../policy/authorizer.js';
import { EMPTY_POLICY_SET } from '../policy/evaluate.js';
import { stdoutLogDestination, type LogDestination } from '../lib/log-destination.js';
import { loadAuditKey, loadRootKeyring, proveConfiguredRootKeys, readRootKeyFile } from '../root-keys/root-key-loader.js';
import { rotateRootKey } from '../root-keys/root-rotation.js';
import { createDatabase, migrationsAreCurrent } from '../storage/database.js';
import { KnexRootKeyRepository } from '../storage/knex-root-key-repository.js';
import { KnexRootRewrapRepository } from '../storage/knex-root-rewrap-repository.js';
import { KnexSystemSecretRepository } from '../storage/knex-system-secret-repository.js';
import { loadConfig, type Config } from '../config.js';
import { LocalRootKey } from '../root-keys/root-key.js';
import { SecretBytes } from '../crypto/secret-bytes.js';

/** The only place that reads `process.env` and listens. */
export async function startServer(): Promise<FastifyInstance> {
  const config = loadConfig(process.env);
  const logDestination = stdoutLogDestination();
  const app = await buildApp(config, { logStream: logDestination });
  const generated = app.keyhold.generatedAdminToken;
  if (generated !== undefined && process.stdout.isTTY === true) {
    // Printed once, straight to the terminal and never through the logger, so it cannot land in log storage.
    process.stdout.write(
      `\n  Keyhold generated the first admin token. It is shown once, and saved (mode 0600) to ${generated.path}:\n\n` +
        `    ${generated.token}\n\n`,
    );
  } else if (generated !== undefined) {
    // Anything but a terminal (a container's stdout above all) is a log pipeline: only the file holds the token.
    app.log.warn({ path: generated.path }, 'generated the first admin token into this file (mode 0600); it is not printed, since stdout is not a terminal');
  }
  const address = await app.listen({ host: config.host, port: config.port });
  // Before the line that tells an orchestrator (or a test) the server is up: a SIGTERM that follows it must find the
  // handler, or the default action kills the process with its audit chain unsealed.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => shutDown(app, logDestination, signal, config.shutdownTimeoutMs));
  process.stdout.write(`Keyhold listening on ${address}\n`);
  return app;
}

let shuttingDown = false;

/**
 * Stops listening, lets the requests in flight finish (their audit records are committed before they are answered),
 * flushes the audit writer and closes the pool (`app.close()` runs the close hooks), waits for its log lines to be
 * written, and exits 0. An orchestrator sends SIGTERM on every rollout and SIGKILL after its grace period, so a
 * shutdown that cannot finish within `timeoutMs` exits 1 on its own, and says so, rather than hang until it is
 * killed. Nothing runs at exit that could outlast the bound: the log destination has no exit-time flush.
 */
function shutDown(app: FastifyInstance, logs: LogDestination, signal: NodeJS.Signals, timeoutMs: number): void {
  if (shuttingDown) return;
  shuttingDown = true;
  app.log.info({ signal, timeoutMs }, 'shutting down');
  const started = performance.now();
  setTimeout(() => {
    app.log.error({ timeoutMs }, 'shutdown did not finish in time; exiting with requests still in flight');
    process.exit(1);
  }, timeoutMs).unref();
  app.close().then(
    () => {
      app.log.info({ ms: Math.round(performance.now() - started) }, 'shut down');
      void logs.settled().then(() => process.exit(0));
    },
    (error: unknown) => {
      app.log.error({ err: error }, 'shutdown failed');
      void logs.settled().then(() => process.exit(1));
    },
  );
}

export interface AuditVerifyOptions {
  /** `--witness FILE`: check the database against the latest head statement per chain in this JSON-lines file. */
  readonly witnessFile?: string | undefined;
  /** `--file FILE`: verify this shipped JSON-lines file on its own; no audit table is read. */
  readonly file?: string | undefined;
  /** `--accept-unsealed`: chains that may have ended without a seal (crashes accounted for), or `all`. */
  readonly acceptUnsealed?: 'all' | ReadonlySet<string> | undefined;
}

/**
 * `keyhold audit verify`: walks every audit chain in the configured store (or, with `file`, in a shipped JSON-lines
 * file) with the stored audit key, unwrapped under the configured root key(s), prints the report as JSON, and
 * resolves to whether every chain is intact and none ended without a seal unless accepted. The audit key is kept
 * only in the store, wrapped, so even the offline check reads it from there; it reads no audit table then.
 */
export async function verifyAuditFromEnvironment(options: AuditVerifyOptions = {}): Promise<boolean> {
  const config = loadConfig(process.env);
  const logger = createLogger({ ...config, logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel });
  const db = createDatabase(config.database, { acquireTimeoutMs: config.databaseTimeoutMs });
  try {
    if (!(await migrationsAreCurrent(db))) throw new StartupError('The store is not migrated; start the server once first');
    const rootKeys = new KnexRootKeyRepository(db);
    const keyring = await loadRootKeyring(config.rootKey, config.previousRootKeyFile, rootKeys, systemClock, logger);
    const auditKey = await loadAuditKey(keyring, rootKeys, new KnexSystemSecretRepository(db), systemClock);
    let report: VerificationReport;
    if (options.file !== undefined) {
      report = await verifyAuditFile(options.file, { auditKey, now: systemClock.now(), acceptUnsealed: options.acceptUnsealed });
    } else {
      const audit = new AuditService({
        repository: new KnexAuditRepository(db),
        auditKey,
        authorizer: new PolicyAuthorizer(() => EMPTY_POLICY_SET),
        clock: systemClock,
      });
      const witness = options.witnessFile === undefined ? undefined : await readWitness(options.witnessFile);
      report = await audit.verify({ witness, acceptUnsealed: options.acceptUnsealed });
    }
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return report.ok;
  } finally {
    await db.destroy();
  }
}

export interface RootRotateOptions {
  readonly newKeyFile: string;
  readonly batchSize: number;
  readonly dryRun: boolean;
}

/**
 * `keyhold root rotate`: records the new root key (by check value) unless it is recorded, then rewraps every key
 * version and system secret still under another root key, unwrapping with the root key(s) configured in the
 * environment. Progress goes to stderr, the JSON summary to stdout; it resolves to whether nothing is left under
 * another root key. Never prints key material, only public root key ids.
 */
export async function rotateRootKeyFromEnvironment(options: RootRotateOptions): Promise<boolean> {
  const config = loadConfig(process.env);
  const logger = createLogger({ ...config, logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel });
  // Read before touching the store: a wrong path fails without side effects.
  const newKey = new LocalRootKey(readRootKeyFile(options.newKeyFile, '--new-key-file'));
  const db = createDatabase(config.database, { acquireTimeoutMs: config.databaseTimeoutMs });
  try {
    if (!(await migrationsAreCurrent(db))) throw new StartupError('The store is not migrated; start the server once first');
    const rootKeys = new KnexRootKeyRepository(db);
    const configured = await proveConfiguredRootKeys(config.rootKey, config.previousRootKeyFile, rootKeys, systemClock, logger);
    if (newKey.id !== configured.id) {
      process.stderr.write(
        `keyhold root rotate: --new-key-file is root key ${newKey.id}, not the configured primary ${configured.id}; ` +
          'every server must hold it (as KEYHOLD_ROOT_KEY_FILE) before its keys move under it\n',
      );
    }
    const summary = await rotateRootKey({
      rootKeys,
      secrets: new KnexSystemSecretRepository(db),
      rewrap: new KnexRootRewrapRepository(db),
      configured,
      newKey,
      clock: systemClock,
      batchSize: options.batchSize,
      dryRun: options.dryRun,
      onProgress: ({ rewrapped, remaining }) =>
        process.stderr.write(`keyhold root rotate: rewrapped ${rewrapped}, ${remaining} remaining\n`),
    });
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return summary.remaining === 0;
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
