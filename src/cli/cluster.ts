import cluster, { type Worker } from 'node:cluster';
import { createLogger } from '../app.js';
import type { SiblingProcesses } from '../changes/change-repository.js';
import type { Config, Environment } from '../config.js';
import { stdoutLogDestination } from '../lib/log-destination.js';
import { ClusterMetrics, MetricsListener, workersMetrics } from '../metrics/metrics-listener.js';

/** What a worker tells the primary once it listens. */
export interface WorkerListening {
  readonly keyhold: 'listening';
  readonly address: string;
  readonly awsKmsAddress: string | undefined;
}

/** A worker committed a change (worker → primary), or another one did (primary → the other workers). */
interface ChangeAnnouncement {
  readonly keyhold: 'changed';
}

type WorkerMessage = WorkerListening | ChangeAnnouncement;

function isWorkerMessage(message: unknown): message is WorkerMessage {
  return typeof message === 'object' && message !== null && typeof (message as { keyhold?: unknown }).keyhold === 'string';
}

const CHANGED: ChangeAnnouncement = { keyhold: 'changed' };

/** In a worker: its siblings are reached through the primary, which relays each announcement to the others. */
export function workerSiblings(): SiblingProcesses {
  return {
    announce: () => {
      if (process.connected) process.send?.(CHANGED);
    },
    onAnnouncement(listener) {
      const onMessage = (message: unknown): void => {
        if (isWorkerMessage(message) && message.keyhold === 'changed') listener();
      };
      process.on('message', onMessage);
      return () => process.off('message', onMessage);
    },
  };
}

/** A worker that dies is replaced after this long, doubled for each crash in the window below, up to the maximum. */
const RESTART_DELAY_MS = 500;
const MAX_RESTART_DELAY_MS = 10_000;
/** More crashes than this within the window and the primary gives up: a fault a restart does not cure. */
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 60_000;
/** How much longer than a worker's own shutdown bound the primary waits before it kills what is left. */
const SHUTDOWN_MARGIN_MS = 2000;

/**
 * The primary of `keyhold server` with `KEYHOLD_WORKERS` > 1: it serves no request and opens no store. It forks
 * the first worker alone, so that migrations, the root-key proof and the first admin token happen once and race with
 * nothing, then the others together; once all listen it prints the one `Keyhold listening on` line (the workers
 * share the port: the primary accepts connections and hands them out in turn). With `KEYHOLD_METRICS_PORT` it serves
 * every worker's metrics, summed.
 *
 * A worker that dies after it listened is replaced (after 0.5 s, doubling with each crash in the last minute, up
 * to 10 s); its audit chain stays unsealed, as any crashed replica's, and is logged. A replacement that dies before
 * it listens (the database down at that moment) is a crash too, and is replaced in turn while the others serve. A
 * worker of the first start that fails, more than 5 crashes in a minute, or more than 5 replacements in a row that
 * fail to start stop the server with exit status 1: a fault a restart does not cure is for the orchestrator to see.
 * On SIGTERM or SIGINT every worker drains as a single process does; the primary exits 0 once all exited 0, and 1
 * when any did not or `KEYHOLD_SHUTDOWN_TIMEOUT_MS` (plus 2 s) passed.
 */
