import { parseArgs } from 'node:util';
import { createLogger } from '../app.js';
import { loadConfig } from '../config.js';
import { StartupError } from '../errors.js';
import { systemClock } from '../lib/clock.js';
import { LocalRootKey } from '../root-keys/root-key.js';
import { proveConfiguredRootKeys, readRootKeyFile } from '../root-keys/root-key-loader.js';
import { rotateRootKey } from '../root-keys/root-rotation.js';
import { createDatabase, migrationsAreCurrent } from '../storage/database.js';
import { KnexRootKeyRepository } from '../storage/knex-root-key-repository.js';
import { KnexRootRewrapRepository } from '../storage/knex-root-rewrap-repository.js';
import { KnexSystemSecretRepository } from '../storage/knex-system-secret-repository.js';
import { usageError } from './usage.js';

const DEFAULT_BATCH_SIZE = 500;
const MAX_BATCH_SIZE = 10_000;

/** `keyhold root rotate --new-key-file PATH [--batch-size N] [--dry-run]` */
export async function rootCommand(args: string[]): Promise<void> {
  if (args[0] !== 'rotate') {
    usageError(`Unknown root command: ${args[0] ?? '(none)'}`);
    return;
  }
  let values: { 'new-key-file'?: string; 'batch-size'?: string; 'dry-run'?: boolean };
  try {
    ({ values } = parseArgs({
      args: args.slice(1),
      options: {
        'new-key-file': { type: 'string' },
        'batch-size': { type: 'string' },
        'dry-run': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    usageError((error as Error).message);
    return;
  }
  const newKeyFile = values['new-key-file'];
  if (newKeyFile === undefined || newKeyFile === '') {
    usageError('root rotate needs --new-key-file PATH');
    return;
  }
  const batchText = values['batch-size'] ?? String(DEFAULT_BATCH_SIZE);
  const batchSize = Number(batchText);
  if (!/^\d+$/.test(batchText) || batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
    usageError(`--batch-size must be an integer from 1 to ${MAX_BATCH_SIZE}`);
    return;
  }
  const done = await rotateRootKeyFromEnvironment({ newKeyFile, batchSize, dryRun: values['dry-run'] === true });
  process.exitCode = done ? 0 : 1;
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
