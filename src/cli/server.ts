import type { FastifyInstance } from 'fastify';
import { openKeyholdApp } from '../compose.js';
import { loadConfig } from '../config.js';
import { stdoutLogDestination, type LogDestination } from '../lib/log-destination.js';

/** `keyhold server`: reads the configuration from `process.env`, opens Keyhold and listens (the only code that does). */
export async function startServer(): Promise<FastifyInstance> {
  const config = loadConfig(process.env);
  const logDestination = stdoutLogDestination();
  const { app, generatedAdminToken: generated, metrics, awsKms } = await openKeyholdApp(config, { logStream: logDestination });
  if (generated !== undefined && process.stdout.isTTY === true) {
    // Printed once, straight to the terminal and never through the logger, so it cannot land in log storage.
    process.stdout.write(
      `\n  Keyhold generated the first admin token. It is shown once, and saved (mode 0600) to ${generated.path}:\n\n` +
        `    ${generated.token}\n\n`,
    );
  } else if (generated !== undefined) {
    // Anything but a terminal (a container's stdout above all) is a log pipeline: only the file holds the token.
    app.log.warn({ path: generated.path }, 'generated the first admin token into this file (mode 0600); it is not printed, since stdout is not a terminal');
  }
  const address = await app.listen({ host: config.host, port: config.port });
  let metricsAddress: string | undefined;
  let awsKmsAddress: string | undefined;
  try {
    metricsAddress = await metrics?.listen();
    if (awsKms !== undefined) awsKmsAddress = await awsKms.listen({ host: config.host, port: config.awsKms?.port ?? 0 });
  } catch (error) {
    // A port taken stops start-up as the API's would: an operator who asked for it must not run without it.
    await app.close();
    throw error;
  }
  // Before the line that tells an orchestrator (or a test) the server is up: a SIGTERM that follows it must find the
  // handler, or the default action kills the process with its audit chain unsealed.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => shutDown(app, logDestination, signal, config.shutdownTimeoutMs));
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
