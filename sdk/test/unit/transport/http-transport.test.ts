import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuthProvider, Credentials } from '../../../src/auth/auth-provider.js';
import {
  ClientClosedError,
  ConfigurationError,
  CredentialsError,
  DeadlineExceededError,
  InvalidArgumentError,
  ServiceError,
  ServiceUnavailableError,
} from '../../../src/errors.js';
import { createHttpTransport, MAX_RESPONSE_BYTES, SDK_USER_AGENT, type HttpTransportOptions, type Transport } from '../../../src/transport/http-transport.js';

/** A request as the test server saw it. */
interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly socket: Socket;
}

type Handler = (request: http.IncomingMessage, response: http.ServerResponse, index: number) => void;

interface TestServer {
  readonly url: string;
  readonly seen: Seen[];
  connections: number;
  closedConnections: number;
}

const servers: http.Server[] = [];
const transports: Transport[] = [];

afterEach(async () => {
  await Promise.all(transports.splice(0).map((transport) => transport.close()));
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

/** A local server that answers each request with `handler`, after reading its body. */
async function startServer(handler: Handler): Promise<TestServer> {
  const state: { seen: Seen[]; connections: number; closedConnections: number } = { seen: [], connections: 0, closedConnections: 0 };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const index = state.seen.length;
      state.seen.push({
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        socket: request.socket,
      });
      handler(request, response, index);
    });
  });
  server.on('connection', (socket: Socket) => {
    state.connections += 1;
    socket.on('close', () => {
      state.closedConnections += 1;
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, { url: `http://127.0.0.1:${port}` });
}

function json(response: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}

function problem(response: http.ServerResponse, status: number, code: string, extra: http.OutgoingHttpHeaders = {}): void {
  const body = { type: 'about:blank', title: 'x', status, detail: `The service explains ${code}`, code, requestId: `req-${status}` };
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(text), ...extra });
  response.end(text);
}

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

/** A clock whose sleep only moves time forward: tests assert waits without waiting. */
function fakeClock(): { now: () => number; sleep: (ms: number) => Promise<void>; slept: number[] } {
  let time = NOW;
  const slept: number[] = [];
  return {
    now: () => time,
    sleep: async (ms) => {
      slept.push(ms);
      time += ms;
    },
    slept,
  };
}

/** Bearer tokens in order: `invalidate()` moves to the next. */
function tokens(...values: string[]): AuthProvider & { invalidations: number; reads: number } {
  let index = 0;
  const provider = {
    invalidations: 0,
    reads: 0,
    credentials: async (): Promise<Credentials> => {
      provider.reads += 1;
      return { headers: { authorization: `Bearer ${values[Math.min(index, values.length - 1)]}` } };
    },
    invalidate: (): void => {
      provider.invalidations += 1;
      index += 1;
    },
  };
  return provider;
}

