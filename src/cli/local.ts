import type { Command } from 'commander';
import { CliError, EXIT } from './exit-codes.js';
import { integer, failUsage } from './command.js';
import type { Io } from './io.js';

// The local commands load the server (fastify, knex, the drivers) only when they run: a remote command starts
// without it, in a fraction of the time.
const DEFAULT_BATCH_SIZE = 500;
const MAX_BATCH_SIZE = 10_000;

/**
 * The commands that run on the server's host, configured by its `KEYHOLD_*` variables (README.md): `server`,
 * `openapi` and `root rotate`. (`audit verify` walks the store locally too; it lives with the audit commands.)
 */
export function registerLocal(program: Command, io: Io): void {
  program
    .command('server')
    .description('run the Keyhold server (configured by KEYHOLD_* environment variables; see README.md)')
    .option('--workers <n>', 'server processes sharing the port, over KEYHOLD_WORKERS (default: the CPUs it may use)', integer('--workers', 1, 1024))
    .action(async (options: { workers?: number }) => {
      const { startServer } = await import('./server.js');
      await startServer({ workers: options.workers });
    });

  program
    .command('openapi')
    .description('print the OpenAPI document generated from the route schemas')
    .action(async () => {
      const { renderOpenApi } = await import('./openapi.js');
      io.stdout.write(await renderOpenApi());
    });

  const root = program.command('root').description('the root key that wraps every key version at rest');
  const rotate = root
    .command('rotate')
    .description(
      'record the new root key (a key file, or a key in the HSM of KEYHOLD_PKCS11_*) and rewrap every key version and ' +
        'the audit key still under another root key, N rows per transaction. It unwraps with the root keys configured ' +
        'as for the server (KEYHOLD_ROOT_KEY[_FILE] or KEYHOLD_ROOT_KEY_PROVIDER=pkcs11, and KEYHOLD_PREVIOUS_ROOT_KEY_FILE ' +
        'or KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL); every server must hold the new key first. Safe to interrupt and run ' +
        'again. Progress goes to stderr, a JSON summary to stdout; exits 0 when nothing is left under another root key.',
    )
    .option('--new-key-file <path>', 'the new root key (base64 of 32 bytes)')
    .option('--new-key-label <label>', 'or the new root key\'s label in the HSM token (keyhold root init-hsm)')
    .option('--batch-size <n>', `rows per transaction, 1 to ${MAX_BATCH_SIZE}`, String(DEFAULT_BATCH_SIZE))
    .option('--dry-run', 'only count what is left to rewrap')
    .action(async (options: { newKeyFile?: string; newKeyLabel?: string; batchSize: string; dryRun?: boolean }) => {
      // The new key first: it is what a bare `root rotate` is missing.
      const { newKeyFile: file, newKeyLabel: label } = options;
      if ((file === undefined || file === '') && (label === undefined || label === '')) {
        failUsage(rotate, 'root rotate needs --new-key-file PATH or --new-key-label LABEL');
      }
      if (file !== undefined && label !== undefined) failUsage(rotate, 'root rotate takes --new-key-file or --new-key-label, not both');
      let batchSize: number;
      try {
        batchSize = integer('--batch-size', 1, MAX_BATCH_SIZE)(options.batchSize);
      } catch (error) {
        failUsage(rotate, (error as Error).message);
      }
      const { rotateRootKeyFromEnvironment } = await import('./root-rotate.js');
      const newKey = file !== undefined && file !== '' ? { file } : { label: label! };
      const done = await rotateRootKeyFromEnvironment({ newKey, batchSize, dryRun: options.dryRun === true });
      if (!done) {
        throw new CliError('KH_CLI_ROOT_ROTATE_INCOMPLETE', 'some key versions or secrets are still under another root key (see the summary)', EXIT.failure);
      }
    });

  root
    .command('init-hsm')
    .description(
      'generate the root key inside the HSM token of KEYHOLD_PKCS11_LIBRARY, _TOKEN_LABEL and _PIN[_FILE]: an AES-256 ' +
        'token object, sensitive and not extractable, that only encrypts and decrypts. Refuses a label the token holds ' +
        'already. Prints {"rootKeyId", "keyLabel", "tokenLabel"}; the store records the key when a server starts on it ' +
        'or `root rotate --new-key-label` moves the store under it.',
    )
    .option('--label <label>', 'the key\'s label (default: $KEYHOLD_PKCS11_KEY_LABEL)')
    .action(async (options: { label?: string }) => {
      const { initHsmFromEnvironment } = await import('./root-init-hsm.js');
      await initHsmFromEnvironment(options.label);
    });
}
