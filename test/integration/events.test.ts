import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { UnavailableError } from '../../src/errors.js';
import { KeyEventData, ResyncEventData } from '../../src/http/schemas/events.js';
import { auditRecords, createKey, issueToken, putPolicy } from '../helpers/audit.js';
import { buildTestApp, changesApplied, describeEachDatabase, TEST_ADMIN_TOKEN, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

/**
 * `GET /v1/events` over a listening server: `inject` buffers a whole answer, and a stream has none. The feed polls
 * every 50 ms here, so events arrive within a few polls of the write.
 */

interface Received {
  readonly id: string | undefined;
  readonly event: string;
  readonly data: any;
}

/** One open stream, parsed as it arrives. Frames here are simple (one `data:` line), so the parser is too. */
interface Subscriber {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly events: Received[];
  readonly comments: string[];
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

/**
 * Not a latency bound (the feed polls every second): how long a test waits before it calls an event lost. Generous,
 * because CI runs this beside three-process tests on two cores.
 */
const WAIT_MS = 10_000;

/** `what` may be a function, so the failure message shows the state at the time out. */
async function until<T>(what: string | (() => string), probe: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describeEachDatabase('GET /v1/events', (kind) => {
  let t: TestApp;
  let url: string;
  const open: Subscriber[] = [];

  beforeEach(async () => {
    t = await buildTestApp(kind, { env: { KEYHOLD_CHANGE_POLL_INTERVAL_MS: '50' } });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    for (const subscriber of open.splice(0)) subscriber.close();
    vi.restoreAllMocks();
    await t.close();
  });

  function subscribe(token: string | null, headers: Record<string, string> = {}): Promise<Subscriber> {
    return new Promise((resolve, reject) => {
      const request = http.get(`${url}/v1/events`, {
        headers: { ...headers, ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
      });
      request.on('error', reject);
      request.on('response', (response) => {
        const events: Received[] = [];
        const comments: string[] = [];
        let buffer = '';
        let ended!: () => void;
        const subscriber: Subscriber = {
          status: response.statusCode ?? 0,
          headers: response.headers,
          events,
          comments,
          ended: new Promise((done) => (ended = done)),
          close: () => request.destroy(),
        };
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            const frame = buffer.slice(0, end).split('\n');
            buffer = buffer.slice(end + 2);
            const fields = new Map<string, string>();
            for (const line of frame) {
              if (line.startsWith(':')) comments.push(line.slice(1).trim());
              else fields.set(line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim());
            }
            const data = fields.get('data');
            if (data !== undefined) events.push({ id: fields.get('id'), event: fields.get('event') ?? 'message', data: JSON.parse(data) });
          }
        });
        response.on('end', () => ended());
        response.on('close', () => ended());
        open.push(subscriber);
        resolve(subscriber);
      });
    });
  }

  async function workload(name: string, keys: string[], actions = ['decrypt']): Promise<string> {
    const { token } = await issueToken(t, name);
    if (keys.length > 0) await putPolicy(t, name, [{ effect: 'allow', principals: [`token:${name}`], actions, keys }]);
    return token;
  }

  async function admin(path: string, body?: unknown): Promise<void> {
    const response = await t.call('POST', path, body);
    expect(response.status, response.text).toBeLessThan(300);
  }

  const keyEvents = (subscriber: Subscriber) => subscriber.events.filter((event) => event.event === 'key');

  it('opens a text/event-stream at once, before any change, with no-store caching', async () => {
    const subscriber = await subscribe(TEST_ADMIN_TOKEN);
    expect(subscriber.status).toBe(200);
    expect(subscriber.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(subscriber.headers['cache-control']).toBe('no-store');
    expect(subscriber.events).toEqual([]);
  });

  it('refuses a request without credentials with 401, and opens no stream', async () => {
    const subscribeSpy = vi.spyOn(t.services.changes, 'subscribe');
    const subscriber = await subscribe(null);
    expect(subscriber.status).toBe(401);
    expectProblem(await t.call('GET', '/v1/events', undefined, null), 401, 'KH_ERR_UNAUTHENTICATED');
    expect(subscribeSpy).not.toHaveBeenCalled();
  });

  it('a workload sees the events of the keys its policies let it use; an admin sees every key', async () => {
    await createKey(t, 'orders');
    await createKey(t, 'billing');
    const ordersToken = await workload('orders-reader', ['orders']);
    await changesApplied(t);
    const orders = await subscribe(ordersToken);
    const everything = await subscribe(TEST_ADMIN_TOKEN);

    await admin('/v1/keys/billing/disable');
    await admin('/v1/keys/orders/disable');

    await until('the admin to see both', () => keyEvents(everything).length === 2);
    await until('the workload to see orders', () => keyEvents(orders).length === 1);
    expect(keyEvents(everything).map((event) => event.data.keyName)).toEqual(['billing', 'orders']);
    const [seen] = keyEvents(orders);
    expect(seen!.data).toEqual({ seq: Number(seen!.id), keyName: 'orders', action: 'disable', at: expect.any(String) });
    expect(Object.keys(seen!.data).sort()).toEqual(Object.keys(KeyEventData.properties).sort());
  });

  it('keys:read alone is enough to see a key\'s events', async () => {
    await createKey(t, 'orders');
    const readerToken = await workload('auditor', ['orders'], ['keys:read']);
    await changesApplied(t);
    const reader = await subscribe(readerToken);
    await admin('/v1/keys/orders/rotate');
    await until(() => `the rotation (received ${JSON.stringify(reader.events)})`, () => keyEvents(reader).length === 1);
    expect(keyEvents(reader)[0]!.data.action).toBe('rotate');
  });

  it('a workload allowed no key gets an open stream with no key events, not a 403', async () => {
    await createKey(t, 'orders');
    const nobodyToken = await workload('nobody', []);
    await changesApplied(t);
    const nobody = await subscribe(nobodyToken);
    const everything = await subscribe(TEST_ADMIN_TOKEN);
    expect(nobody.status).toBe(200);
    await admin('/v1/keys/orders/disable');
    await until('the admin to see it', () => keyEvents(everything).length === 1);
    // The same feed delivers to both streams in one pass; give the workload's the same chance.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(keyEvents(nobody)).toEqual([]);
  });

  it('a policy change reaches every subscriber as resync, since what each may use has changed', async () => {
    const workerToken = await workload('worker', ['orders']);
    await changesApplied(t);
    const workloadStream = await subscribe(workerToken);
    const adminStream = await subscribe(TEST_ADMIN_TOKEN);
    await putPolicy(t, 'unrelated', [{ effect: 'allow', principals: ['token:someone'], actions: ['decrypt'], keys: ['x'] }]);
    for (const subscriber of [workloadStream, adminStream]) {
      const resync = await until('a resync', () => subscriber.events.find((event) => event.event === 'resync'));
      expect(resync.data).toEqual({ seq: Number(resync.id) });
      expect(Object.keys(resync.data)).toEqual(Object.keys(ResyncEventData.properties));
    }
  });

  it('a reconnect with Last-Event-ID replays the changes it missed, in order, filtered', async () => {
    await createKey(t, 'orders');
    await createKey(t, 'billing');
    const token = await workload('worker', ['orders']);
    await changesApplied(t);
    const first = await subscribe(token);
    await admin('/v1/keys/orders/disable');
    const seen = await until(() => `the first event (received ${JSON.stringify(first.events)})`, () => keyEvents(first)[0]);
    first.close();

    await admin('/v1/keys/orders/enable');
    await admin('/v1/keys/billing/disable');
    await admin('/v1/keys/orders/rotate');

    const again = await subscribe(token, { 'last-event-id': seen.id! });
    await until('the missed events', () => keyEvents(again).length === 2);
    expect(keyEvents(again).map((event) => [event.data.keyName, event.data.action])).toEqual([
      ['orders', 'enable'],
      ['orders', 'rotate'],
    ]);
    const ids = keyEvents(again).map((event) => Number(event.id));
    expect(ids[0]).toBeGreaterThan(Number(seen.id));
    expect(ids[1]).toBeGreaterThan(ids[0]!);
  });

  it('a Last-Event-ID this replica cannot vouch for gets a resync first', async () => {
    const subscriber = await subscribe(TEST_ADMIN_TOKEN, { 'last-event-id': '999999' });
    const first = await until('an event', () => subscriber.events[0]);
    expect(first.event).toBe('resync');
  });

  it('refuses a Last-Event-ID that is not a sequence number with 400', async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: '/v1/events',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'last-event-id': 'abc' },
    });
    expect(response.statusCode).toBe(400);
  });

  it('a client that disconnects leaves no listener on the feed', async () => {
    const { changes } = t.services;
    let listening = 0;
    const subscribeOriginal = changes.subscribe.bind(changes);
    vi.spyOn(changes, 'subscribe').mockImplementation((listener) => {
      listening += 1;
      const unsubscribe = subscribeOriginal(listener);
      return () => {
        listening -= 1;
        unsubscribe();
      };
    });
    const subscribers = await Promise.all([subscribe(TEST_ADMIN_TOKEN), subscribe(TEST_ADMIN_TOKEN), subscribe(TEST_ADMIN_TOKEN)]);
    expect(listening).toBe(3);
    for (const subscriber of subscribers) subscriber.close();
    await until('every listener to go', () => listening === 0);
  });

  it('revoking the token that opened a stream ends it', async () => {
    const { id, token } = await issueToken(t, 'worker');
    const subscriber = await subscribe(token);
    const response = await t.call('DELETE', `/v1/tokens/${id}`);
    expect(response.status, response.text).toBeLessThan(300);
    await subscriber.ended;
  });

  it('closing the app ends open streams instead of waiting for them', async () => {
    const subscriber = await subscribe(TEST_ADMIN_TOKEN);
    await t.app.close();
    await subscriber.ended;
  });

  it('the open is audited once, as an allowed GET /v1/events', async () => {
    const before = (await auditRecords(t)).length;
    const subscriber = await subscribe(TEST_ADMIN_TOKEN);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const records = (await auditRecords(t)).slice(before);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ route: '/v1/events', method: 'GET', status: 200, outcome: 'ok', principalId: 'token:bootstrap-admin' });
    subscriber.close();
  });

  it('fails closed: when the open cannot be audited the answer is 503 and nothing stays subscribed', async () => {
    const { changes } = t.services;
    let listening = 0;
    const subscribeOriginal = changes.subscribe.bind(changes);
    vi.spyOn(changes, 'subscribe').mockImplementation((listener) => {
      listening += 1;
      const unsubscribe = subscribeOriginal(listener);
      return () => {
        listening -= 1;
        unsubscribe();
      };
    });
    vi.spyOn(t.services.auditWriter!, 'append').mockRejectedValueOnce(new UnavailableError('The audit log is unavailable'));
    const subscriber = await subscribe(TEST_ADMIN_TOKEN);
    expect(subscriber.status).toBe(503);
    expect(subscriber.headers['content-type']).toMatch(/^application\/problem\+json/);
    await subscriber.ended;
    expect(subscriber.events).toEqual([]);
    await until('the listener to go', () => listening === 0);
  });
});
