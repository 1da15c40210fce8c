import { expect, it } from 'vitest';
import type { PolicyDocument } from '../../../src/policy/policy.js';
import { KnexChangeRepository, recordChange } from '../../../src/storage/knex-change-repository.js';
import { KnexPolicyRepository } from '../../../src/storage/knex-policy-repository.js';
import { describeEachDatabase } from '../../helpers/app.js';
import { T0 } from '../../helpers/key-fixtures.js';
import { sharedStore } from './store.js';

const DOCUMENT = { statements: [{ effect: 'allow', principals: ['token:a'], actions: ['encrypt'], keys: ['*'] }] } as PolicyDocument;

describeEachDatabase('ChangeRepository contract', (kind) => {
  const store = sharedStore(kind);
  const changes = () => new KnexChangeRepository(store.db);
  /** A write that records one change: a policy put. */
  const write = (name: string, at = T0) => new KnexPolicyRepository(store.db).put(name, DOCUMENT, at, undefined);

  it('gives back recorded changes after a sequence, oldest first, with what each write recorded', async () => {
    const before = await changes().latestSeq();
    await write('c.order.a');
    await write('c.order.b');
    expect(await changes().since(before, 10)).toEqual([
      { seq: before + 1, kind: 'policy', action: 'put', subject: 'c.order.a', keyName: null, at: T0 },
      { seq: before + 2, kind: 'policy', action: 'put', subject: 'c.order.b', keyName: null, at: T0 },
    ]);
  });

  it('latestSeq is the sequence of the last committed change', async () => {
    await write('c.latest');
    const latest = await changes().latestSeq();
    expect((await changes().since(latest - 1, 10)).map((c) => [c.seq, c.subject])).toEqual([[latest, 'c.latest']]);
    expect(await changes().since(latest, 10)).toEqual([]);
  });

  it('since gives at most limit changes, the oldest ones', async () => {
    const before = await changes().latestSeq();
    for (const name of ['c.limit.1', 'c.limit.2', 'c.limit.3']) await write(name);
    expect((await changes().since(before, 2)).map((c) => c.subject)).toEqual(['c.limit.1', 'c.limit.2']);
  });

  it('concurrent writes each get their own sequence, with none skipped', async () => {
    const before = await changes().latestSeq();
    await Promise.all(['c.race.1', 'c.race.2', 'c.race.3', 'c.race.4'].map((name) => write(name)));
    const seqs = (await changes().since(before, 10)).map((c) => c.seq);
    expect(seqs).toEqual([before + 1, before + 2, before + 3, before + 4]);
    expect(await changes().latestSeq()).toBe(before + 4);
  });

  it('pruning deletes changes recorded before the time and counts them; the sequence keeps counting, so a reader behind sees a gap', async () => {
    // Long before the other tests' changes (at T0), so pruning leaves theirs alone.
    const old = (ms: number) => new Date(Date.UTC(2001, 0, 1) + ms);
    const before = await changes().latestSeq();
    await write('c.prune.1', old(1));
    await write('c.prune.2', old(2));
    await write('c.prune.3', old(3));
    expect(await changes().pruneBefore(old(3))).toBe(2);
    expect((await changes().since(before, 10)).map((c) => [c.seq, c.subject])).toEqual([[before + 3, 'c.prune.3']]);
    expect(await changes().latestSeq()).toBe(before + 3);
    await write('c.prune.4');
    expect(await changes().latestSeq()).toBe(before + 4);
  });

  it('notifications call onCommit after a change is committed', async () => {
    let committed!: () => void;
    const heard = new Promise<void>((resolve) => (committed = resolve));
    const subscription = await changes().notifications(() => committed(), () => undefined);
    try {
      await write('c.notify');
      await heard;
    } finally {
      await subscription.close();
    }
  });

  // On SQLite the process is the only writer, so it can tell every commit apart; PostgreSQL's channel is shared
  // by every schema of the test database, so there other suites' commits would be heard too.
  it.runIf(kind === 'sqlite')('on SQLite, a write that rolls back notifies nothing, and a closed subscription hears nothing', async () => {
    let calls = 0;
    const subscription = await changes().notifications(() => (calls += 1), () => undefined);
    // A writer records its change inside its transaction, then fails before the commit.
    await store.db
      .transaction(async (trx) => {
        await recordChange(trx, { kind: 'policy', action: 'put', subject: 'c.rolled-back', at: T0 });
        throw new Error('rolled back');
      })
      .catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toBe(0);
    await write('c.heard');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toBe(1);
    await subscription.close();
    await write('c.after-close');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toBe(1);
  });
});