function transport(server: TestServer, overrides: Partial<HttpTransportOptions> = {}): Transport {
  const created = createHttpTransport({
    url: server.url,
    auth: tokens('t0k3n'),
    timeoutMs: 60_000,
    retry: { retries: 3, baseDelayMs: 100, maxDelayMs: 1_000 },
    random: () => 0.5,
    ...fakeClock(),
    ...overrides,
  });
  transports.push(created);
  return created;
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (error: unknown) => error,
  );
}

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('createHttpTransport: requests', () => {
  it('sends JSON with the content type, accept, user agent and auth headers, and parses the JSON answer', async () => {
    const server = await startServer((_req, res) => json(res, 200, { ok: true, n: 1 }));
    const answer = await transport(server).request<{ ok: boolean }>('POST', '/v1/keys/a/encrypt', { plaintext: 'aGk=' });
    expect(answer).toEqual({ ok: true, n: 1 });
    const [seen] = server.seen;
    expect(seen?.method).toBe('POST');
    expect(seen?.url).toBe('/v1/keys/a/encrypt');
    expect(JSON.parse(seen?.body ?? '')).toEqual({ plaintext: 'aGk=' });
    expect(seen?.headers['content-type']).toBe('application/json');
    expect(seen?.headers.accept).toBe('application/json');
    expect(seen?.headers['user-agent']).toBe(SDK_USER_AGENT);
    expect(SDK_USER_AGENT).toBe('keyhold-sdk/0.1.0');
    expect(seen?.headers.authorization).toBe('Bearer t0k3n');
  });

  it('sends a GET without a body or content type', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    await transport(server).request('GET', '/v1/whoami');
    expect(server.seen[0]?.method).toBe('GET');
    expect(server.seen[0]?.headers['content-type']).toBeUndefined();
    expect(server.seen[0]?.body).toBe('');
  });

  it('sends a POST without a body as an empty body', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    await transport(server).request('POST', '/v1/keys/a/rotate');
    expect(server.seen[0]?.headers['content-length']).toBe('0');
    expect(server.seen[0]?.body).toBe('');
  });

  it('puts the application user agent before its own', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    await transport(server, { userAgent: 'payments/2.1' }).request('GET', '/x');
    expect(server.seen[0]?.headers['user-agent']).toBe(`payments/2.1 ${SDK_USER_AGENT}`);
  });

  it('keeps the path of the service URL as a prefix', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    await transport(server, { url: `${server.url}/keyhold/` }).request('GET', '/v1/whoami?x=1');
    expect(server.seen[0]?.url).toBe('/keyhold/v1/whoami?x=1');
  });

  it('sends the path as given, without resolving dot segments', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    await transport(server).request('GET', '/v1/keys/%2E%2E/a/../b');
    expect(server.seen[0]?.url).toBe('/v1/keys/%2E%2E/a/../b');
  });

  it('answers undefined to a 204', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(204);
      res.end();
    });
    await expect(transport(server).request('POST', '/v1/keys/a/disable')).resolves.toBeUndefined();
  });

  it('serves many concurrent calls without a listener-leak warning', async () => {
    const server = await startServer((req, res) => json(res, 200, { url: req.url }));
    const client = transport(server);
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => client.request<{ url: string }>('GET', `/n/${i}`)));
      expect(answers.map((a) => a.url)).toEqual(Array.from({ length: 40 }, (_, i) => `/n/${i}`));
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  it('reuses one keep-alive connection for calls in sequence', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const client = transport(server);
    for (let i = 0; i < 5; i += 1) await client.request('GET', '/x');
    expect(server.seen).toHaveLength(5);
    expect(server.connections).toBe(1);
    expect(new Set(server.seen.map((s) => s.socket)).size).toBe(1);
  });
});

