import type { Command } from 'commander';
import { KeyholdKms } from '../kms-plugin/keyhold-kms.js';
import { serveKmsPlugin } from '../kms-plugin/server.js';
import { integer } from './command.js';
import { CliError, EXIT } from './exit-codes.js';
import type { Io } from './io.js';
import { resolveTarget, type RemoteFlags } from './remote.js';

interface KmsPluginOptions extends RemoteFlags {
  readonly socket: string;
  readonly key: string;
  readonly timeout: number;
}

/**
 * `keyhold kms-plugin`: a Kubernetes KMS v2 plugin on a unix socket, so the kube-apiserver encrypts Secrets at rest
 * with a Keyhold key (docs/kms-plugin.md). Runs until SIGTERM or SIGINT, then finishes in-flight calls and removes
 * its socket.
 */
export function registerKmsPlugin(program: Command, io: Io): void {
  program
    .command('kms-plugin')
    .description('serve the Kubernetes KMS v2 API on a unix socket, encrypting the apiserver\'s DEK seeds with a Keyhold key')
    .requiredOption('--socket <path>', 'the unix socket the apiserver calls, such as /var/run/keyhold/kms.sock')
    .requiredOption('--key <name>', 'the Keyhold key that encrypts')
    .option('--addr <url>', 'the service (default: $KEYHOLD_ADDR)')
    .option('--token-file <path>', 'a file holding the API token or a projected service-account token, read again on every call (default: $KEYHOLD_TOKEN)')
    .option('--timeout <ms>', 'the longest one call to the service may take; shorter when the apiserver\'s deadline is', integer('--timeout', 100, 60_000), 3000)
    .action(async (options: KmsPluginOptions) => {
      const target = resolveTarget(options, io.env);
      const kms = new KeyholdKms({
        url: target.url,
        // Read on every call: a projected or rotated token file is picked up without a restart.
        token: () => resolveTarget(options, io.env).token,
        keyName: options.key,
        timeoutMs: options.timeout,
      });
      let server;
      try {
        server = await serveKmsPlugin(options.socket, kms, options.timeout);
      } catch (error) {
        throw new CliError('KH_CLI_SOCKET', `cannot listen on ${options.socket}: ${(error as Error).message}`, EXIT.failure);
      }
      const first = await kms.status();
      io.stderr.write(`keyhold kms-plugin: serving KMS v2 for key ${options.key} on unix:${options.socket} (status: ${first.healthz})\n`);
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        for (const name of ['SIGTERM', 'SIGINT'] as const) process.once(name, () => resolve(name));
      });
      io.stderr.write(`keyhold kms-plugin: ${signal}, stopping\n`);
      await server.close();
    });
}
