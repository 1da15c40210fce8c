import { createLogger } from '../app.js';
import type { SecretBytes } from '../crypto/secret-bytes.js';
import { readWitness, verifyAuditFile } from '../audit/audit-file.js';
import { KnexAuditRepository } from '../storage/knex-audit-repository.js';
import { AuditLog, type VerificationReport } from '../audit/audit-log.js';
import { loadConfig } from '../config.js';
import { StartupError } from '../errors.js';
import { systemClock } from '../lib/clock.js';
import { loadAuditKey, loadRootKeyring } from '../root-keys/root-key-loader.js';
import { migrationsAreCurrent } from '../storage/database.js';
import { KnexRootKeyRepository } from '../storage/knex-root-key-repository.js';
import { KnexSystemSecretRepository } from '../storage/knex-system-secret-repository.js';
import { openExistingStore } from './local-store.js';

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
  const db = openExistingStore(config);
  try {
    if (!(await migrationsAreCurrent(db))) throw new StartupError('The store is not migrated; start the server once first');
    const rootKeys = new KnexRootKeyRepository(db);
    const keyring = await loadRootKeyring(config, rootKeys, systemClock, logger);
    let auditKey: SecretBytes;
    try {
      auditKey = await loadAuditKey(keyring, rootKeys, new KnexSystemSecretRepository(db), systemClock);
    } finally {
      await keyring.close();
    }
    let report: VerificationReport;
    if (options.file !== undefined) {
      report = await verifyAuditFile(options.file, { auditKey, now: systemClock.now(), acceptUnsealed: options.acceptUnsealed });
    } else {
      const audit = new AuditLog({ repository: new KnexAuditRepository(db), auditKey, clock: systemClock });
      const witness = options.witnessFile === undefined ? undefined : await readWitness(options.witnessFile);
      report = await audit.verify({ witness, acceptUnsealed: options.acceptUnsealed });
    }
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return report.ok;
  } finally {
    await db.destroy();
  }
}
