#!/usr/bin/env node
import { StartupError } from './errors.js';
import { renderOpenApi, startServer, verifyAuditFromEnvironment } from './server.js';

const USAGE = `Usage: keyhold <command>

Commands:
  server    Run the Keyhold server (configured by KEYHOLD_* environment variables; see README.md).
  openapi   Print the OpenAPI document generated from the route schemas.
  audit verify
            Walk every audit chain in the configured store and report, per replica, the first missing or
            altered record. Exits 0 when every chain is intact, 1 otherwise.
`;

async function main(argv: string[]): Promise<void> {
  const [command] = argv;
  switch (command) {
    case 'server':
      await startServer();
      return;
    case 'openapi':
      process.stdout.write(await renderOpenApi());
      return;
    case 'audit':
      if (argv[1] !== 'verify') {
        process.stderr.write(`Unknown audit command: ${argv[1] ?? '(none)'}\n\n${USAGE}`);
        process.exitCode = 2;
        return;
      }
      process.exitCode = (await verifyAuditFromEnvironment()) ? 0 : 1;
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
