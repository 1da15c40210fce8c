import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
import type { AuthProvider } from '../auth/auth-provider.js';
import { SDK_USER_AGENT } from '../transport/http-transport.js';

/** An answer to `GET /v1/events`: its status and content type, and its body as text when it is a stream. */
export interface EventStreamAnswer {
  readonly status: number;
  /** Set for 2xx `text/event-stream` answers only; other bodies are discarded. */
  readonly body?: AsyncIterable<string>;
}

/** Opens one event stream, resuming after `lastEventId`; the signal ends it. */
export type EventStreamConnector = (lastEventId: string, signal: AbortSignal) => Promise<EventStreamAnswer>;

export interface HttpConnectorOptions {
  /** The service's base URL, as the transport got it (already checked by it). */
  readonly url: string | URL;
  readonly auth: AuthProvider;
  readonly ca?: string | Buffer;
  readonly userAgent?: string;
}

const EVENT_STREAM = /^text\/event-stream\s*(;|$)/i;

/**
 * Connects to `GET /v1/events` with the client's credentials and TLS settings, as the transport does for other
 * calls. The connection is its own (no pooled agent) and its socket is unref'd: a subscription never keeps the
 * process alive. A 401 invalidates the credentials, so the next attempt reads rotated ones.
 */
export function httpEventStreamConnector(options: HttpConnectorOptions): EventStreamConnector {
  const base = new URL(String(options.url));
  const path = `${base.pathname.replace(/\/+$/, '')}/v1/events`;
  const { protocol, hostname, port } = urlToHttpOptions(base);
  const userAgent = options.userAgent === undefined || options.userAgent === '' ? SDK_USER_AGENT : `${options.userAgent} ${SDK_USER_AGENT}`;

  return async (lastEventId, signal) => {
    const credentials = await options.auth.credentials();
    signal.throwIfAborted();
    const headers: Record<string, string> = { ...credentials.headers, accept: 'text/event-stream', 'user-agent': userAgent };
    if (lastEventId !== '') headers['last-event-id'] = lastEventId;
    const identity = credentials.tls;
    const ca = [options.ca, identity?.ca].filter((pem): pem is string | Buffer => pem !== undefined && pem.length > 0);
    const target: https.RequestOptions = {
      protocol,
      hostname,
      port,
      path,
      method: 'GET',
      headers,
      agent: false,
      signal,
      ...(ca.length > 0 ? { ca } : {}),
      ...(identity !== undefined ? { cert: identity.cert, key: identity.key } : {}),
    };
    return new Promise<EventStreamAnswer>((resolve, reject) => {
      const request = (protocol === 'https:' ? https : http).request(target);
      request.on('socket', (socket) => socket.unref());
      request.on('error', reject);
      request.on('response', (response) => {
        const status = response.statusCode ?? 0;
        if (status === 401) options.auth.invalidate();
        const type = response.headers['content-type'] ?? '';
        if (status < 200 || status > 299 || !EVENT_STREAM.test(type)) {
          response.resume();
          response.on('error', () => undefined);
          request.destroy();
          resolve({ status });
          return;
        }
        // A streaming UTF-8 decoder: a character split across two chunks arrives whole.
        response.setEncoding('utf8');
        resolve({ status, body: response });
      });
      request.end();
    });
  };
}