describe('createHttpTransport: retries', () => {
  it('retries a 503 and returns the answer that follows', async () => {
    const server = await startServer((_req, res, i) => (i === 0 ? problem(res, 503, 'KH_ERR_UNAVAILABLE') : json(res, 200, { ok: 1 })));
    const clock = fakeClock();
    await expect(transport(server, clock).request('GET', '/x')).resolves.toEqual({ ok: 1 });
    expect(server.seen).toHaveLength(2);
    // Full jitter: random() 0.5 times the first ceiling, 100 ms.
    expect(clock.slept).toEqual([50]);
  });

  it('waits at least the delta-seconds of Retry-After on a 429', async () => {
    const server = await startServer((_req, res, i) => (i === 0 ? problem(res, 429, 'KH_ERR_RATE_LIMITED', { 'retry-after': '3' }) : json(res, 200, {})));
    const clock = fakeClock();
    await transport(server, clock).request('GET', '/x');
    expect(server.seen).toHaveLength(2);
    expect(clock.slept).toHaveLength(1);
    expect(clock.slept[0]).toBeGreaterThanOrEqual(3_000);
  });

  it('waits until the HTTP-date of Retry-After', async () => {
    const clock = fakeClock();
    const server = await startServer((_req, res, i) =>
      i === 0 ? problem(res, 503, 'KH_ERR_UNAVAILABLE', { 'retry-after': new Date(clock.now() + 4_000).toUTCString() }) : json(res, 200, {}),
    );
    await transport(server, clock).request('GET', '/x');
    expect(clock.slept[0]).toBeGreaterThanOrEqual(4_000);
  });

  it('stops with DeadlineExceededError, without sleeping, when Retry-After is past the deadline', async () => {
    const server = await startServer((_req, res) => problem(res, 503, 'KH_ERR_UNAVAILABLE', { 'retry-after': '120' }));
    const clock = fakeClock();
    const error = await failure(transport(server, { ...clock, timeoutMs: 10_000 }).request('GET', '/x'));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect((error as Error).cause).toBeInstanceOf(ServiceError);
    expect(server.seen).toHaveLength(1);
    expect(clock.slept).toEqual([]);
  });

  it('ends with ServiceUnavailableError after retries + 1 attempts on a service that stays down', async () => {
    const server = await startServer((_req, res) => problem(res, 503, 'KH_ERR_UNAVAILABLE'));
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).attempts).toBe(4);
    const cause = (error as Error).cause as ServiceError;
    expect(cause).toBeInstanceOf(ServiceError);
    expect(cause.status).toBe(503);
    expect(cause.serviceCode).toBe('KH_ERR_UNAVAILABLE');
    expect(server.seen).toHaveLength(4);
  });

  it('retries a connection the server reset', async () => {
    const server = await startServer((req, res, i) => (i === 0 ? req.socket.destroy() : json(res, 200, { ok: 2 })));
    await expect(transport(server).request('POST', '/x', { a: 1 })).resolves.toEqual({ ok: 2 });
    expect(server.seen).toHaveLength(2);
  });

  it('retries an answer cut off in the middle of its body', async () => {
    const server = await startServer((req, res, i) => {
      if (i > 0) return json(res, 200, { ok: 3 });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"partial":', () => req.socket.destroy());
    });
    await expect(transport(server).request('GET', '/x')).resolves.toEqual({ ok: 3 });
    expect(server.seen).toHaveLength(2);
  });

  it('ends with ServiceUnavailableError when every attempt is reset, keeping the reset as cause', async () => {
    const server = await startServer((req) => req.socket.destroy());
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).attempts).toBe(4);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    expect(server.seen).toHaveLength(4);
  });

  it('retries refused connections, then ends with ServiceUnavailableError', async () => {
    const port = await closedPort();
    const clock = fakeClock();
    const client = createHttpTransport({
      url: `http://127.0.0.1:${port}`,
      auth: tokens('x'),
      timeoutMs: 60_000,
      retry: { retries: 2, baseDelayMs: 100, maxDelayMs: 1_000 },
      random: () => 1,
      ...clock,
    });
    transports.push(client);
    const error = await failure(client.request('GET', '/x'));
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).attempts).toBe(3);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    expect(clock.slept).toEqual([100, 200]);
  });

  it('ends with DeadlineExceededError when the service does not answer in time', async () => {
    const server = await startServer(() => undefined);
    // Real clock: the server never answers, so only the deadline can end the call.
    const client = createHttpTransport({ url: server.url, auth: tokens('x'), timeoutMs: 200, retry: { retries: 3, baseDelayMs: 10, maxDelayMs: 10 } });
    transports.push(client);
    const error = await failure(client.request('GET', '/slow'));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect((error as Error).message).toContain('200 ms');
    expect(server.seen).toHaveLength(1);
  });

  it('takes a per-call timeoutMs over the default', async () => {
    const server = await startServer(() => undefined);
    const client = createHttpTransport({ url: server.url, auth: tokens('x'), timeoutMs: 60_000, retry: { retries: 0, baseDelayMs: 10, maxDelayMs: 10 } });
    transports.push(client);
    const error = await failure(client.request('GET', '/slow', undefined, { timeoutMs: 100 }));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect((error as Error).message).toContain('100 ms');
  });

  it('keeps the last failure as the cause when the deadline ends a retried call', async () => {
    const server = await startServer((_req, res, i) => (i === 0 ? problem(res, 502, 'KH_ERR_INTERNAL') : undefined));
    const client = createHttpTransport({ url: server.url, auth: tokens('x'), timeoutMs: 1_000, retry: { retries: 3, baseDelayMs: 1, maxDelayMs: 1 } });
    transports.push(client);
    const error = await failure(client.request('GET', '/x'));
    expect(error).toBeInstanceOf(DeadlineExceededError);
    expect(((error as Error).cause as ServiceError).status).toBe(502);
  });
});

