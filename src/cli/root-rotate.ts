import { createLogger } from '../app.js';
import { loadConfig } from '../config.js';
import { StartupError } from '../errors.js';
import { systemClock } from '../lib/clock.js';
import { LocalRootKey } from '../root-keys/root-key.js';
import { proveConfiguredRootKeys, readRootKeyFile } from '../root-keys/root-key-loader.js';
import { rotateRootKey } from '../root-keys/root-rotation.js';
import { migrationsAreCurrent } from '../storage/database.js';
import { KnexRootKeyRepository } from '../storage/knex-root-key-repository.js';
import { KnexRootRewrapRepository } from '../storage/knex-root-rewrap-repository.js';
import { KnexSystemSecretRepository } from '../storage/knex-system-secret-repository.js';
import { openExistingStore } from './local-store.js';

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
  const db = openExistingStore(config);
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
