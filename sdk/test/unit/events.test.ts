import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { apiToken } from '../../src/auth/api-token.js';
import type { AuthProvider } from '../../src/auth/auth-provider.js';
import { createClient } from '../../src/client.js';
import { ConfigurationError } from '../../src/errors.js';
import { clientOptionsFromEnv } from '../../src/env.js';
import { httpEventStreamConnector } from '../../src/events/connect.js';
import { SseParser, type ServerSentEvent } from '../../src/events/sse-parser.js';
import { EventSubscription, type SubscriptionOptions } from '../../src/events/subscription.js';

function parse(chunks: string[], lastEventId?: string): { events: ServerSentEvent[]; parser: SseParser } {
  const events: ServerSentEvent[] = [];
  const parser = new SseParser((event) => events.push(event), lastEventId);
  for (const chunk of chunks) parser.push(chunk);
  return { events, parser };
}

describe('SseParser', () => {
  const stream = 'id: 7\nevent: key\ndata: {"keyName":"orders"}\n\n: keep-alive\n\nevent: resync\nid: 9\ndata: {"seq":9}\n\n';
  const expected = [
    { type: 'key', data: '{"keyName":"orders"}', lastEventId: '7' },
    { type: 'resync', data: '{"seq":9}', lastEventId: '9' },
  ];

  it('dispatches each event at its blank line, with its type, data and id', () => {
    expect(parse([stream]).events).toEqual(expected);
  });

  it('gives the same events whatever the chunk boundaries, down to one character per chunk', () => {
    expect(parse([...stream]).events).toEqual(expected);
    for (let split = 1; split < stream.length; split++) {
      expect(parse([stream.slice(0, split), stream.slice(split)]).events, `split at ${split}`).toEqual(expected);
    }
  });

  it('accepts CRLF and CR line ends, including a CRLF split across two chunks', () => {
    const crlf = stream.replaceAll('\n', '\r\n');
    expect(parse([crlf]).events).toEqual(expected);
    expect(parse([...crlf]).events).toEqual(expected);
    expect(parse([stream.replaceAll('\n', '\r')]).events).toEqual(expected);
    expect(parse(['data: a\r', '\ndata: b\r', '\n\r', '\n']).events).toEqual([{ type: 'message', data: 'a\nb', lastEventId: '' }]);
  });

  it('joins multi-line data with LF, and strips one space after the colon only', () => {
    expect(parse(['data:one\ndata:  two\ndata\n\n']).events).toEqual([{ type: 'message', data: 'one\n two\n', lastEventId: '' }]);
  });

  it('ignores comments, unknown fields and retry, and a leading byte-order mark', () => {
    expect(parse(['\ufeff: hello\nretry: 10\nfoo: bar\ndata: x\n\n']).events).toEqual([{ type: 'message', data: 'x', lastEventId: '' }]);
  });

  it('an event without data dispatches nothing but still moves the last event id', () => {
    const { events, parser } = parse(['id: 5\nevent: key\n\n']);
    expect(events).toEqual([]);
    expect(parser.lastEventId).toBe('5');
  });

  it('keeps the id it was given until the stream names another; an id with NUL is ignored', () => {
    expect(parse(['data: a\n\n'], '3').events[0]!.lastEventId).toBe('3');
    expect(parse(['id: 4\u0000\ndata: a\n\n'], '3').events[0]!.lastEventId).toBe('3');
  });

  it('does not dispatch an event whose blank line has not arrived', () => {
    expect(parse(['data: a\n']).events).toEqual([]);
  });

  it('refuses a line that grows past 64 KiB', () => {
    const parser = new SseParser(() => undefined);
    expect(() => parser.push('data: '.padEnd(70_000, 'x'))).toThrow(RangeError);
  });
});

/** A fake `/v1/events`: each connection is handed to the test, which answers it as it likes. */
interface FakeServer {
  readonly url: string;
  readonly requests: http.IncomingMessage[];
  readonly responses: http.ServerResponse[];
  /** Resolves with the index of the next connection once it arrives. */
  next(): Promise<number>;
}

const servers: http.Server[] = [];
const subscriptions: EventSubscription[] = [];

afterEach(async () => {
  for (const subscription of subscriptions.splice(0)) subscription.close();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  })));
});

type Answer = (response: http.ServerResponse, index: number) => void;

/** By default every connection gets an open stream that sends nothing. */
const openStream: Answer = (response) => {
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  response.write(': open\n\n');
};

