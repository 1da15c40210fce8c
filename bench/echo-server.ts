/**
 * The benchmark's baseline: the least a fastify JSON POST can cost on this machine. It parses a JSON body and
 * sends it back, with no logging, schema, authentication or crypto, so the ratio of Keyhold's throughput to this
 * one shows what Keyhold's own work costs over the HTTP stack both share.
 *
 * It runs as its own process, like the Keyhold server, so both are measured across the same process boundary.
 * Usage: `node dist/bench/echo-server.js [port] [workers]`; port 0 (the default) picks a free one. With more than one
 * worker (default 1) it runs under node:cluster as `keyhold server` with KEYHOLD_WORKERS does: a primary that hands
 * connections to the workers in turn, so the multi-worker baseline pays the same cluster overhead. The address is
 * printed on stdout as `echo listening on <url>` for `run.ts` to read.
 */
import cluster from 'node:cluster';
import Fastify from 'fastify';

const LISTENING = 'echo-listening';

async function serve(port: number): Promise<void> {
  const app = Fastify({ logger: false });
  app.post('/echo', async (request) => request.body);
  const address = await app.listen({ host: '127.0.0.1', port });
  if (cluster.isWorker) process.send?.({ type: LISTENING, address });
  else process.stdout.write(`echo listening on ${address}\n`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}

/** Forks the workers, prints the address once all listen, and stops them all on SIGTERM. */
async function primary(workers: number): Promise<void> {
  const addresses = await Promise.all(
    Array.from({ length: workers }, () => {
      const worker = cluster.fork();
      return new Promise<string>((resolve, reject) => {
        worker.on('message', (message: { type?: string; address?: string }) => {
          if (message.type === LISTENING && message.address !== undefined) resolve(message.address);
        });
        worker.once('exit', (code) => reject(new Error(`an echo worker exited with code ${code}`)));
      });
    }),
  );
  process.stdout.write(`echo listening on ${addresses[0]}\n`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.removeAllListeners('exit').process.kill('SIGTERM');
      cluster.disconnect(() => process.exit(0));
    });
  }
}

const port = Number(process.argv[2] ?? '0');
const workers = Number(process.argv[3] ?? '1');
(cluster.isPrimary && workers > 1 ? primary(workers) : serve(port)).catch((error: unknown) => {
  process.stderr.write(`echo-server: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
