import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { apiToken, createClient, KeyholdSdkError, ServiceError, type KeyholdClient } from '@keyhold/sdk';
import type { Command } from 'commander';
import { failUsage, pair } from './command.js';
import { CliError, EXIT, exitCodeForStatus, type ExitCode } from './exit-codes.js';
import { stderrIsTerminal, type Io } from './io.js';
import { oneLine, resolveTarget, type RemoteFlags } from './remote.js';

interface EnvelopeOptions extends RemoteFlags {
  readonly key?: string;
  readonly context?: Record<string, string>;
  readonly output?: string;
}

/**
 * `keyhold encrypt` and `keyhold decrypt`: files and stdin through the SDK's streaming envelope encryption
 * (sdk/README.md), so plaintext never leaves the machine and a file of any size goes through in constant memory,
 * about one 64 KiB segment at a time.
 */
export function registerEnvelope(program: Command, io: Io): void {
  const connection = (command: Command) =>
    command
      .option('--addr <url>', 'the service (default: $KEYHOLD_ADDR)')
      .option('--token-file <path>', 'a file holding the API token (default: $KEYHOLD_TOKEN)')
      .option('--context <k=v>', 'an encryption-context pair (repeatable)', pair)
      .option('-o, --output <path>', 'write here instead of stdout; the file appears only once the whole input went through')
      .argument('[file]', 'the input; - or none reads stdin');

  const encrypt = connection(program.command('encrypt').description('encrypt a file or stdin under a key into a Keyhold message'))
    .requiredOption('--key <name>', 'the key whose data key encrypts')
    .action(async (file: string | undefined, options: EnvelopeOptions) => {
      if (toStdout(options) && io.stdout.isTTY === true) failUsage(encrypt, 'refusing to write a binary message to a terminal: add -o FILE or redirect stdout');
      await run(io, 'encrypt', file, options, (client) => client.encryptNodeStream(options.key!, { context: options.context ?? {} }));
    });

  connection(program.command('decrypt').description('decrypt a Keyhold message from a file or stdin; --context pairs must all be in the message'))
    .action(async (file: string | undefined, options: EnvelopeOptions) => {
      await run(io, 'decrypt', file, options, (client) => client.decryptNodeStream({ expectedContext: options.context ?? {} }));
    });
}

const toStdout = (options: EnvelopeOptions): boolean => options.output === undefined || options.output === '-';

async function run(io: Io, verb: string, file: string | undefined, options: EnvelopeOptions, transform: (client: KeyholdClient) => Readable & Writable): Promise<void> {
  const target = resolveTarget(options, io.env);
  const input = file === undefined || file === '-' ? undefined : file;
  const size = input === undefined ? undefined : fileSize(input);
  const client = createClient({ url: target.url, auth: apiToken(target.token), cache: false, events: false });
  // A file output is written beside its destination and renamed once the stream ended without an error: a
  // decryption is only confirmed at its last segment (sdk/README.md, Streaming), and a half-written file must never
  // pass for a whole one.
  const partial = toStdout(options) ? undefined : join(dirname(options.output!), `.${basename(options.output!)}.${process.pid}.part`);
  const progress = stderrIsTerminal(io) ? new Progress(io, verb, size) : undefined;
  // Interrupted, the partial file goes too (it may hold unconfirmed plaintext); then the signal takes its course.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (partial !== undefined) rmSync(partial, { force: true });
    process.kill(process.pid, signal);
  };
  if (partial !== undefined) for (const signal of INTERRUPTS) process.once(signal, onSignal);
  try {
    const streams: Array<Readable | Writable> = [
      input === undefined ? io.stdin : createReadStream(input),
      ...(progress === undefined ? [] : [progress.counter()]),
      transform(client),
      partial === undefined ? io.stdout : createWriteStream(partial, { mode: 0o600, flags: 'wx' }),
    ];
    await (pipeline as (...all: Array<Readable | Writable>) => Promise<void>)(...streams);
    if (partial !== undefined) renameSync(partial, options.output!);
  } catch (error) {
    if (partial !== undefined) rmSync(partial, { force: true });
    throw cliErrorOf(error);
  } finally {
    for (const signal of INTERRUPTS) process.removeListener(signal, onSignal);
    progress?.done();
    await client.close();
  }
}

const INTERRUPTS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (error) {
    throw new CliError('KH_CLI_FILE', `${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.failure);
  }
}

const SDK_EXIT: Partial<Record<string, ExitCode>> = {
  KH_SDK_INVALID_ARGUMENT: EXIT.usage,
  KH_SDK_CONFIGURATION: EXIT.usage,
  KH_SDK_CREDENTIALS: EXIT.denied,
  KH_SDK_SERVICE_UNAVAILABLE: EXIT.unavailable,
  KH_SDK_DEADLINE_EXCEEDED: EXIT.unavailable,
};

/** An SDK error as the CLI reports it: the service's own code and detail where it answered, the SDK's otherwise. */
function cliErrorOf(error: unknown): unknown {
  if (error instanceof CliError) return error;
  if (error instanceof ServiceError) {
    return new CliError(error.serviceCode ?? error.code, oneLine(error.detail ?? error.message), exitCodeForStatus(error.status));
  }
  if (error instanceof KeyholdSdkError) return new CliError(error.code, oneLine(error.message), SDK_EXIT[error.code] ?? EXIT.failure);
  const code = (error as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    return new CliError('KH_CLI_FILE', oneLine((error as Error).message), EXIT.failure);
  }
  return error;
}

/** Bytes read so far, and of how many, on stderr at most four times a second; only on a terminal. */
class Progress {
  #bytes = 0;
  #shown = 0;
  #started = Date.now();

  constructor(
    private readonly io: Io,
    private readonly verb: string,
    private readonly total: number | undefined,
  ) {}

  counter(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.#bytes += chunk.length;
        if (Date.now() - this.#shown >= 250) this.#show();
        done(null, chunk);
      },
    });
  }

  #show(): void {
    this.#shown = Date.now();
    const mib = (n: number) => (n / 1048576).toFixed(1);
    const of = this.total === undefined || this.total === 0 ? '' : ` of ${mib(this.total)} MiB (${Math.floor((100 * this.#bytes) / this.total)}%)`;
    const rate = this.#bytes / 1048576 / Math.max((Date.now() - this.#started) / 1000, 0.001);
    this.io.stderr.write(`\rkeyhold ${this.verb}: ${mib(this.#bytes)} MiB${of}, ${rate.toFixed(0)} MiB/s `);
  }

  done(): void {
    if (this.#shown === 0) return;
    this.#show();
    this.io.stderr.write('\n');
  }
}