async function fakeServer(answer: Answer = openStream): Promise<FakeServer> {
  const requests: http.IncomingMessage[] = [];
  const responses: http.ServerResponse[] = [];
  const waiting: Array<(index: number) => void> = [];
  const server = http.createServer((request, response) => {
    const index = requests.length;
    requests.push(request);
    responses.push(response);
    answer(response, index);
    waiting.shift()?.(index);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let seen = 0;
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    responses,
    next: () => {
      const index = seen++;
      if (index < requests.length) return Promise.resolve(index);
      return new Promise((resolve) => waiting.push(() => resolve(index)));
    },
  };
}

interface Purges {
  readonly log: string[];
}

function subscribe(server: FakeServer, options: Partial<SubscriptionOptions> = {}, auth: AuthProvider = apiToken('kh_test')): { subscription: EventSubscription; purges: Purges } {
  const purges: Purges = { log: [] };
  const subscription = new EventSubscription({
    connect: httpEventStreamConnector({ url: server.url, auth }),
    target: { purge: (keyName) => purges.log.push(keyName), purgeAll: () => purges.log.push('*') },
    baseDelayMs: 10,
    maxDelayMs: 40,
    random: () => 0.5,
    ...options,
  });
  subscriptions.push(subscription);
  subscription.start();
  return { subscription, purges };
}

async function until(what: string, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('EventSubscription', () => {
  it('connects to /v1/events with the credentials, asking for an event stream', async () => {
    const server = await fakeServer();
    const { subscription } = subscribe(server);
    const first = server.requests[await server.next()]!;
    expect(first.url).toBe('/v1/events');
    expect(first.headers.authorization).toBe('Bearer kh_test');
    expect(first.headers.accept).toBe('text/event-stream');
    expect(first.headers['last-event-id']).toBeUndefined();
    await until('the stream to open', () => subscription.status().state === 'open');
  });

  it('a key event purges that key only; a resync purges everything', async () => {
    const server = await fakeServer();
    const { purges } = subscribe(server);
    const response = server.responses[await server.next()]!;
    response.write('id: 3\nevent: key\ndata: {"seq":3,"keyName":"orders","action":"disable","at":"2026-01-01T00:00:00Z"}\n\n');
    await until('the key purge', () => purges.log.length === 1);
    response.write('id: 4\nevent: resync\ndata: {"seq":4}\n\n');
    await until('the resync', () => purges.log.length === 2);
    expect(purges.log).toEqual(['orders', '*']);
  });

  it('a key event it cannot read purges everything rather than guess', async () => {
    const server = await fakeServer();
    const { purges } = subscribe(server);
    server.responses[await server.next()]!.write('event: key\ndata: not json\n\n');
    await until('the purge', () => purges.log.length === 1);
    expect(purges.log).toEqual(['*']);
  });

  it('on reconnect it sends Last-Event-ID and purges everything, both when the stream is lost and when it is back', async () => {
    const server = await fakeServer();
    const { subscription, purges } = subscribe(server);
    const response = server.responses[await server.next()]!;
    response.write('id: 41\nevent: key\ndata: {"keyName":"orders"}\n\n');
    await until('the key purge', () => purges.log.length === 1);
    response.end();
    const again = server.requests[await server.next()]!;
    expect(again.headers['last-event-id']).toBe('41');
    await until('the second stream', () => subscription.status().connections === 2);
    expect(purges.log).toEqual(['orders', '*', '*']);
    expect(subscription.status()).toMatchObject({ state: 'open', lastEventId: '41' });
  });

  it('a cut connection is a reconnect too', async () => {
    const server = await fakeServer();
    const { purges } = subscribe(server);
    server.responses[await server.next()]!.socket!.destroy();
    await server.next();
    await until('the purges', () => purges.log.length === 2);
    expect(purges.log).toEqual(['*', '*']);
  });

  it('a 401 or 403 purges everything and backs off; a 401 also invalidates the credentials', async () => {
    const statuses = [401, 403, 200];
    const server = await fakeServer((response, index) => {
      if (statuses[index] === 200) openStream(response, index);
      else response.writeHead(statuses[index]!, { 'content-type': 'application/problem+json' }).end('{}');
    });
    let invalidated = 0;
    const auth: AuthProvider = { credentials: async () => ({ headers: { authorization: 'Bearer kh_test' } }), invalidate: () => { invalidated += 1; } };
    const { subscription, purges } = subscribe(server, {}, auth);
    await until('the stream to open', () => subscription.status().state === 'open');
    expect(purges.log).toEqual(['*', '*']);
    expect(invalidated).toBe(1);
    // The first stream to open after refusals has no earlier stream to vouch for.
    expect(subscription.status().connections).toBe(1);
  });

  it('backs off exponentially with jitter between failed attempts, up to maxDelayMs', async () => {
    const server = await fakeServer((response) => response.writeHead(503).end());
    const draws: number[] = [];
    const times: number[] = [];
    server.requests.length = 0;
    const { subscription } = subscribe(server, { baseDelayMs: 20, maxDelayMs: 80, random: () => { draws.push(1); return 0.99; } });
    for (let i = 0; i < 9; i++) {
      await server.next();
      times.push(Date.now());
    }
    subscription.close();
    const gaps = times.slice(1).map((time, i) => time - times[i]!);
    // Ceilings 20, 40, then 80 ms six times, drawn at 99%: each gap is at least most of its ceiling, and none grows
    // past the cap.
    expect(gaps[0]).toBeGreaterThanOrEqual(15);
    expect(gaps[1]).toBeGreaterThanOrEqual(35);
    expect(gaps[2]).toBeGreaterThanOrEqual(70);
    expect(gaps[3]).toBeGreaterThanOrEqual(70);
    // Far above the 80 ms cap, so a scheduling pause on a loaded machine does not fail it; uncapped, the seventh gap
    // would be 1.27 s and the eighth 2.5 s.
    expect(Math.max(...gaps)).toBeLessThan(1000);
    expect(draws.length).toBeGreaterThanOrEqual(4);
    expect(subscription.status().lastFailure).toBe(503);
  });

  it('an answer that is not an event stream counts as a failure and purges nothing', async () => {
    const server = await fakeServer((response) => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    const { subscription, purges } = subscribe(server);
    await server.next();
    await server.next();
    expect(subscription.status()).toMatchObject({ connections: 0, lastFailure: 200 });
    expect(purges.log).toEqual([]);
  });

  it('a stream silent for idleTimeoutMs is replaced', async () => {
    const server = await fakeServer();
    const { purges } = subscribe(server, { idleTimeoutMs: 50 });
    await server.next();
    await server.next();
    await until('the purges', () => purges.log.length === 2);
  });

  it('close() ends the stream and every retry', async () => {
    const server = await fakeServer();
    const { subscription, purges } = subscribe(server);
    const response = server.responses[await server.next()]!;
    await until('the stream to open', () => subscription.status().state === 'open');
    const closed = new Promise((resolve) => response.on('close', resolve));
    subscription.close();
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.requests).toHaveLength(1);
    expect(subscription.status().state).toBe('closed');
    expect(purges.log).toEqual([]);
  });
});

describe('the client and its subscription', () => {
  it('subscribes on first use, not when it is created, and stops on close()', async () => {
    const server = await fakeServer();
    const client = createClient({ url: server.url, auth: apiToken('kh_test'), retries: 0, timeoutMs: 500 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.requests).toHaveLength(0);
    expect(client.events.status().state).toBe('idle');
    await client.ready().catch(() => undefined);
    await server.next();
    await until('the stream to open', () => client.events.status().state === 'open');
    await client.close();
    expect(client.events.status().state).toBe('closed');
  });

  it('events: false, cache: false and a custom transport subscribe to nothing', async () => {
    const server = await fakeServer();
    const transport = { request: async () => ({}) as never, close: async () => undefined };
    for (const options of [{ events: false as const }, { cache: false as const }, { transport }]) {
      const client = createClient({ url: server.url, auth: apiToken('kh_test'), retries: 0, timeoutMs: 200, ...options });
      await client.ready().catch(() => undefined);
      expect(client.events.status().state).toBe('off');
      await client.close();
    }
    expect(server.requests.filter((request) => request.url === '/v1/events')).toHaveLength(0);
  });

  it('refuses events options that are not delays', () => {
    expect(() => createClient({ url: 'http://127.0.0.1:1', auth: apiToken('kh_test'), events: { maxDelayMs: -1 } })).toThrow(ConfigurationError);
  });

  it('KEYHOLD_EVENTS=off turns the subscription off; any value but on or off is refused', () => {
    const env = { KEYHOLD_URL: 'http://127.0.0.1:1', KEYHOLD_TOKEN: 'kh_test' };
    expect(clientOptionsFromEnv({ ...env, KEYHOLD_EVENTS: 'off' }).events).toBe(false);
    expect(clientOptionsFromEnv({ ...env, KEYHOLD_EVENTS: 'on' })).not.toHaveProperty('events');
    expect(() => clientOptionsFromEnv({ ...env, KEYHOLD_EVENTS: 'no' })).toThrow(ConfigurationError);
  });

  // Runs the built SDK in a child process; skipped, not failed, before `npm run build`.
  const built = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
  it.runIf(existsSync(built))('never keeps the process alive: a script whose only open thing is the stream exits', async () => {
    const server = await fakeServer((response, index) => {
      if (server.requests[index]!.url === '/v1/events') openStream(response, index);
      else response.writeHead(404).end();
    });
    const script = `
      const { createClient, apiToken } = await import(${JSON.stringify(built)});
      const client = createClient({ url: ${JSON.stringify(server.url)}, auth: apiToken('kh_test'), retries: 0 });
      client.ready().catch(() => undefined);
      // Waits for the stream to open (5 s at most), then lets go: the process must exit with the stream still open.
      const deadline = Date.now() + 5000;
      const report = () => {
        const { state } = client.events.status();
        if (state === 'open' || Date.now() > deadline) console.log(state);
        else setTimeout(report, 20);
      };
      setTimeout(report, 20);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(output.trim()).toBe('open');
    expect(code).toBe(0);
  }, 10_000);
});
