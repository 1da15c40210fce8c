import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KeyholdMetrics } from './keyhold-metrics.js';

/**
 * The Prometheus listener: `GET /metrics` and nothing else, on its own address (`KEYHOLD_METRICS_HOST`, default
 * 127.0.0.1, and `KEYHOLD_METRICS_PORT`), apart from the API. It has no authentication: what it shows (key names,
 * principals, rates) is for the operator's network only, so it is never on the API's port.
 */
export class MetricsListener {
  readonly #server: Server;
  readonly #metrics: KeyholdMetrics;
  readonly #host: string;
  readonly #port: number;

  constructor(metrics: KeyholdMetrics, options: { readonly host: string; readonly port: number }) {
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
