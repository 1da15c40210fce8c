import { Command, CommanderError } from 'commander';
import { StartupError } from '../errors.js';
import { registerAudit } from './audit.js';
import { registerAwsCredentials } from './aws-credentials.js';
import { registerEnvelope } from './envelope.js';
import { registerInspect } from './inspect.js';
import { CliError, EXIT, type ExitCode } from './exit-codes.js';
import type { Io } from './io.js';
import { registerKeys } from './keys.js';
import { registerKmsPlugin } from './kms-plugin.js';
import { registerUsage } from './key-usage.js';
import { registerLocal } from './local.js';
import { registerPolicies } from './policies.js';
import { registerTokens } from './tokens.js';
import { registerWhoami } from './whoami.js';

const EPILOGUE = `
Remote commands talk to a running service: KEYHOLD_ADDR (or --addr) and KEYHOLD_TOKEN (or --token-file).
Exit status: 0 ok, 1 failure, 2 usage, 3 unauthenticated or forbidden, 4 not found, 5 conflict, 6 unavailable.
See docs/cli.md.`;

/** The `keyhold` command tree. Each group registers itself from its own file. */
export function buildProgram(io: Io): Command {
  const program = new Command('keyhold');
  program
    .description('Keyhold: run the key management service, and administer a running one')
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // commander's "error: …" becomes the CLI's one-line form; the command's help follows it.
      outputError: (text, write) => write(`keyhold: KH_CLI_USAGE: ${text.replace(/^error: /, '').trimEnd()}\n`),
    })
    .exitOverride()
    .showHelpAfterError()
    .allowExcessArguments(false)
    .addHelpText('after', EPILOGUE);
  registerLocal(program, io);
  registerKeys(program, io);
  registerPolicies(program, io);
  registerTokens(program, io);
  registerAwsCredentials(program, io);
  registerWhoami(program, io);
  registerAudit(program, io);
  registerUsage(program, io);
  registerEnvelope(program, io);
  registerInspect(program, io);
  registerKmsPlugin(program, io);
  return program;
}

/**
 * Runs `keyhold ARGS` and resolves to its exit status. Every failure ends here as one line on stderr,
 * `keyhold: CODE: detail`, and its status; a bare `keyhold` (or a group without its command) prints the help and is
 * a usage error.
 */
export async function runCli(argv: readonly string[], io: Io): Promise<ExitCode> {
  const program = buildProgram(io);
  if (argv.length === 0) {
    program.outputHelp({ error: true });
    return EXIT.usage;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version are answers; anything else commander refused is a usage error, already printed.
      // `keyhold help [command]` ends as 'commander.help' with exit code 0: an answer too.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.ok;
      return error.code === 'commander.help' && error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof CliError) {
      io.stderr.write(`keyhold: ${error.code}: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof StartupError) {
      io.stderr.write(`keyhold: ${error.message}\n`);
      return EXIT.failure;
    }
    io.stderr.write(`keyhold: failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT.failure;
  }
}
