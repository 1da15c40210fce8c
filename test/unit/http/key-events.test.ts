import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Change, ChangeFeed, FeedEvent } from '../../../src/changes/change.js';
import { KeyEventStreams, type KeyEventStreamsOptions } from '../../../src/http/key-events.js';
import type { Principal } from '../../../src/context/principal.js';

/** A feed in memory: the test applies changes, and `changesSince` reads what was applied or recorded. */
class FakeFeed implements ChangeFeed {
  appliedSeq = 0;
  readonly stored: Change[] = [];
  readonly listeners = new Set<(event: FeedEvent) => void>();
  prunedThrough = 0;

  subscribe(listener: (event: FeedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async changesSince(seq: number, limit: number): Promise<readonly Change[] | 'gap'> {
    if (seq < this.prunedThrough) return 'gap';
    return this.stored.filter((change) => change.seq > seq).slice(0, limit);
  }

  /** What the feed does when the changes it has not applied were pruned: it jumps to the newest and says so. */
  resync(seq: number): void {
    this.appliedSeq = seq;
    for (const listener of this.listeners) listener({ type: 'resync', seq });
  }

  apply(change: Omit<Change, 'seq' | 'at'>): Change {
    const full: Change = { ...change, seq: this.stored.length + 1, at: new Date(0) };
    this.stored.push(full);
    this.appliedSeq = full.seq;
    for (const listener of this.listeners) listener({ type: 'change', change: full });
    return full;
  }
}

const WORKER: Principal = Object.freeze({ id: 'token:worker', type: 'token', attributes: { tokenId: 't-1' }, admin: false });

function setup(options: Partial<KeyEventStreamsOptions> = {}) {
  const feed = new FakeFeed();
  const streams = new KeyEventStreams({
    feed,
    authorizer: { mayEverUseKey: (principal, keyName) => principal.admin || keyName === 'orders' },
    refreshPolicies: () => undefined,
    ...options,
  });
  return { feed, streams };
}

/** Everything the stream produced so far, as text. */
function collect(stream: Readable): { text: () => string } {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (text += chunk));
  return { text: () => text };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

afterEach(() => {
  vi.useRealTimers();
});

describe('KeyEventStreams', () => {
  it('starts with a retry field, so the headers go out before any event', async () => {
    const { streams } = setup();
    const out = collect(streams.open(WORKER, undefined));
    await flush();
    expect(out.text()).toBe('retry: 1000\n\n');
  });

  it('sends a key event only for keys the principal may use, with the seq as id and no other field', async () => {
    const { feed, streams } = setup();
    const out = collect(streams.open(WORKER, undefined));
    feed.apply({ kind: 'key', action: 'disable', subject: 'id-b', keyName: 'billing' });
    feed.apply({ kind: 'key', action: 'disable', subject: 'id-o', keyName: 'orders' });
    await flush();
    expect(out.text()).toBe(
      'retry: 1000\n\nid: 2\nevent: key\ndata: {"seq":2,"keyName":"orders","action":"disable","at":"1970-01-01T00:00:00.000Z"}\n\n',
    );
  });

  it('replays the changes after Last-Event-ID that this replica applied, then goes on live without repeats', async () => {
    const { feed, streams } = setup();
    feed.apply({ kind: 'key', action: 'rotate', subject: 'id-o', keyName: 'orders' });
    feed.apply({ kind: 'key', action: 'disable', subject: 'id-o', keyName: 'orders' });
    const out = collect(streams.open(WORKER, 1));
    feed.apply({ kind: 'key', action: 'enable', subject: 'id-o', keyName: 'orders' });
    await flush();
    await flush();
    expect(out.text().match(/^id: \d+$/gm)).toEqual(['id: 2', 'id: 3']);
  });

  it('sends resync when the changes after Last-Event-ID were pruned', async () => {
    const { feed, streams } = setup();
    feed.apply({ kind: 'key', action: 'rotate', subject: 'id-o', keyName: 'orders' });
    feed.apply({ kind: 'key', action: 'rotate', subject: 'id-o', keyName: 'orders' });
    feed.prunedThrough = 2;
    const stream = streams.open(WORKER, 1);
    const out = collect(stream);
    await flush();
    expect(out.text()).toContain('id: 2\nevent: resync\ndata: {"seq":2}\n\n');
    // Unlike a live resync, this one ends nothing: the token has just been checked, and a reconnect must settle.
    expect(stream.readableEnded).toBe(false);
  });

  it('ends the stream a token opened when the token is revoked, and not for another token', async () => {
    const { feed, streams } = setup();
    const stream = streams.open(WORKER, undefined);
    collect(stream);
    feed.apply({ kind: 'token', action: 'revoke', subject: 't-2', keyName: null });
    await flush();
    expect(stream.readableEnded).toBe(false);
    feed.apply({ kind: 'token', action: 'revoke', subject: 't-1', keyName: null });
    await flush();
    expect(stream.readableEnded).toBe(true);
    expect(feed.listeners.size).toBe(0);
  });

  it('a live resync is sent, then ends a stream a token opened (the revocation may be among the missed changes)', async () => {
    const spiffe: Principal = Object.freeze({ id: 'spiffe://example.org/orders', type: 'spiffe', attributes: {}, admin: false });
    const { feed, streams } = setup();
    const byToken = streams.open(WORKER, undefined);
    const byCertificate = streams.open(spiffe, undefined);
    const tokenOut = collect(byToken);
    const certificateOut = collect(byCertificate);
    feed.resync(7);
    await flush();
    expect(byToken.readableEnded).toBe(true);
    expect(tokenOut.text()).toBe('retry: 1000\n\nid: 7\nevent: resync\ndata: {"seq":7}\n\n');
    // A certificate is not revoked through the feed: its stream goes on.
    expect(certificateOut.text()).toBe(tokenOut.text());
    expect(byCertificate.readableEnded).toBe(false);
    expect(streams.size).toBe(1);
  });

  it('sends a keep-alive comment every keepAliveMs', async () => {
    vi.useFakeTimers();
    const { streams } = setup({ keepAliveMs: 15_000 });
    const out = collect(streams.open(WORKER, undefined));
    await vi.advanceTimersByTimeAsync(30_000);
    expect(out.text().match(/: keep-alive\n\n/g)).toHaveLength(2);
  });

  it('ends the stream after maxLifetimeMs and unsubscribes it', async () => {
    vi.useFakeTimers();
    const { feed, streams } = setup({ maxLifetimeMs: 600_000 });
    const stream = streams.open(WORKER, undefined);
    collect(stream);
    const ended = new Promise((resolve) => stream.on('end', resolve));
    await vi.advanceTimersByTimeAsync(600_000);
    await ended;
    expect(feed.listeners.size).toBe(0);
    expect(streams.size).toBe(0);
  });

  it('cuts off a client that does not read once maxBufferedBytes are queued', async () => {
    const { feed, streams } = setup({ maxBufferedBytes: 200 });
    const stream = streams.open(WORKER, undefined);
    for (let i = 0; i < 10; i++) feed.apply({ kind: 'key', action: 'rotate', subject: 'id-o', keyName: 'orders' });
    await flush();
    expect(stream.destroyed).toBe(true);
    expect(feed.listeners.size).toBe(0);
  });
});