describe('createHttpTransport: answers that are final', () => {
  const cases = [
    { status: 400, code: 'KH_ERR_VALIDATION', sdk: 'KH_SDK_SERVICE_ERROR' },
    { status: 403, code: 'KH_ERR_FORBIDDEN', sdk: 'KH_SDK_ACCESS_DENIED' },
    { status: 404, code: 'KH_ERR_KEY_NOT_FOUND', sdk: 'KH_SDK_KEY_NOT_FOUND' },
    { status: 409, code: 'KH_ERR_KEY_DISABLED', sdk: 'KH_SDK_KEY_STATE' },
  ] as const;

  for (const { status, code, sdk } of cases) {
    it(`maps a ${status} ${code} problem to ${sdk}, after exactly one attempt`, async () => {
      const server = await startServer((_req, res) => problem(res, status, code));
      const clock = fakeClock();
      const error = await failure(transport(server, clock).request('POST', '/v1/keys/a/encrypt', { plaintext: 'c2VjcmV0' }));
      expect(error).toBeInstanceOf(ServiceError);
      expect(error).toMatchObject({ code: sdk, status, serviceCode: code, requestId: `req-${status}` });
      expect(server.seen).toHaveLength(1);
      expect(clock.slept).toEqual([]);
    });
  }

  it('maps a 4xx that is not a problem document by its status, with the request id header', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html', 'x-request-id': 'abc-123' });
      res.end('<h1>not here</h1>');
    });
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toMatchObject({ code: 'KH_SDK_SERVICE_ERROR', status: 404, serviceCode: undefined, requestId: 'abc-123' });
    expect(server.seen).toHaveLength(1);
  });

  it('ignores a service code that does not look like one', async () => {
    const server = await startServer((_req, res) => json(res, 400, { code: 'plaintext is hunter2', requestId: 'r1' }));
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toMatchObject({ serviceCode: undefined, requestId: 'r1' });
  });

  it('never puts bodies, tokens or headers into the error', async () => {
    const server = await startServer((_req, res) => problem(res, 400, 'KH_ERR_VALIDATION', { 'x-echo': 'Bearer s3cr3t-t0k3n' }));
    const error = await failure(
      transport(server, { auth: tokens('s3cr3t-t0k3n') }).request('POST', '/x', { plaintext: 'cGxhaW50ZXh0LXNlY3JldA==' }),
    );
    const rendered = `${String(error)} ${(error as Error).stack ?? ''} ${JSON.stringify(error)}`;
    for (const secret of ['s3cr3t-t0k3n', 'cGxhaW50ZXh0LXNlY3JldA==', 'authorization']) {
      expect(rendered).not.toContain(secret);
    }
  });

  it("keeps the service's detail and code from a 403 problem, on the error and in its message", async () => {
    const detail = "Not allowed to decrypt with key 'payments.orders'";
    const server = await startServer((_req, res) => {
      const text = JSON.stringify({ type: 'about:blank', title: 'Not allowed', status: 403, detail, code: 'KH_ERR_FORBIDDEN', requestId: 'r403' });
      res.writeHead(403, { 'content-type': 'application/problem+json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
    const error = await failure(transport(server).request('POST', '/v1/decrypt', { ciphertext: 'kh1:x' }));
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ code: 'KH_SDK_ACCESS_DENIED', status: 403, serviceCode: 'KH_ERR_FORBIDDEN', requestId: 'r403', detail });
    expect((error as Error).message).toBe(`The service denied the request (HTTP 403 KH_ERR_FORBIDDEN): ${detail}`);
  });

  // A proxy in front of the service may echo the request, body and all: only the service's own problems are quoted.
  const notTheService = [
    ['an application/json answer', 'application/json', 'KH_ERR_VALIDATION', 'echo plaintext=hunter2'],
    ['a problem without a Keyhold code', 'application/problem+json', 'PROXY_DENIED', 'echo plaintext=hunter2'],
    ['a detail over several lines', 'application/problem+json', 'KH_ERR_VALIDATION', 'line one\nplaintext=hunter2'],
    ['a detail longer than a sentence', 'application/problem+json', 'KH_ERR_VALIDATION', `plaintext=hunter2 ${'x'.repeat(1100)}`],
  ] as const;
  for (const [what, contentType, code, detail] of notTheService) {
    it(`keeps no detail from ${what}`, async () => {
      const server = await startServer((_req, res) => {
        const text = JSON.stringify({ status: 400, detail, code, requestId: 'r400' });
        res.writeHead(400, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
      const error = await failure(transport(server).request('GET', '/x'));
      expect(error).toMatchObject({ status: 400, requestId: 'r400', detail: undefined });
      expect(`${String(error)} ${JSON.stringify(error)}`).not.toContain('hunter2');
    });
  }
});

describe('createHttpTransport: 401', () => {
  it('invalidates the credentials and retries once at once with fresh ones', async () => {
    const server = await startServer((req, res) =>
      req.headers.authorization === 'Bearer fresh' ? json(res, 200, { ok: 4 }) : problem(res, 401, 'KH_ERR_UNAUTHENTICATED'),
    );
    const auth = tokens('stale', 'fresh');
    const clock = fakeClock();
    await expect(transport(server, { ...clock, auth }).request('GET', '/x')).resolves.toEqual({ ok: 4 });
    expect(auth.invalidations).toBe(1);
    expect(server.seen.map((s) => s.headers.authorization)).toEqual(['Bearer stale', 'Bearer fresh']);
    expect(clock.slept).toEqual([]);
  });

  it('ends with UNAUTHENTICATED after the one retry is refused too', async () => {
    const server = await startServer((_req, res) => problem(res, 401, 'KH_ERR_UNAUTHENTICATED'));
    const auth = tokens('a', 'b', 'c');
    const error = await failure(transport(server, { auth }).request('GET', '/x'));
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ code: 'KH_SDK_UNAUTHENTICATED', status: 401, serviceCode: 'KH_ERR_UNAUTHENTICATED' });
    expect(auth.invalidations).toBe(1);
    expect(server.seen).toHaveLength(2);
  });

  it('re-authenticates only once per call, even across retries', async () => {
    const server = await startServer((_req, res, i) => [() => problem(res, 401, 'X'), () => problem(res, 503, 'Y'), () => problem(res, 401, 'X')][i]?.());
    const auth = tokens('a', 'b', 'c');
    const error = await failure(transport(server, { auth }).request('GET', '/x'));
    expect(error).toMatchObject({ code: 'KH_SDK_UNAUTHENTICATED' });
    expect(auth.invalidations).toBe(1);
    expect(server.seen).toHaveLength(3);
  });
});

describe('createHttpTransport: answers it refuses to read', () => {
  it('fails, without retrying, on an answer larger than 1 MiB that declares its length', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(MAX_RESPONSE_BYTES + 1) });
      res.end(Buffer.alloc(MAX_RESPONSE_BYTES + 1, 0x20));
    });
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ code: 'KH_SDK_SERVICE_ERROR', status: 200 });
    expect(server.seen).toHaveLength(1);
  });

  it('fails, without hanging, on a chunked answer that grows past 1 MiB', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      // Keeps sending until the client hangs up; the write callbacks stop once the socket is gone.
      const more = (): void => {
        if (!res.destroyed && !res.writableEnded) res.write(chunk, () => setImmediate(more));
      };
      more();
    });
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toMatchObject({ code: 'KH_SDK_SERVICE_ERROR', status: 200 });
    expect(server.seen).toHaveLength(1);
  });

  it('fails on a 2xx answer that is not JSON', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>captive portal</html>');
    });
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ code: 'KH_SDK_SERVICE_ERROR', status: 200 });
    expect((error as Error).message).not.toContain('captive');
  });

  it('fails on a 2xx answer labelled JSON that does not parse', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"truncated":');
    });
    const error = await failure(transport(server).request('GET', '/x'));
    expect(error).toMatchObject({ code: 'KH_SDK_SERVICE_ERROR', status: 200 });
    expect(server.seen).toHaveLength(1);
  });
});

