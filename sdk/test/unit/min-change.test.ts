import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { apiToken } from '../../src/auth/api-token.js';
import { createClient, type KeyholdClient } from '../../src/client.js';
import { httpEventStreamConnector } from '../../src/events/connect.js';
import { EventSubscription } from '../../src/events/subscription.js';
import { encodeWrappedKey, wrappedKeyId } from '../../src/keys/wrapped-key.js';
import { createHttpTransport, MIN_CHANGE_HEADER, type Transport } from '../../src/transport/http-transport.js';

/**
 * A fake Keyhold: `/v1/events` streams are handed to the test to write to; every other request is recorded with its
 * `Keyhold-Min-Change` header and answered by `answer`.
 */
interface FakeKeyhold {
  readonly url: string;
  readonly streams: http.ServerResponse[];
  /** Each request that is not a stream, as `METHOD path` and the header it carried. */
  readonly calls: { readonly call: string; readonly minChange: string | string[] | undefined }[];
}

type Answer = (request: http.IncomingMessage, body: string, response: http.ServerResponse) => void;

const servers: http.Server[] = [];
const closers: Array<() => unknown> = [];

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  })));
});

async function fakeKeyhold(answer: Answer): Promise<FakeKeyhold> {
  const streams: http.ServerResponse[] = [];
  const calls: FakeKeyhold['calls'] = [];
  const server = http.createServer((request, response) => {
    if (request.url === '/v1/events') {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(': open\n\n');
      streams.push(response);
      return;
    }
    calls.push({ call: `${request.method} ${request.url}`, minChange: request.headers[MIN_CHANGE_HEADER] });
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => answer(request, Buffer.concat(chunks).toString('utf8'), response));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, streams, calls };
}

