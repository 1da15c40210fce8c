import { open } from 'node:fs/promises';
import { inspectMessage, KeyholdSdkError, type MessageInfo } from '@keyhold/sdk';
import { Option, type Command } from 'commander';
import { integer } from './command.js';
import { CliError, EXIT } from './exit-codes.js';
import type { Io } from './io.js';
import { emit, printTable } from './output.js';

/** A header is at most a few hundred bytes and an 8 KiB context; this bounds what a non-message costs to read. */
const HEADER_READ_BYTES = 64 * 1024;

interface Inspected extends Pick<MessageInfo, 'keyId' | 'keyVersion' | 'context'> {
  readonly file: string;
}

/**
 * `keyhold inspect FILE…`: the key id and version each Keyhold message at rest was encrypted under, from its header
 * alone (the SDK's `inspectMessage`): no service, no credential, nothing decrypted. With `keyhold usage`, it answers
 * "what still depends on version N" for data at rest as well as for workloads. The header is not authenticated until
 * the message is decrypted: it finds messages, it does not vouch for them.
 */
export function registerInspect(program: Command, io: Io): void {
  program
    .command('inspect')
    .description('the key id and version of Keyhold messages at rest, from their headers (nothing is decrypted)')
    .argument('<files...>', 'Keyhold messages, as `keyhold encrypt` or the SDK wrote them')
    .addOption(new Option('--version <n>', 'list only the messages under this key version').argParser(integer('--version', 1, 0xffffffff)))
    .option('--json', 'print JSON')
    .action(async (files: string[], options: { version?: number; json?: boolean }) => {
      const inspected: Inspected[] = [];
      // A file that is not a message is reported and passed over, so `inspect dir/*` over mixed files still lists
      // the messages; the exit status then says something was skipped.
      let skipped: CliError | undefined;
      for (const file of files) {
        try {
          const { keyId, keyVersion, context } = headerOf(file, await readHeader(file));
          if (options.version === undefined || keyVersion === options.version) inspected.push({ file, keyId, keyVersion, context });
        } catch (error) {
          if (!(error instanceof CliError)) throw error;
          io.stderr.write(`keyhold: ${error.code}: ${error.message}\n`);
          skipped = error;
        }
      }
      emit(io, options.json, inspected, (rows) =>
        printTable(io, [
          ['file', (row) => row.file],
          ['key id', (row) => row.keyId],
          ['version', (row) => row.keyVersion],
          ['context', (row) => Object.entries(row.context).map(([key, value]) => `${key}=${value}`)],
        ], rows),
      );
      if (skipped !== undefined) throw new CliError(skipped.code, 'some files were not Keyhold messages (above)', EXIT.failure);
    });
}

function headerOf(file: string, prefix: Uint8Array): MessageInfo {
  try {
    return inspectMessage(prefix);
  } catch (error) {
    if (!(error instanceof KeyholdSdkError)) throw error;
    throw new CliError('KH_CLI_NOT_A_MESSAGE', `${file} is not a Keyhold message, or its header is cut short`, EXIT.failure);
  }
}

async function readHeader(file: string): Promise<Uint8Array> {
  let handle;
  try {
    handle = await open(file, 'r');
    const buffer = Buffer.alloc(HEADER_READ_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, HEADER_READ_BYTES, 0);
    return buffer.subarray(0, bytesRead);
  } catch (error) {
    throw new CliError('KH_CLI_FILE', `${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.failure);
  } finally {
    await handle?.close();
  }
}
