import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { Change, FeedEvent } from '../../../src/changes/change.js';
import { DatabaseChangeFeed, type ChangeApplier } from '../../../src/changes/change-feed.js';
import type { ChangeRepository } from '../../../src/changes/change-repository.js';

/** The feed's view of the store, in memory: a sequence, its retained rows, and a switch that makes reads fail. */
class FakeChanges {
  rows: Change[] = [];
  latest = 0;
  down = false;
  /** Runs after each read has taken its result, as a commit by another replica between two statements would. */
  afterRead: (() => void) | undefined;

  /** What the feed subscribed for commit notifications, while subscribed. */
  localCommit: (() => void) | undefined;

  add(kind: Change['kind'], subject: string, keyName: string | null = null): Change {
    this.latest += 1;
    const change: Change = { seq: this.latest, kind, action: 'disable', subject, keyName, at: new Date(0) };
    this.rows.push(change);
    return change;
  }

  repository(): ChangeRepository {
    const check = () => {
      if (this.down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    };
    const read = <T>(result: T): T => {
      this.afterRead?.();
      return result;
    };
    return {
      latestSeq: async () => {
        check();
        return read(this.latest);
      },
      since: async (seq: number, limit: number) => {
        check();
        return read(this.rows.filter((row) => row.seq > seq).slice(0, limit));
      },
      pruneBefore: async () => 0,
      notifications: async (onCommit: () => void) => {
        this.localCommit = onCommit;
        return { close: async () => void (this.localCommit = undefined) };
      },
    };
  }
}

class RecordingApplier implements ChangeApplier {
  readonly applied: number[] = [];
  drops = 0;
  apply(change: Change): void {
    this.applied.push(change.seq);
  }
  dropAll(): void {
    this.drops += 1;
  }
}

function feedOver(store: FakeChanges, applier: RecordingApplier): DatabaseChangeFeed {
  return new DatabaseChangeFeed({
    repository: store.repository(),
    appliers: [applier],
    logger: pino({ level: 'silent' }),
    // The tests drive catch-up by hand.
    pollIntervalMs: 3_600_000,
  });
}

/** A started feed over an empty store, with every event it emits recorded. */
async function startedFeed() {
  const store = new FakeChanges();
  const applier = new RecordingApplier();
  const feed = feedOver(store, applier);
  await feed.start();
  const events: FeedEvent[] = [];
  feed.subscribe((event) => events.push(event));
  return { store, applier, feed, events };
}

describe('DatabaseChangeFeed', () => {
  it('starts at the current sequence and applies later changes once, in order, before telling subscribers', async () => {
    const store = new FakeChanges();
    store.add('key', 'k0', 'zero');
    const applier = new RecordingApplier();
    const feed = feedOver(store, applier);
    await feed.start();
    expect(feed.appliedSeq).toBe(1);
    const seen: Array<{ seq: number; appliedBefore: boolean }> = [];
    feed.subscribe((event) => {
      if (event.type === 'change') seen.push({ seq: event.change.seq, appliedBefore: applier.applied.includes(event.change.seq) });
    });
    store.add('key', 'k1', 'one');
    store.add('policy', 'p');
    await Promise.all([feed.catchUp(), feed.catchUp(), feed.catchUp()]);
    await feed.catchUp();
    expect(applier.applied).toEqual([2, 3]);
    expect(seen).toEqual([
      { seq: 2, appliedBefore: true },
      { seq: 3, appliedBefore: true },
    ]);
    await feed.close();
  });

  it('a notification during a read causes one more read, so a change committed meanwhile is not left for the poll', async () => {
    const store = new FakeChanges();
    const applier = new RecordingApplier();
    const feed = feedOver(store, applier);
    await feed.start();
    store.add('key', 'a', 'a');
    const first = feed.catchUp();
    store.add('key', 'b', 'b');
    void feed.catchUp();
    await first;
    expect(applier.applied).toEqual([1, 2]);
    await feed.close();
  });

  it('changes pruned before they were read: caches are dropped and subscribers told to resync', async () => {
    const { store, applier, feed, events } = await startedFeed();
    store.add('key', 'a', 'a');
    store.add('key', 'b', 'b');
    store.add('key', 'c', 'c');
    store.rows = store.rows.filter((row) => row.seq === 3);
    await feed.catchUp();
    expect(applier.drops).toBe(1);
    expect(events).toEqual([{ type: 'resync', seq: 3 }]);
    expect(feed.appliedSeq).toBe(3);
    expect(await feed.changesSince(0, 10)).toBe('gap');
    expect(await feed.changesSince(2, 10)).toHaveLength(1);
    await feed.close();
  });

  it.each([0, 1])('with %i change(s) waiting, one committed after the feed\'s first statement is applied in order, never taken for pruned', async (waiting) => {
    const { store, applier, feed, events } = await startedFeed();
    for (let index = 0; index < waiting; index += 1) store.add('key', `k${index}`, `k${index}`);
    let statements = 0;
    store.afterRead = () => {
      statements += 1;
      if (statements === 1) store.add('token', 't');
    };
    await feed.catchUp();
    await feed.catchUp();
    expect(applier.drops).toBe(0);
    expect(applier.applied).toEqual(Array.from({ length: waiting + 1 }, (_, index) => index + 1));
    expect(events.every((event) => event.type === 'change')).toBe(true);
    await feed.close();
  });

  it('a hole after the first row, or no rows left at all, is a gap', async () => {
    const { store, feed } = await startedFeed();
    store.add('key', 'a', 'a');
    store.add('key', 'b', 'b');
    store.add('key', 'c', 'c');
    // Pruning goes by each writer's clock, so a later change can be older than an earlier one.
    store.rows = store.rows.filter((row) => row.seq !== 2);
    expect(await feed.changesSince(0, 10)).toBe('gap');
    expect(await feed.changesSince(2, 10)).toHaveLength(1);
    store.rows = [];
    expect(await feed.changesSince(2, 10)).toBe('gap');
    expect(await feed.changesSince(3, 10)).toEqual([]);
    await feed.close();
  });

  it('a failed read drops every cache, and the first good read drops them again before applying what it missed', async () => {
    const { store, applier, feed, events } = await startedFeed();
    store.down = true;
    await feed.catchUp();
    await feed.catchUp();
    expect(applier.drops).toBe(2);
    store.down = false;
    store.add('token', 't');
    await feed.catchUp();
    expect(applier.drops).toBe(3);
    expect(applier.applied).toEqual([1]);
    // Nothing was pruned, so subscribers get the change itself rather than a resync.
    expect(events.map((event) => event.type)).toEqual(['change']);
    await feed.close();
  });

  it('a subscriber that throws does not stop the others or the feed', async () => {
    const store = new FakeChanges();
    const feed = feedOver(store, new RecordingApplier());
    await feed.start();
    const seen: number[] = [];
    feed.subscribe(() => {
      throw new Error('subscriber bug');
    });
    const unsubscribe = feed.subscribe((event) => {
      if (event.type === 'change') seen.push(event.change.seq);
    });
    store.add('key', 'a', 'a');
    await feed.catchUp();
    unsubscribe();
    store.add('key', 'b', 'b');
    await feed.catchUp();
    expect(seen).toEqual([1]);
    expect(feed.appliedSeq).toBe(2);
    await feed.close();
  });
});

describe('DatabaseChangeFeed on SQLite', () => {
  it('reads at once when a commit in this process recorded a change, without waiting for the poll, and stops on close', async () => {
    const { store, applier, feed } = await startedFeed();
    store.add('key', 'k1');
    store.localCommit?.();
    await vi.waitFor(() => expect(applier.applied).toEqual([1]));
    await feed.close();
    expect(store.localCommit).toBeUndefined();
  });
});

describe('DatabaseChangeFeed.catchUpTo', () => {
  it('is true at once for an applied sequence, after a read for a newer one, and false while the feed is unreadable', async () => {
    const store = new FakeChanges();
    const applier = new RecordingApplier();
    const feed = feedOver(store, applier);
    await feed.start();
    expect(await feed.catchUpTo(0, 1000)).toBe(true);
    store.add('key', 'a', 'a');
    expect(await feed.catchUpTo(1, 1000)).toBe(true);
    expect(applier.applied).toEqual([1]);
    // A sequence the store has not reached is satisfied by a complete read: it cannot hold the caller hostage.
    expect(await feed.catchUpTo(1_000_000, 1000)).toBe(true);
    store.down = true;
    store.add('key', 'b', 'b');
    expect(await feed.catchUpTo(2, 1000)).toBe(false);
    store.down = false;
    expect(await feed.catchUpTo(2, 1000)).toBe(true);
    await feed.close();
  });
});
