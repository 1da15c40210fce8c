import { createInterface } from 'node:readline/promises';
import type { Readable, Writable } from 'node:stream';
import { CliError, EXIT } from './exit-codes.js';
import type { ClientEnvironment } from './remote.js';

/** The process as the commands see it: the environment and the three streams, handed in by `main.ts`. */
export interface Io {
  readonly env: ClientEnvironment;
  readonly stdin: Readable & { isTTY?: boolean };
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };
}

export function processIo(): Io {
  return { env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
}

/** Progress lines and prompts go to stderr, and only to a person: a terminal. */
export const stderrIsTerminal = (io: Io): boolean => io.stderr.isTTY === true;

/**
 * A destructive command goes ahead with `--yes`, or once a person at a terminal types the name it acts on. Anything
 * else (a script, a pipe, a CI job) is refused before a request is made, so a missing `--yes` never destroys a key.
 */
export async function confirm(io: Io, yes: boolean | undefined, what: string, name: string): Promise<void> {
  if (yes === true) return;
  if (io.stdin.isTTY !== true || io.stderr.isTTY !== true) {
    throw new CliError('KH_CLI_CONFIRMATION', `${what} needs --yes when not run at a terminal`, EXIT.usage);
  }
  const prompt = createInterface({ input: io.stdin, output: io.stderr });
  try {
    const answer = await prompt.question(`${what}. Type the name (${name}) to confirm: `);
    if (answer.trim() !== name) throw new CliError('KH_CLI_ABORTED', 'not confirmed; nothing was changed', EXIT.failure);
  } finally {
    prompt.close();
  }
}