function json(response: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

/** Data keys for `orders`, and the unwrapping of the ones it issued. */
function dataKeyService(): Answer {
  const issued = new Map<string, string>();
  return (request, body, response) => {
    if (request.url === '/v1/keys/orders/datakey') {
      const wrapped = new Uint8Array([1, ...randomBytes(16), ...randomBytes(40)]);
      const ciphertext = encodeWrappedKey(wrapped);
      const plaintext = randomBytes(32).toString('base64');
      issued.set(ciphertext, plaintext);
      json(response, 200, { keyId: wrappedKeyId(wrapped), keyName: 'orders', keyVersion: 1, ciphertext, plaintext });
    } else if (request.url === '/v1/decrypt') {
      const { ciphertext } = JSON.parse(body) as { ciphertext: string };
      json(response, 200, { keyId: 'id', keyName: 'orders', plaintext: issued.get(ciphertext) });
    } else {
      json(response, 200, { id: 'token:app', type: 'token' });
    }
  };
}

async function until(what: string, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function keyEvent(id: string, keyName = 'orders'): string {
  return `id: ${id}\nevent: key\ndata: ${JSON.stringify({ seq: Number(id), keyName, action: 'disable', at: '2026-01-01T00:00:00Z' })}\n\n`;
}

describe('EventSubscription.minChange', () => {
  async function subscribed(): Promise<{ subscription: EventSubscription; stream: () => http.ServerResponse; server: FakeKeyhold }> {
    const server = await fakeKeyhold(dataKeyService());
    const subscription = new EventSubscription({
      connect: httpEventStreamConnector({ url: server.url, auth: apiToken('kh_test') }),
      target: { purge: () => undefined, purgeAll: () => undefined },
      baseDelayMs: 10,
      maxDelayMs: 40,
      random: () => 0.5,
    });
    closers.push(() => subscription.close());
    subscription.start();
    await until('the stream', () => server.streams.length === 1);
    return { subscription, server, stream: () => server.streams.at(-1)! };
  }

  it('is undefined until an event names a change sequence, then the last one named', async () => {
    const { subscription, stream } = await subscribed();
    expect(subscription.minChange()).toBeUndefined();
    stream().write(keyEvent('3'));
    stream().write(keyEvent('7'));
    await until('the events', () => subscription.minChange() === '7');
  });

  it('never goes back, though a replica behind the client resyncs it to an earlier id', async () => {
    const { subscription, server, stream } = await subscribed();
    stream().write(keyEvent('41'));
    await until('the event', () => subscription.minChange() === '41');
    stream().end();
    await until('the reconnect', () => server.streams.length === 2);
    stream().write('id: 30\nevent: resync\ndata: {"seq":30}\n\n');
    await until('the resync', () => subscription.status().lastEventId === '30');
    expect(subscription.minChange()).toBe('41');
  });

  it('ignores an id that is not a change sequence, which the service would refuse', async () => {
    const { subscription, stream } = await subscribed();
    stream().write(keyEvent('5'));
    for (const id of ['abc', '-1', '007', '9007199254740992']) stream().write(`id: ${id}\nevent: key\ndata: {"keyName":"orders"}\n\n`);
    await until('the events', () => subscription.status().lastEventId === '9007199254740992');
    expect(subscription.minChange()).toBe('5');
  });
});

describe('the transport and Keyhold-Min-Change', () => {
  function transportTo(server: FakeKeyhold, minChange?: () => string | undefined): Transport {
    const transport = createHttpTransport({
      url: server.url,
      auth: apiToken('kh_test'),
      timeoutMs: 5000,
      retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 1 },
      ...(minChange === undefined ? {} : { minChange }),
    });
    closers.push(() => transport.close());
    return transport;
  }

  it('sends no header while there is no sequence to send', async () => {
    const server = await fakeKeyhold(dataKeyService());
    await transportTo(server).request('GET', '/v1/whoami');
    await transportTo(server, () => undefined).request('GET', '/v1/whoami');
    expect(server.calls.map((call) => call.minChange)).toEqual([undefined, undefined]);
  });

  it('reads the sequence for each attempt, so a retry after a replica\'s 503 carries the latest', async () => {
    let attempts = 0;
    const server = await fakeKeyhold((_request, _body, response) => {
      attempts += 1;
      if (attempts === 1) json(response, 503, { code: 'KH_ERR_UNAVAILABLE', status: 503 }, { 'retry-after': '0' });
      else json(response, 200, {});
    });
    let seq = 8;
    await transportTo(server, () => String(seq++)).request('POST', '/v1/keys/orders/datakey', {});
    expect(server.calls.map((call) => call.minChange)).toEqual(['8', '9']);
  });
});

describe('the client and Keyhold-Min-Change', () => {
  async function clientOf(server: FakeKeyhold): Promise<KeyholdClient> {
    const client = createClient({ url: server.url, auth: apiToken('kh_test'), events: { baseDelayMs: 10, maxDelayMs: 40 } });
    closers.push(() => client.close());
    return client;
  }

  it('once an event names a change, every call carries it: the refetch after the purge, decryption and the rest', async () => {
    const server = await fakeKeyhold(dataKeyService());
    const client = await clientOf(server);
    const message = await client.encrypt('orders', 'before the event');
    expect(server.calls).toEqual([{ call: 'POST /v1/keys/orders/datakey', minChange: undefined }]);

    await until('the stream', () => server.streams.length === 1);
    server.streams[0]!.write(keyEvent('12'));
    await until('the event', () => client.events.status().lastEventId === '12');

    await client.encrypt('orders', 'after the event');
    expect((await client.decrypt(message)).toString()).toBe('before the event');
    await client.ready();
    expect(server.calls.slice(1)).toEqual([
      { call: 'POST /v1/keys/orders/datakey', minChange: '12' },
      { call: 'POST /v1/decrypt', minChange: '12' },
      { call: 'GET /readyz', minChange: '12' },
      { call: 'GET /v1/whoami', minChange: '12' },
    ]);
  });

  it('with events off, no call carries the header', async () => {
    const server = await fakeKeyhold(dataKeyService());
    const client = createClient({ url: server.url, auth: apiToken('kh_test'), events: false });
    closers.push(() => client.close());
    await client.encrypt('orders', 'x');
    await client.ready();
    expect(server.calls.every((call) => call.minChange === undefined)).toBe(true);
  });
});
