import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { KnexChangeRepository } from '../../src/storage/knex-change-repository.js';
import type { ChangeRepository } from '../../src/changes/change-repository.js';
import { buildReplicaPair, describeEachDatabase, type ReplicaPair, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

/**
 * Two replicas in one process over one store. Each has its own caches and its own change feed; B learns of A's
 * writes only through the feed, which these tests drive by hand (`catchUp`) unless they test NOTIFY itself.
 */
describeEachDatabase('the change feed across replicas', (kind) => {
  let pair: ReplicaPair;
  let a: TestApp;
  let b: TestApp;

  beforeEach(async () => {
    pair = await buildReplicaPair(kind);
    ({ a, b } = pair);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await pair.close();
  });

  const catchUp = () => b.services.changes.catchUp();

  it('a key disabled through A is refused by B, whose cache held it', async () => {
    await a.call('POST', '/v1/keys', { name: 'shared' });
    expect((await b.call('POST', '/v1/keys/shared/datakey', {})).status).toBe(200);
    expect((await a.call('POST', '/v1/keys/shared/disable')).status).toBe(200);
    await catchUp();
    expectProblem(await b.call('POST', '/v1/keys/shared/datakey', {}), 409, 'KH_ERR_KEY_DISABLED');
  });

  it('a version revoked through A stops decrypting on B, and a rotation through A is B\'s new primary', async () => {
    await a.call('POST', '/v1/keys', { name: 'k' });
    const old = (await b.call('POST', '/v1/keys/k/datakey', {})).body.ciphertext;
    expect((await b.call('POST', '/v1/decrypt', { ciphertext: old })).status).toBe(200);
    await a.call('POST', '/v1/keys/k/rotate');
    await a.call('POST', '/v1/keys/k/versions/1/disable');
    await catchUp();
    expect((await b.call('POST', '/v1/keys/k/datakey', {})).body.keyVersion).toBe(2);
    expectProblem(await b.call('POST', '/v1/decrypt', { ciphertext: old }), 409, 'KH_ERR_KEY_VERSION_DISABLED');
  });

  it('a ciphertext under a version newer than B has cached makes B read the key again, before the feed tells it', async () => {
    await a.call('POST', '/v1/keys', { name: 'fresh' });
    expect((await b.call('POST', '/v1/keys/fresh/datakey', {})).body.keyVersion).toBe(1);
    await a.call('POST', '/v1/keys/fresh/rotate');
    const v2 = (await a.call('POST', '/v1/keys/fresh/datakey', {})).body;
    expect(v2.keyVersion).toBe(2);
    b.clock.advance(1000);
    expect((await b.call('POST', '/v1/decrypt', { ciphertext: v2.ciphertext })).status).toBe(200);
  });

  it('a minimum decryption version raised through A applies on B', async () => {
    await a.call('POST', '/v1/keys', { name: 'm' });
    const old = (await b.call('POST', '/v1/keys/m/datakey', {})).body.ciphertext;
    await a.call('POST', '/v1/keys/m/rotate');
    await a.call('PATCH', '/v1/keys/m', { minDecryptionVersion: 2 });
    await catchUp();
    expectProblem(await b.call('POST', '/v1/decrypt', { ciphertext: old }), 409, 'KH_ERR_KEY_VERSION_BELOW_MINIMUM');
  });

  it('a token revoked through A is refused by B, which had verified it', async () => {
    const issued = (await a.call('POST', '/v1/tokens', { name: 'worker' })).body;
    expect((await b.call('GET', '/v1/whoami', undefined, issued.token)).status).toBe(200);
    expect((await a.call('DELETE', `/v1/tokens/${issued.id}`)).status).toBe(204);
    await catchUp();
    expectProblem(await b.call('GET', '/v1/whoami', undefined, issued.token), 401, 'KH_ERR_UNAUTHENTICATED');
  });

  it('a policy withdrawn through A stops granting on B', async () => {
    await a.call('POST', '/v1/keys', { name: 'app-key' });
    const worker = (await a.call('POST', '/v1/tokens', { name: 'app' })).body.token;
    const grant = { statements: [{ effect: 'allow', principals: ['token:app'], actions: ['datakey'], keys: ['app-key'] }] };
    expect((await a.call('PUT', '/v1/policies/app', grant)).status).toBe(201);
    await catchUp();
    expect((await b.call('POST', '/v1/keys/app-key/datakey', {}, worker)).status).toBe(200);
    expect((await a.call('DELETE', '/v1/policies/app')).status).toBe(204);
    await catchUp();
    expectProblem(await b.call('POST', '/v1/keys/app-key/datakey', {}, worker), 403, 'KH_ERR_FORBIDDEN');
  });

  it('records every change in commit order, each exactly once, and subscribers see them after the caches', async () => {
    const seen: string[] = [];
    const unsubscribe = b.services.changes.subscribe((event) => {
      if (event.type === 'change') seen.push(`${event.change.kind}:${event.change.action}:${event.change.keyName ?? event.change.subject}`);
    });
    await a.call('POST', '/v1/keys', { name: 'log' });
    await a.call('POST', '/v1/keys/log/rotate');
    await a.call('POST', '/v1/keys/log/disable');
    // A no-op writes nothing, so it records nothing.
    await a.call('POST', '/v1/keys/log/disable');
    await a.call('POST', '/v1/keys/log/schedule-deletion', { pendingWindowDays: 7 });
    await a.call('PUT', '/v1/policies/p', { statements: [{ effect: 'deny', principals: ['*'], actions: ['*'], keys: ['*'] }] });
    await catchUp();
    unsubscribe();
    expect(seen).toEqual([
      'key:create:log',
      'key:rotate:log',
      'key:disable:log',
      'key:schedule-deletion:log',
      'policy:put:p',
    ]);
    const since = await b.services.changes.changesSince(0, 100);
    expect(since).not.toBe('gap');
    const seqs = (since as readonly { seq: number }[]).map((change) => change.seq);
    expect(seqs).toEqual(seqs.map((_, index) => index + 1));
  });

  it('a change committed between two of B\'s statements is applied in order, not taken for pruned', async () => {
    await a.call('POST', '/v1/keys', { name: 'busy' });
    await catchUp();
    const events: string[] = [];
    b.services.changes.subscribe((event) => events.push(event.type === 'change' ? `change:${event.change.seq}` : 'resync'));
    expect((await b.call('POST', '/v1/keys/busy/datakey', {})).status).toBe(200);
    const next = b.services.changes.appliedSeq + 1;
    // A commits through the API just after B's first statement, whichever that is; A's own feed is left alone.
    let committed: Promise<unknown> | undefined;
    const afterRead = async (repository: ChangeRepository) => {
      if (committed !== undefined || (repository as unknown as { db: unknown }).db !== b.db) return;
      committed = a.call('POST', '/v1/keys/busy/disable');
      await committed;
    };
    const { latestSeq, since } = KnexChangeRepository.prototype;
    vi.spyOn(KnexChangeRepository.prototype, 'latestSeq').mockImplementation(async function (this: ChangeRepository) {
      const latest = await latestSeq.call(this);
      await afterRead(this);
      return latest;
    });
    vi.spyOn(KnexChangeRepository.prototype, 'since').mockImplementation(async function (this: ChangeRepository, seq: number, limit: number) {
      const changes = await since.call(this, seq, limit);
      await afterRead(this);
      return changes;
    });
    await catchUp();
    expect(committed).toBeDefined();
    await catchUp();
    expect(events).toEqual([`change:${next}`]);
    expect((await b.call('POST', '/v1/keys/busy/datakey', {})).status).toBe(409);
  });

  it('changes pruned before B read them make B drop its caches and tell subscribers to resync', async () => {
    await a.call('POST', '/v1/keys', { name: 'gone' });
    await catchUp();
    expect((await b.call('POST', '/v1/keys/gone/datakey', {})).status).toBe(200);
    const events: string[] = [];
    b.services.changes.subscribe((event) => events.push(event.type));
    // B's reads of the sequence wait until A has written and pruned: a notification would otherwise deliver each
    // change before the test can prune it.
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { latestSeq } = KnexChangeRepository.prototype;
    vi.spyOn(KnexChangeRepository.prototype, 'latestSeq').mockImplementation(async function (this: ChangeRepository) {
      if ((this as unknown as { db: unknown }).db === b.db) await gate;
      return latestSeq.call(this);
    });
    await a.call('POST', '/v1/keys/gone/disable');
    await a.call('POST', '/v1/keys/gone/enable');
    await a.call('POST', '/v1/keys/gone/disable');
    // Every row, the newest too: the sequence alone tells B what it missed.
    expect(await a.services.changes.prune(new Date(a.clock.now().getTime() + 1), 0)).toBe(4);
    open();
    await catchUp();
    expect(events).toEqual(['resync']);
    expectProblem(await b.call('POST', '/v1/keys/gone/datakey', {}), 409, 'KH_ERR_KEY_DISABLED');
  });

  it('a notification delivers a change to B without a poll or a catch-up: NOTIFY, or on SQLite the commit in this process', async () => {
    await a.call('POST', '/v1/keys', { name: 'notified' });
    expect((await b.call('POST', '/v1/keys/notified/datakey', {})).status).toBe(200);
    const started = Date.now();
    await a.call('POST', '/v1/keys/notified/disable');
    for (;;) {
      if ((await b.call('POST', '/v1/keys/notified/datakey', {})).status === 409) break;
      if (Date.now() - started > 10_000) throw new Error('B never refused the disabled key');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    console.log(`change feed [${kind}]: the notification reached replica B ${Date.now() - started} ms after the disable was sent`);
  });
});