describe('createHttpTransport: cancellation and close', () => {
  it('rejects promptly with the abort reason when the caller aborts', async () => {
    const server = await startServer(() => undefined);
    const client = transport(server);
    const controller = new AbortController();
    const call = failure(client.request('GET', '/x', undefined, { signal: controller.signal }));
    while (server.seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    const reason = new Error('the user went away');
    controller.abort(reason);
    expect(await call).toBe(reason);
  });

  it('rejects at once, without a request, when the signal is already aborted', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const controller = new AbortController();
    controller.abort(new Error('already'));
    const error = await failure(transport(server).request('GET', '/x', undefined, { signal: controller.signal }));
    expect((error as Error).message).toBe('already');
    expect(server.seen).toHaveLength(0);
  });

  it('stops a backoff sleep when the caller aborts', async () => {
    const server = await startServer((_req, res) => problem(res, 503, 'KH_ERR_UNAVAILABLE'));
    let sleeping!: () => void;
    const asleep = new Promise<void>((resolve) => {
      sleeping = resolve;
    });
    // A sleep that never ends on its own: only the abort can end the call.
    const client = transport(server, {
      sleep: () => {
        sleeping();
        return new Promise<void>(() => undefined);
      },
    });
    const controller = new AbortController();
    const call = failure(client.request('GET', '/x', undefined, { signal: controller.signal }));
    await asleep;
    controller.abort(new Error('stop'));
    expect(((await call) as Error).message).toBe('stop');
  });

  it('refuses calls after close() with ClientClosedError', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const client = transport(server);
    await client.request('GET', '/x');
    await client.close();
    await expect(client.request('GET', '/x')).rejects.toBeInstanceOf(ClientClosedError);
    await client.close();
    expect(server.seen).toHaveLength(1);
  });

  it('ends a call in flight with ClientClosedError and closes its connections', async () => {
    const server = await startServer(() => undefined);
    const client = transport(server);
    const call = failure(client.request('GET', '/x'));
    while (server.seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    await client.close();
    expect(await call).toBeInstanceOf(ClientClosedError);
    while (server.closedConnections < 1) await new Promise((resolve) => setImmediate(resolve));
    expect(server.closedConnections).toBe(server.connections);
  });

  it('closes idle keep-alive connections on close()', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const client = transport(server);
    await client.request('GET', '/x');
    expect(server.closedConnections).toBe(0);
    await client.close();
    while (server.closedConnections < 1) await new Promise((resolve) => setImmediate(resolve));
    expect(server.closedConnections).toBe(1);
  });
});

