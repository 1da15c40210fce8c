/**
 * The benchmark's baseline: the least a fastify JSON POST can cost on this machine. It parses a JSON body and
 * sends it back, with no logging, schema, authentication or crypto, so the ratio of Keyhold's throughput to this
 * one shows what Keyhold's own work costs over the HTTP stack both share.
 *
 * It runs as its own process, like the Keyhold server, so both are measured across the same process boundary.
 * Usage: `node dist/bench/echo-server.js [port]`; port 0 (the default) picks a free one. The address is printed on
 * stdout as `echo listening on <url>` for `run.ts` to read.
 */
import Fastify from 'fastify';

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? '0');
  const app = Fastify({ logger: false });
  app.post('/echo', async (request) => request.body);
  const address = await app.listen({ host: '127.0.0.1', port });
  process.stdout.write(`echo listening on ${address}\n`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`echo-server: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
