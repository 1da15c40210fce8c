import cluster from 'node:cluster';
import type { FastifyInstance } from 'fastify';
import { openKeyholdApp } from '../compose.js';
import { loadConfig, type Config } from '../config.js';
import { stdoutLogDestination, type LogDestination } from '../lib/log-destination.js';
import { runClusterPrimary, workerSiblings, type WorkerListening } from './cluster.js';

export interface ServerOptions {
  /** `--workers N`: over `KEYHOLD_WORKERS`. */
  readonly workers?: number | undefined;
}

/**
 * `keyhold server`: reads the configuration from `process.env` (the only code that does) and serves. With one worker
 * (`KEYHOLD_WORKERS=1`) this process opens Keyhold and listens; with more, it becomes the cluster primary
 * (`cluster.ts`), which forks the workers, and each worker, running this same command, opens its own Keyhold.
 */
export async function startServer(options: ServerOptions = {}): Promise<void> {
  const env = options.workers === undefined ? process.env : { ...process.env, KEYHOLD_WORKERS: String(options.workers) };
  const config = loadConfig(env);
  if (cluster.isWorker) {
    await serve(config, 'worker').catch((error: unknown) => {
      // The channel to the primary would keep a worker that failed to start alive; without it, the worker exits
      // once the error is printed, and the primary sees its exit status.
      process.channel?.unref();
      throw error;
    });
  } else if (config.workers > 1) await runClusterPrimary(config, env);
  else await serve(config, 'alone');
}

/**
 * Opens Keyhold and listens. `alone`, it says where on stdout and serves its own metrics; as a `worker`, it tells the
 * cluster primary, which says it once for all and serves every worker's metrics.
 */
async function serve(config: Config, role: 'alone' | 'worker'): Promise<FastifyInstance> {
  const logDestination = stdoutLogDestination();
  const siblings = role === 'worker' ? workerSiblings() : undefined;
  const { app, generatedAdminToken: generated, metrics, awsKms } = await openKeyholdApp(config, {
    logStream: logDestination,
    ...(siblings === undefined ? {} : { siblings }),
  });
  if (generated !== undefined && process.stdout.isTTY === true) {
    // Printed once, straight to the terminal and never through the logger, so it cannot land in log storage. With
    // several workers only the first one, which starts alone, can generate it.
    process.stdout.write(
      `\n  Keyhold generated the first admin token. It is shown once, and saved (mode 0600) to ${generated.path}:\n\n` +
        `    ${generated.token}\n\n`,
    );
  } else if (generated !== undefined) {
    // Anything but a terminal (a container's stdout above all) is a log pipeline: only the file holds the token.
    app.log.warn({ path: generated.path }, 'generated the first admin token into this file (mode 0600); it is not printed, since stdout is not a terminal');
  }
  // A worker's listen() goes through the primary, which shares one socket per address among the workers.
  const address = await app.listen({ host: config.host, port: config.port });
  let metricsAddress: string | undefined;
  let awsKmsAddress: string | undefined;
  try {
    if (role === 'worker') metrics?.answerClusterPrimary();
    else metricsAddress = await metrics?.listen();
    if (awsKms !== undefined) awsKmsAddress = await awsKms.listen({ host: config.host, port: config.awsKms?.port ?? 0 });
  } catch (error) {
    // A port taken stops start-up as the API's would: an operator who asked for it must not run without it.
    await app.close();
    throw error;
  }
  // Before the line that tells an orchestrator (or a test) the server is up: a SIGTERM that follows it must find the
  // handler, or the default action kills the process with its audit chain unsealed.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => shutDown(app, logDestination, signal, config.shutdownTimeoutMs));
  if (role === 'worker') {
    const listening: WorkerListening = { keyhold: 'listening', address, awsKmsAddress };
    process.send?.(listening);
    return app;
  }
  if (metricsAddress !== undefined) app.log.info({ url: metricsAddress }, 'metrics listening');
  if (awsKmsAddress !== undefined) process.stdout.write(`Keyhold AWS KMS endpoint listening on ${awsKmsAddress}/\n`);
  process.stdout.write(`Keyhold listening on ${address}\n`);
  return app;
}

let shuttingDown = false;

/**
 * Stops listening, lets the requests in flight finish (their audit records are committed before they are answered),
 * flushes the audit writer and closes the pool (`app.close()` runs the close hooks), waits for its log lines to be
 * written, and exits 0. An orchestrator sends SIGTERM on every rollout and SIGKILL after its grace period, so a
 * shutdown that cannot finish within `timeoutMs` exits 1 on its own, and says so, rather than hang until it is
 * killed. Nothing runs at exit that could outlast the bound: the log destination has no exit-time flush.
 */
function shutDown(app: FastifyInstance, logs: LogDestination, signal: NodeJS.Signals, timeoutMs: number): void {
  if (shuttingDown) return;
  shuttingDown = true;
  app.log.info({ signal, timeoutMs }, 'shutting down');
  const started = performance.now();
  setTimeout(() => {
    app.log.error({ timeoutMs }, 'shutdown did not finish in time; exiting with requests still in flight');
    process.exit(1);
  }, timeoutMs).unref();
  app.close().then(
    () => {
      app.log.info({ ms: Math.round(performance.now() - started) }, 'shut down');
      void logs.settled().then(() => process.exit(0));
    },
    (error: unknown) => {
      app.log.error({ err: error }, 'shutdown failed');
      void logs.settled().then(() => process.exit(1));
    },
  );
}
