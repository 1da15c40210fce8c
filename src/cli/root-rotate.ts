import { createLogger } from '../app.js';
import { loadConfig, type Config } from '../config.js';
import { StartupError } from '../errors.js';
import { systemClock } from '../lib/clock.js';
import { LocalRootKey, type RootKey } from '../root-keys/root-key.js';
import { openPkcs11RootKey, proveConfiguredRootKeys, readRootKeyFile } from '../root-keys/root-key-loader.js';
import { rotateRootKey } from '../root-keys/root-rotation.js';
import { migrationsAreCurrent } from '../storage/database.js';
import { KnexRootKeyRepository } from '../storage/knex-root-key-repository.js';
import { KnexRootRewrapRepository } from '../storage/knex-root-rewrap-repository.js';
import { KnexSystemSecretRepository } from '../storage/knex-system-secret-repository.js';
import { openExistingStore } from './local-store.js';

/** The root key everything moves under: a key file, or a key in the HSM of `KEYHOLD_PKCS11_*`. */
export type NewRootKey = { readonly file: string } | { readonly label: string };

export interface RootRotateOptions {
  readonly newKey: NewRootKey;
  readonly batchSize: number;
  readonly dryRun: boolean;
}

/** Reads or opens the new root key; the option that named it is what messages name. */
function openNewKey(config: Config, newKey: NewRootKey): Promise<RootKey> {
  if ('file' in newKey) return Promise.resolve(new LocalRootKey(readRootKeyFile(newKey.file, '--new-key-file')));
  return openPkcs11RootKey(config.pkcs11, { label: newKey.label, what: '--new-key-label' });
}

/**
 * `keyhold root rotate`: records the new root key (by check value) unless it is recorded, then rewraps every key
 * version and system secret still under another root key, unwrapping with the root key(s) configured in the
 * environment. The new key is a key file or a key in the configured HSM, so a store moves from a file to an HSM, back,
 * or between HSM keys the same way. Progress goes to stderr, the JSON summary to stdout; it resolves to whether
 * nothing is left under another root key. Never prints key material, only public root key ids.
 */
export async function rotateRootKeyFromEnvironment(options: RootRotateOptions): Promise<boolean> {
  const config = loadConfig(process.env);
  const logger = createLogger({ ...config, logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel });
  // Opened before touching the store: a wrong path or label fails without side effects.
  const newKey = await openNewKey(config, options.newKey);
  const flag = 'file' in options.newKey ? '--new-key-file' : '--new-key-label';
  try {
    const db = openExistingStore(config);
    try {
      if (!(await migrationsAreCurrent(db))) throw new StartupError('The store is not migrated; start the server once first');
      const rootKeys = new KnexRootKeyRepository(db);
      const configured = await proveConfiguredRootKeys(config, rootKeys, systemClock, logger);
      try {
        if (newKey.id !== configured.id) {
          process.stderr.write(
            `keyhold root rotate: ${flag} is root key ${newKey.id}, not the configured primary ${configured.id}; every server ` +
              'must hold it (as KEYHOLD_ROOT_KEY_FILE or KEYHOLD_PKCS11_KEY_LABEL) before its keys move under it\n',
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
        await configured.close();
      }
    } finally {
      await db.destroy();
    }
  } finally {
    await newKey.close?.();
  }
}