describe('createHttpTransport: credentials', () => {
  it('passes a CredentialsError from the provider through, without a request', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const auth: AuthProvider = {
      credentials: () => Promise.reject(new CredentialsError('The token file /x could not be read')),
      invalidate: () => undefined,
    };
    const error = await failure(transport(server, { auth }).request('GET', '/x'));
    expect(error).toBeInstanceOf(CredentialsError);
    expect(server.seen).toHaveLength(0);
  });

  it('wraps any other provider failure in CredentialsError', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const auth: AuthProvider = {
      credentials: () => {
        throw new TypeError('boom');
      },
      invalidate: () => undefined,
    };
    const error = await failure(transport(server, { auth }).request('GET', '/x'));
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).cause).toBeInstanceOf(TypeError);
  });

  it('refuses a header value Node cannot send, without echoing it', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const auth: AuthProvider = { credentials: async () => ({ headers: { authorization: 'Bearer a\r\nb' } }), invalidate: () => undefined };
    const error = await failure(transport(server, { auth }).request('GET', '/x'));
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as Error).message).not.toContain('Bearer');
  });

  it('refuses a TLS identity over plain HTTP', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const auth: AuthProvider = {
      credentials: async () => ({ headers: {}, tls: { cert: 'c', key: 'k', generation: 1 } }),
      invalidate: () => undefined,
    };
    await expect(transport(server, { auth }).request('GET', '/x')).rejects.toBeInstanceOf(ConfigurationError);
  });
});

describe('createHttpTransport: arguments', () => {
  const base = { auth: tokens('x'), timeoutMs: 1_000, retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 1 } };

  it.each([
    ['a URL that does not parse', { url: 'not a url' }],
    ['a scheme other than http and https', { url: 'ftp://keyhold' }],
    ['a URL with a password', { url: 'https://user:pw@keyhold' }],
    ['a URL with a query', { url: 'https://keyhold/?a=1' }],
    ['a zero timeout', { url: 'https://keyhold', timeoutMs: 0 }],
    ['negative retries', { url: 'https://keyhold', retry: { retries: -1, baseDelayMs: 1, maxDelayMs: 1 } }],
    ['a CA for a plain-HTTP URL', { url: 'http://keyhold', ca: '-----BEGIN CERTIFICATE-----' }],
    ['a CA that is not PEM', { url: 'https://keyhold', ca: 'nope' }],
    ['a user agent with a newline', { url: 'https://keyhold', userAgent: 'a\nb' }],
  ])('refuses %s with ConfigurationError', (_name, options) => {
    expect(() => createHttpTransport({ ...base, ...options } as HttpTransportOptions)).toThrow(ConfigurationError);
  });

  it('does not echo the URL, which may hold a password', () => {
    expect(() => createHttpTransport({ ...base, url: 'https://user:hunter2@keyhold' })).toThrow(/^(?!.*hunter2)/);
  });

  it.each([
    ['a path without a leading /', 'GET', 'v1/keys', undefined],
    ['a protocol-relative path', 'GET', '//evil.example/x', undefined],
    ['a path with a space', 'GET', '/v1/keys/a b', undefined],
    ['a path with a newline', 'GET', '/v1/x\r\nHost: evil', undefined],
    ['a GET with a body', 'GET', '/x', { a: 1 }],
    ['a body that is not JSON', 'POST', '/x', { big: 1n }],
  ] as const)('refuses %s with InvalidArgumentError', async (_name, method, path, body) => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    await expect(transport(server).request(method, path, body)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(server.seen).toHaveLength(0);
  });
});