export async function runClusterPrimary(config: Config, env: Environment): Promise<void> {
  const logs = stdoutLogDestination();
  const logger = createLogger(config, logs).child({ role: 'primary' });
  const listening = new Map<Worker, WorkerListening>();
  const crashes: number[] = [];
  /** Replacements in a row that died before they listened; one that listens resets it. */
  let failedReplacements = 0;
  let stopping: Promise<void> | undefined;
  /** One per worker waiting to be replaced: two that die within a back-off each have theirs. */
  const restartTimers = new Set<NodeJS.Timeout>();
  const clusterMetrics = new ClusterMetrics(config.workers, () => listening.size);
  let exitCode = 0;

  const exit = (code: number): void => {
    void logs.settled().then(() => process.exit(code));
  };

  /** Stops every worker (each drains, then exits) and exits when all have, with `code` unless one failed. */
  const stop = (reason: string, code: number): Promise<void> => {
    stopping ??= (async () => {
      exitCode = Math.max(exitCode, code);
      for (const timer of restartTimers) clearTimeout(timer);
      restartTimers.clear();
      const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
      logger.info({ reason, workers: workers.length, timeoutMs: config.shutdownTimeoutMs }, 'shutting down');
      const timer = setTimeout(() => {
        logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'workers did not exit in time; killing them');
        for (const worker of workers) worker.process.kill('SIGKILL');
        exitCode = 1;
      }, config.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS);
      timer.unref();
      const exits = workers.map((worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))));
      for (const worker of workers) if (!worker.isDead()) worker.process.kill('SIGTERM');
      await Promise.all(exits);
      clearTimeout(timer);
      await metrics?.close();
      logger.info({ exitCode }, 'shut down');
      exit(exitCode);
    })();
    return stopping;
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void stop(signal, 0));

  /** Forks a worker; a `replacement` that exits before it listens counts as a crash, as the worker it replaces did. */
  const fork = (replacement = false): Promise<WorkerListening> => {
    const worker = cluster.fork(env);
    return new Promise((resolve, reject) => {
      worker.on('message', (message: unknown) => {
        if (!isWorkerMessage(message)) return;
        if (message.keyhold === 'listening') {
          listening.set(worker, message);
          if (replacement) failedReplacements = 0;
          resolve(message);
        } else {
          // A commit on one worker: the others read their change feeds now (SQLite has no NOTIFY to tell them).
          for (const other of listening.keys()) if (other !== worker && other.isConnected()) other.send(CHANGED);
        }
      });
      worker.once('exit', (code, signal) => {
        const wasListening = listening.delete(worker);
        if (!wasListening) reject(new Error(`worker ${worker.process.pid} exited with ${signal ?? `code ${code}`} before it listened`));
        if (stopping !== undefined) {
          // A worker still starting when the server stops dies of the SIGTERM (it drains only once it listens).
          if (code !== 0 && !(signal === 'SIGTERM' && !wasListening)) exitCode = 1;
          return;
        }
        clusterMetrics.crashed(wasListening ? 'serving' : 'starting');
        if (wasListening) {
          replace(worker, code, signal, 'a worker died; replacing it (its audit chain stays unsealed: accept it in `keyhold audit verify` once accounted for)');
        } else if (replacement) {
          failedReplacements += 1;
          if (failedReplacements > MAX_CRASHES) {
            logger.error({ workerPid: worker.process.pid, code, signal, failedReplacements }, 'replacement workers keep failing to start; stopping');
            void stop('replacement workers keep failing to start', 1);
            return;
          }
          replace(worker, code, signal, 'a replacement worker failed to start; replacing it');
        } else {
          logger.error({ workerPid: worker.process.pid, code, signal }, 'a worker exited before it listened; stopping');
          void stop('a worker failed to start', 1);
        }
      });
    });
  };

  const replace = (worker: Worker, code: number | null, signal: string | null, message: string): void => {
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > MAX_CRASHES) {
      logger.error({ workerPid: worker.process.pid, code, signal, crashes: crashes.length, windowMs: CRASH_WINDOW_MS }, 'workers keep crashing; stopping');
      void stop('workers keep crashing', 1);
      return;
    }
    const delayMs = Math.min(MAX_RESTART_DELAY_MS, RESTART_DELAY_MS * 2 ** (crashes.length - 1));
    logger.error({ workerPid: worker.process.pid, code, signal, restartInMs: delayMs }, message);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (stopping === undefined) fork(true).catch(() => undefined);
    }, delayMs);
    restartTimers.add(timer);
  };

  let metrics: MetricsListener | undefined;
  try {
    const first = await fork();
    // A SIGTERM while the first worker started: stop() has listed the workers to stop, so fork no more.
    if (stopping !== undefined) return;
    await Promise.all(Array.from({ length: config.workers - 1 }, () => fork()));
    if (config.metrics !== undefined) {
      metrics = new MetricsListener(workersMetrics(clusterMetrics), config.metrics);
      const url = await metrics.listen();
      logger.info({ url }, 'metrics listening (every worker, summed)');
    }
    logger.info({ workers: config.workers }, 'workers listening');
    if (first.awsKmsAddress !== undefined) process.stdout.write(`Keyhold AWS KMS endpoint listening on ${first.awsKmsAddress}/\n`);
    process.stdout.write(`Keyhold listening on ${first.address} (${config.workers} workers)\n`);
  } catch (error) {
    if (stopping === undefined) {
      logger.error({ err: error }, 'start-up failed');
      void stop('start-up failed', 1);
    }
  }
}
