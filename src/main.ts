#!/usr/bin/env node
import { auditCommand } from './cli/audit-verify.js';
import { renderOpenApi } from './cli/openapi.js';
import { rootCommand } from './cli/root-rotate.js';
import { startServer } from './cli/server.js';
import { USAGE } from './cli/usage.js';
import { StartupError } from './errors.js';

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
