#!/usr/bin/env node
import { StartupError } from './errors.js';
import { parseArgs } from 'node:util';
import { renderOpenApi, rotateRootKeyFromEnvironment, startServer, verifyAuditFromEnvironment } from './cli/commands.js';

const USAGE = `Usage: keyhold <command>

Commands:
  server    Run the Keyhold server (configured by KEYHOLD_* environment variables; see README.md).
  openapi   Print the OpenAPI document generated from the route schemas.
  audit verify [--witness FILE | --file FILE] [--accept-unsealed REPLICA_ID|all]...
            Walk every audit chain in the configured store and report, per replica, the first missing or
            altered record, and whether the chain is sealed (its process shut down cleanly), live, or ended
            without a seal (a crash, or a cut tail). --witness checks the store against the latest head
            statement per chain in a KEYHOLD_AUDIT_FILE kept off the host. --file verifies such a file on its
            own (the audit key still comes from the store). Exits 0 when every chain is intact and none ended
            without a seal, except those named by --accept-unsealed (repeatable; all accepts every one); 1
            otherwise.
  root rotate --new-key-file PATH [--batch-size N] [--dry-run]
            Record the root key in PATH and rewrap every key version and the audit key still wrapped under
            another root key, N rows per transaction (default 500). It unwraps with the root keys configured as
            for the server (KEYHOLD_ROOT_KEY[_FILE], KEYHOLD_PREVIOUS_ROOT_KEY_FILE). Every server must hold the
            new key before this runs. Safe to interrupt and to run again; progress goes to stderr and a JSON
            summary to stdout. Exits 0 when nothing is left under another root key, 1 otherwise. --dry-run
            only counts.
`;

const DEFAULT_BATCH_SIZE = 500;
const MAX_BATCH_SIZE = 10_000;

function usageError(message: string): void {
  process.stderr.write(`${message}\n\n${USAGE}`);
  process.exitCode = 2;
}

async function rootCommand(args: string[]): Promise<void> {
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

async function auditCommand(args: string[]): Promise<void> {
  if (args[0] !== 'verify') {
    usageError(`Unknown audit command: ${args[0] ?? '(none)'}`);
    return;
  }
  let values: { witness?: string; file?: string; 'accept-unsealed'?: string[] };
  try {
    ({ values } = parseArgs({
      args: args.slice(1),
      options: {
        witness: { type: 'string' },
        file: { type: 'string' },
        'accept-unsealed': { type: 'string', multiple: true },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    usageError((error as Error).message);
    return;
  }
  const { witness, file } = values;
  if (witness === '' || file === '') {
    usageError('--witness and --file need a path');
    return;
  }
  if (witness !== undefined && file !== undefined) {
    usageError('--witness checks the store against a file, --file checks a file alone: give one of them');
    return;
  }
  const accepted = values['accept-unsealed'] ?? [];
  if (accepted.some((replicaId) => replicaId === '')) {
    usageError('--accept-unsealed needs a replica id, or all');
    return;
  }
  const acceptUnsealed = accepted.includes('all') ? 'all' : new Set(accepted);
  process.exitCode = (await verifyAuditFromEnvironment({ witnessFile: witness, file, acceptUnsealed })) ? 0 : 1;
}

async function main(argv: string[]): Promise<void> {
  const [command] = argv;
  switch (command) {
    case 'server':
      await startServer();
      return;
    case 'openapi':
      process.stdout.write(await renderOpenApi());
      return;
    case 'root':
      await rootCommand(argv.slice(1));
      return;
    case 'audit':
      await auditCommand(argv.slice(1));
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      process.stderr.write(`Unknown command: ${command}\n\n${USAGE}`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof StartupError) {
    process.stderr.write(`keyhold: ${error.message}\n`);
  } else {
    process.stderr.write(`keyhold: failed to start: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  }
  process.exit(1);
});
