import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { KeyholdKms, type TlsMaterial } from '../kms-plugin/keyhold-kms.js';
import { serveKmsPlugin } from '../kms-plugin/server.js';
import { integer } from './command.js';
import { CliError, EXIT } from './exit-codes.js';
import type { Io } from './io.js';
import { readToken, resolveAddress, type RemoteFlags } from './remote.js';

interface KmsPluginOptions extends RemoteFlags {
  readonly socket: string;
  readonly key: string;
  readonly timeout: number;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly ca?: string;
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
    .option('--tls-cert <path>', 'the plugin\'s X.509-SVID (PEM), for mutual TLS instead of a token; read again on every call')
    .option('--tls-key <path>', 'the private key of --tls-cert (PEM); read again on every call')
    .option('--ca <path>', 'the CA bundle (PEM) the service\'s certificate is checked against, with a token or an SVID; read again on every call')
    .option('--timeout <ms>', 'the longest one call to the service may take; shorter when the apiserver\'s deadline is', integer('--timeout', 100, 60_000), 3000)
    .action(async (options: KmsPluginOptions) => {
      // Installed first: a SIGTERM during a slow start (a slow first Status) still stops the plugin cleanly.
      const stopped = new Promise<NodeJS.Signals>((resolve) => {
        for (const name of ['SIGTERM', 'SIGINT'] as const) process.once(name, () => resolve(name));
      });
      const url = resolveAddress(options, io.env);
      const svid = options.tlsCert !== undefined || options.tlsKey !== undefined;
      if (svid && (options.tlsCert === undefined || options.tlsKey === undefined)) {
        throw new CliError('KH_CLI_USAGE', '--tls-cert and --tls-key go together', EXIT.usage);
      }
      if (svid && options.tokenFile !== undefined) {
        throw new CliError('KH_CLI_USAGE', '--token-file and --tls-cert are two credentials; pass one', EXIT.usage);
      }
      if ((svid || options.ca !== undefined) && url.protocol !== 'https:') {
        throw new CliError('KH_CLI_USAGE', '--tls-cert and --ca need an https: service address', EXIT.usage);
      }
      // Without an SVID a token is needed: from --token-file (which may appear later: until then the plugin serves
      // and reports unhealthy) or from KEYHOLD_TOKEN, checked now.
      if (!svid && options.tokenFile === undefined) readToken(undefined, io.env);
      const tls =
        svid || options.ca !== undefined
          ? (): TlsMaterial => ({
              // Read on every call: a rotated SVID or trust bundle is used without a restart.
              ...(options.tlsCert === undefined ? {} : { cert: readFileSync(options.tlsCert, 'utf8') }),
              ...(options.tlsKey === undefined ? {} : { key: readFileSync(options.tlsKey, 'utf8') }),
              ...(options.ca === undefined ? {} : { ca: readFileSync(options.ca, 'utf8') }),
            })
          : undefined;
      const kms = new KeyholdKms({
        url,
        // Read on every call: a projected or rotated token file is picked up without a restart.
        token: svid ? undefined : () => readToken(options.tokenFile, io.env),
        tls,
        keyName: options.key,
        timeoutMs: options.timeout,
      });
      let server;
      try {
        server = await serveKmsPlugin(options.socket, kms, options.timeout);
      } catch (error) {
        throw new CliError('KH_CLI_SOCKET', `cannot listen on ${options.socket}: ${(error as Error).message}`, EXIT.failure);
      }
      const first = await Promise.race([kms.status(), stopped]);
      if (typeof first === 'object') {
        io.stderr.write(`keyhold kms-plugin: serving KMS v2 for key ${options.key} on unix:${options.socket} (status: ${first.healthz})\n`);
      }
      const signal = await stopped;
      io.stderr.write(`keyhold kms-plugin: ${signal}, stopping\n`);
      await server.close();
      // What is still waiting (a slow first Status) is cut, so the process exits now rather than at --timeout.
      kms.abort();
    });
}
