import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Registry, type RegistryContentType } from 'prom-client';

/** What a metrics listener serves: one process's registry (`KeyholdMetrics`), or its workers' together. */
export interface MetricsSource {
  readonly registry: Registry<RegistryContentType>;
  /** The Prometheus text exposition. */
  scrape(): Promise<string>;
}

/**
 * The Prometheus listener: `GET /metrics` and nothing else, on its own address (`KEYHOLD_METRICS_HOST`, default
 * 127.0.0.1, and `KEYHOLD_METRICS_PORT`), apart from the API. It has no authentication: what it shows (key names,
 * principals, rates) is for the operator's network only, so it is never on the API's port.
 */
export class MetricsListener {
  readonly #server: Server;
  readonly #metrics: MetricsSource;
  readonly #host: string;
  readonly #port: number;

  constructor(metrics: MetricsSource, options: { readonly host: string; readonly port: number }) {
    this.#metrics = metrics;
    this.#host = options.host;
    this.#port = options.port;
    this.#server = createServer((request, response) => {
      const path = request.url?.split('?')[0];
      if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
        response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found: the metrics are at GET /metrics\n');
        return;
      }
      metrics.scrape().then(
        (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(request.method === 'HEAD' ? undefined : text),
        () => response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('The metrics could not be collected\n'),
      );
    });
    // A scrape is one short request; an idle scraper connection must not hold a shutdown open.
    this.#server.keepAliveTimeout = 5000;
  }

  /** Starts listening; returns the URL of the metrics (with the port chosen, when the configured one is 0). */
  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, this.#host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const { address, port, family } = this.#server.address() as AddressInfo;
    return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}/metrics`;
  }

  /** The metric families the registry declares, with their types: what a scrape exports. */
  async families(): Promise<{ name: string; type: string }[]> {
    return (await this.#metrics.registry.getMetricsAsJSON()).map(({ name, type }) => ({ name, type: String(type) }));
  }

  /**
   * In a worker of a server with several (`KEYHOLD_WORKERS`), instead of `listen()`: the workers share one port, so
   * each scrape would reach one of them at random. The cluster primary listens instead ({@link workersMetrics}) and
   * asks each worker for this registry over IPC (prom-client's cluster support), then sums them up.
   */
  answerClusterPrimary(): void {
    // Constructing one installs prom-client's IPC answer in a worker; it then serves the registries set here.
    new AggregatorRegistry();
    AggregatorRegistry.setRegistries([this.#metrics.registry]);
  }

  get listening(): boolean {
    return this.#server.listening;
  }

  /** Stops listening and ends every connection, idle or not. Safe to call when not listening. */
  async close(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }
}

/** Why a worker left a cluster the primary did not stop: it died serving, or it exited before it listened. */
export type WorkerCrashPhase = 'serving' | 'starting';

/**
 * The cluster primary's own metrics, which no worker can report: how many workers listen against how many are
 * configured (a worker being replaced is missing from the first), and the workers that crashed.
 */
export class ClusterMetrics {
  readonly registry = new Registry();
  readonly #crashes: Counter<'phase'>;
  readonly #scrapeFailures: Counter;

  constructor(configured: number, listening: () => number) {
    new Gauge({
      name: 'keyhold_cluster_workers',
      help: 'Worker processes of this server: configured (KEYHOLD_WORKERS), and listening now.',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        this.set({ state: 'configured' }, configured);
        this.set({ state: 'listening' }, listening());
      },
    });
    this.#crashes = new Counter({
      name: 'keyhold_cluster_worker_crashes_total',
      help: 'Workers that exited while the server was not stopping: after they listened (serving) or before (starting).',
      labelNames: ['phase'],
      registers: [this.registry],
    });
    // Both phases from the start, so that increase() sees the first crash.
    for (const phase of ['serving', 'starting'] as const) this.#crashes.inc({ phase }, 0);
    this.#scrapeFailures = new Counter({
      name: 'keyhold_cluster_worker_scrape_failures_total',
      help: 'Scrapes answered without the workers\' metrics: a worker did not answer in time (one starting, or dying meanwhile).',
      registers: [this.registry],
    });
  }

  scrapeFailed(): void {
    this.#scrapeFailures.inc();
  }

  crashed(phase: WorkerCrashPhase): void {
    this.#crashes.inc({ phase });
  }
}

/**
 * The metrics of every worker of a server, for the cluster primary's listener: each scrape asks every worker for its
 * registry over IPC and aggregates them (prom-client's `AggregatorRegistry`): counters and histograms summed, gauges
 * as each declares (summed unless it says otherwise, as the key gauges do). The series carry no worker label, so a
 * scrape reads as one process's; a worker restarted starts its counters from zero, which Prometheus's `rate()` reads
 * as a counter reset only when the sum falls. The primary's own {@link ClusterMetrics} follow; when a worker does not
 * answer (one still starting, or dying during the scrape: prom-client gives up after 5 s), the scrape has the
 * primary's metrics alone, so a worker that keeps dying still shows.
 */
export function workersMetrics(primary: ClusterMetrics): MetricsSource {
  const registry = new AggregatorRegistry();
  return {
    registry,
    scrape: async () => {
      const workers = await registry.clusterMetrics().catch(() => {
        primary.scrapeFailed();
        return '';
      });
      return `${workers}${await primary.registry.metrics()}`;
    },
  };
}
