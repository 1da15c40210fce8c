import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AuditEvent, AuditRecord } from '../../../src/audit/audit-record.js';
import { MAX_AUDIT_BATCH, type AuditQuery } from '../../../src/audit/audit-repository.js';
import {
  createCheckpoint,
  genesisHead,
  linkAuditEvent,
  type AuditCheckpoint,
  type ChainedAuditRecord,
  type ChainHead,
} from '../../../src/audit/chain.js';
import { createHeadStatement } from '../../../src/audit/head-statement.js';
import { MAX_AUDIT_BATCH_ENTRIES } from '../../../src/context/caller.js';
import { KnexAuditRepository } from '../../../src/storage/knex-audit-repository.js';
import { describeEachDatabase } from '../../helpers/app.js';
import { T0 } from '../../helpers/key-fixtures.js';
import { sharedStore } from './store.js';

const AUDIT_KEY = Buffer.alloc(32, 7);
const at = (ms: number) => new Date(T0.getTime() + ms);

/** A replica id no other test writes under. */
const replica = (label: string) => `${label}-${randomUUID()}`;

function event(replicaId: string, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    time: T0,
    requestId: randomUUID(),
    replicaId,
    principalId: 'token:app',
    principalType: 'token',
    tokenId: null,
    sourceAddress: '10.0.0.1',
    method: 'POST',
    route: '/v1/keys/:name/datakey',
    action: 'datakey',
    keyName: 'orders',
    keyId: null,
    keyVersion: 1,
    contextKeys: ['tenant'],
    decision: 'allow',
    decisionReason: 'allowed',
    policy: 'p',
    statement: 0,
    outcome: 'ok',
    status: 200,
    latencyMs: 1.5,
    ...overrides,
  };
}

function checkpoint(replicaId: string, head: ChainHead, kind: 'head' | 'purge' = 'head'): AuditCheckpoint {
  return createCheckpoint(AUDIT_KEY, { replicaId, sequence: head.sequence, hash: head.hash, kind });
}

/** Links `events` onto `previous`, as the writer chains one group commit. */
function link(previous: ChainHead | ChainedAuditRecord, events: readonly AuditEvent[]): ChainedAuditRecord[] {
  const links: ChainedAuditRecord[] = [];
  for (const next of events) links.push(linkAuditEvent(AUDIT_KEY, next, links.at(-1) ?? previous));
  return links;
}

const headOf = (links: readonly ChainedAuditRecord[]): ChainHead => links.at(-1)!.record;

describeEachDatabase('AuditRepository contract', (kind) => {
  const store = sharedStore(kind);
  const audit = () => new KnexAuditRepository(store.db);

  /** A chain started at its genesis, written a commit at a time as the writer does. */
  async function startedChain(replicaId: string) {
    let last: ChainHead | ChainedAuditRecord = genesisHead(AUDIT_KEY, replicaId);
    await audit().startChain(checkpoint(replicaId, genesisHead(AUDIT_KEY, replicaId)), T0);
    return {
      replicaId,
      async commit(events: readonly AuditEvent[]): Promise<AuditRecord[]> {
        const links = link(last, events);
        const previous = 'record' in last ? last.record.sequence : last.sequence;
        expect(await audit().append(links, checkpoint(replicaId, headOf(links)), previous, T0)).toBe(true);
        last = links.at(-1)!;
        return links.map((l) => l.record);
      },
    };
  }

  async function chainOf(replicaId: string, after = 0, pageSize?: number): Promise<AuditRecord[]> {
    const records: AuditRecord[] = [];
    for await (const record of audit().chain(replicaId, after, pageSize)) records.push(record);
    return records;
  }

  describe('chains', () => {
    it('append stores the records as chained and moves the head checkpoint to the last of them', async () => {
      const replicaId = replica('append');
      await audit().startChain(checkpoint(replicaId, genesisHead(AUDIT_KEY, replicaId)), T0);
      const links = link(genesisHead(AUDIT_KEY, replicaId), [
        event(replicaId, { keyVersion: null, contextKeys: [] }),
        event(replicaId, { batch: { items: 2, part: 1, parts: 1, entries: [{ action: 'decrypt', keyName: 'a', keyId: null, keyVersion: null, outcome: 'ok', count: 2 }] } }),
      ]);
      const head = checkpoint(replicaId, headOf(links));
      expect(await audit().append(links, head, 0, T0)).toBe(true);
      expect(await chainOf(replicaId)).toEqual(links.map((l) => l.record));
      expect((await audit().checkpoints(replicaId)).head).toEqual(head);
      expect(await audit().lastRecord(replicaId)).toEqual({ sequence: 2, hash: links[1]!.record.hash });
    });

    it('append writes nothing, and answers false, when the head is not at the sequence the commit expects', async () => {
      const chain = await startedChain(replica('cas'));
      await chain.commit([event(chain.replicaId)]);
      const stale = link(genesisHead(AUDIT_KEY, chain.replicaId), [event(chain.replicaId)]);
      const headBefore = (await audit().checkpoints(chain.replicaId)).head;
      expect(await audit().append(stale, checkpoint(chain.replicaId, headOf(stale)), 0, T0)).toBe(false);
      expect((await chainOf(chain.replicaId)).map((r) => r.sequence)).toEqual([1]);
      expect((await audit().checkpoints(chain.replicaId)).head).toEqual(headBefore);
    });

    it('append writes nothing to a chain that was never started', async () => {
      const replicaId = replica('unstarted');
      const links = link(genesisHead(AUDIT_KEY, replicaId), [event(replicaId)]);
      expect(await audit().append(links, checkpoint(replicaId, headOf(links)), 0, T0)).toBe(false);
      expect(await chainOf(replicaId)).toEqual([]);
    });

    it('of concurrent commits from one head exactly one lands, so the chain gets neither a gap nor a duplicate', async () => {
      const replicaId = replica('race');
      await audit().startChain(checkpoint(replicaId, genesisHead(AUDIT_KEY, replicaId)), T0);
      const attempts = [0, 1, 2].map(() => link(genesisHead(AUDIT_KEY, replicaId), [event(replicaId), event(replicaId)]));
      const landed = await Promise.all(attempts.map((links) => audit().append(links, checkpoint(replicaId, headOf(links)), 0, T0)));
      expect(landed.filter(Boolean)).toHaveLength(1);
      const winner = attempts[landed.indexOf(true)]!;
      expect(await chainOf(replicaId)).toEqual(winner.map((l) => l.record));
    });

    it('a commit of MAX_AUDIT_BATCH records lands whole', async () => {
      const chain = await startedChain(replica('full'));
      await chain.commit(Array.from({ length: MAX_AUDIT_BATCH }, () => event(chain.replicaId)));
      expect(await audit().lastRecord(chain.replicaId)).toMatchObject({ sequence: MAX_AUDIT_BATCH });
    });

    it('chain reads the records after a sequence, in sequence order, across pages', async () => {
      const chain = await startedChain(replica('pages'));
      await chain.commit([1, 2, 3].map(() => event(chain.replicaId)));
      await chain.commit([4, 5].map(() => event(chain.replicaId)));
      expect((await chainOf(chain.replicaId, 2, 2)).map((r) => r.sequence)).toEqual([3, 4, 5]);
      expect((await chainOf(chain.replicaId, 0, 2)).map((r) => r.sequence)).toEqual([1, 2, 3, 4, 5]);
    });

    it('a chain without records has no last record and an empty walk', async () => {
      const replicaId = replica('empty');
      await audit().startChain(checkpoint(replicaId, genesisHead(AUDIT_KEY, replicaId)), T0);
      expect(await audit().lastRecord(replicaId)).toBeUndefined();
      expect(await chainOf(replicaId)).toEqual([]);
    });

    it('starting a chain again does not move its head checkpoint back', async () => {
      const chain = await startedChain(replica('restart'));
      const [first] = await chain.commit([event(chain.replicaId)]);
      await audit().startChain(checkpoint(chain.replicaId, genesisHead(AUDIT_KEY, chain.replicaId)), T0);
      expect((await audit().checkpoints(chain.replicaId)).head).toMatchObject({ sequence: 1, hash: first!.hash });
    });

    it('replicas lists every chain with records, checkpoints or a head statement, sorted', async () => {
      const prefix = `replicas-${randomUUID()}`;
      const withRecords = await startedChain(`${prefix}-c`);
      await withRecords.commit([event(withRecords.replicaId)]);
      await audit().startChain(checkpoint(`${prefix}-a`, genesisHead(AUDIT_KEY, `${prefix}-a`)), T0);
      const genesis = genesisHead(AUDIT_KEY, `${prefix}-b`);
      await audit().recordHead(createHeadStatement(AUDIT_KEY, { replicaId: `${prefix}-b`, ...genesis, time: T0, sealed: false }), T0);
      const listed = await audit().replicas();
      expect(listed.filter((id) => id.startsWith(prefix))).toEqual([`${prefix}-a`, `${prefix}-b`, `${prefix}-c`]);
      expect(listed).toEqual([...listed].sort());
    });
  });

  describe('head statements', () => {
    const statement = (replicaId: string, sequence: number, time: Date, sealed = false) =>
      createHeadStatement(AUDIT_KEY, { replicaId, sequence, hash: 'ab'.repeat(32), time, sealed });

    it('gives back the stored head statement, and none for a chain that made none', async () => {
      const replicaId = replica('heads');
      const stated = statement(replicaId, 3, at(1));
      await audit().recordHead(stated, at(1));
      expect(await audit().headStatement(replicaId)).toEqual(stated);
      expect(await audit().headStatement(replica('silent'))).toBeUndefined();
    });

    it('a head statement moves only forwards: to a later head, or the same head later', async () => {
      const replicaId = replica('forwards');
      await audit().recordHead(statement(replicaId, 3, at(10)), at(10));
      await audit().recordHead(statement(replicaId, 2, at(20)), at(20));
      await audit().recordHead(statement(replicaId, 3, at(5)), at(20));
      expect(await audit().headStatement(replicaId)).toMatchObject({ sequence: 3, time: at(10) });
      await audit().recordHead(statement(replicaId, 3, at(15), true), at(15));
      expect(await audit().headStatement(replicaId)).toMatchObject({ sequence: 3, time: at(15), sealed: true });
      await audit().recordHead(statement(replicaId, 4, at(1)), at(21));
      expect(await audit().headStatement(replicaId)).toMatchObject({ sequence: 4, time: at(1) });
    });
  });

  describe('query', () => {
    /** A window of time of the test's own, so records of other tests in the shared store stay out of its queries. */
    let window = 0;
    const ownWindow = () => {
      window += 1;
      const base = T0.getTime() + window * 3_600_000;
      return { time: (ms: number) => new Date(base + ms), range: { since: new Date(base), until: new Date(base + 3_600_000) } };
    };
    const ids = (records: readonly AuditRecord[]) => records.map((r) => r.requestId);

    it('gives records newest first, by time, then replica, then sequence', async () => {
      const { time, range } = ownWindow();
      const a = await startedChain(`a-${randomUUID()}`);
      const b = await startedChain(`b-${randomUUID()}`);
      await a.commit([event(a.replicaId, { time: time(1), requestId: 'a1' }), event(a.replicaId, { time: time(2), requestId: 'a2' })]);
      await b.commit([event(b.replicaId, { time: time(2), requestId: 'b1' }), event(b.replicaId, { time: time(2), requestId: 'b2' })]);
      expect(ids(await audit().query({ ...range, limit: 10 }))).toEqual(['b2', 'b1', 'a2', 'a1']);
    });

    it('since is inclusive and until exclusive', async () => {
      const { time, range } = ownWindow();
      const chain = await startedChain(replica('range'));
      await chain.commit([1, 2, 3].map((ms) => event(chain.replicaId, { time: time(ms), requestId: `t${ms}` })));
      expect(ids(await audit().query({ since: time(2), until: time(3), limit: 10 }))).toEqual(['t2']);
      expect(ids(await audit().query({ ...range, limit: 10 }))).toEqual(['t3', 't2', 't1']);
    });

    it('filters by principal, action and outcome, each alone and together', async () => {
      const { time, range } = ownWindow();
      const chain = await startedChain(replica('filters'));
      await chain.commit([
        event(chain.replicaId, { time: time(1), requestId: 'x', principalId: 'token:x', action: 'encrypt' }),
        event(chain.replicaId, { time: time(2), requestId: 'y', principalId: 'token:y', action: 'encrypt', outcome: 'KH_ERR_FORBIDDEN' }),
        event(chain.replicaId, { time: time(3), requestId: 'y2', principalId: 'token:y', action: 'decrypt' }),
      ]);
      expect(ids(await audit().query({ ...range, principal: 'token:y', limit: 10 }))).toEqual(['y2', 'y']);
      expect(ids(await audit().query({ ...range, action: 'encrypt', limit: 10 }))).toEqual(['y', 'x']);
      expect(ids(await audit().query({ ...range, outcome: 'KH_ERR_FORBIDDEN', limit: 10 }))).toEqual(['y']);
      expect(ids(await audit().query({ ...range, principal: 'token:y', action: 'encrypt', outcome: 'ok', limit: 10 }))).toEqual([]);
    });

    it('pages by the cursor of the last record read, across records of one instant, without skipping or repeating', async () => {
      const { time, range } = ownWindow();
      const a = await startedChain(`a-${randomUUID()}`);
      const b = await startedChain(`b-${randomUUID()}`);
      await a.commit([1, 2, 3].map((n) => event(a.replicaId, { time: time(5), requestId: `a${n}` })));
      await b.commit([1, 2].map((n) => event(b.replicaId, { time: time(n === 1 ? 5 : 6), requestId: `b${n}` })));
      const all = ids(await audit().query({ ...range, limit: 10 }));
      const paged: string[] = [];
      let before: AuditQuery['before'];
      for (;;) {
        const page = await audit().query({ ...range, before, limit: 2 });
        paged.push(...ids(page));
        if (page.length < 2) break;
        const last = page.at(-1)!;
        before = { time: last.time.getTime(), replicaId: last.replicaId, sequence: last.sequence };
      }
      expect(all).toEqual(['b2', 'b1', 'a3', 'a2', 'a1']);
      expect(paged).toEqual(all);
    });

    it('the key filter finds a record by its own key or by a key its batch summary names, each record once', async () => {
      const { time, range } = ownWindow();
      const chain = await startedChain(replica('keys'));
      const entry = (keyName: string | null) => ({ action: 'decrypt', keyName, keyId: null, keyVersion: null, outcome: 'ok', count: 1 });
      await chain.commit([
        event(chain.replicaId, { time: time(1), requestId: 'own', keyName: 'k-own' }),
        event(chain.replicaId, {
          time: time(2),
          requestId: 'batch',
          action: 'batch',
          keyName: 'k-own',
          batch: { items: 4, part: 1, parts: 1, entries: [entry('k-own'), entry('k-named'), entry('k-named'), entry(null)] },
        }),
        event(chain.replicaId, { time: time(3), requestId: 'other', keyName: 'k-other' }),
      ]);
      expect(ids(await audit().query({ ...range, key: 'k-own', limit: 10 }))).toEqual(['batch', 'own']);
      expect(ids(await audit().query({ ...range, key: 'k-named', limit: 10 }))).toEqual(['batch']);
      expect(ids(await audit().query({ ...range, key: 'k-named', action: 'decrypt', limit: 10 }))).toEqual([]);
    });

    it('the key filter pages like every other query: newest first, up to the limit, after the cursor', async () => {
      const { time, range } = ownWindow();
      const chain = await startedChain(replica('key-pages'));
      const named = (requestId: string, ms: number, own: string | null) =>
        event(chain.replicaId, {
          time: time(ms),
          requestId,
          keyName: own,
          batch: own === null ? { items: 1, part: 1, parts: 1, entries: [{ action: 'decrypt', keyName: 'k-page', keyId: null, keyVersion: null, outcome: 'ok', count: 1 }] } : null,
        });
      await chain.commit([named('r1', 1, 'k-page'), named('r2', 2, null), named('r3', 3, 'k-page'), named('r4', 4, null)]);
      const first = await audit().query({ ...range, key: 'k-page', limit: 3 });
      expect(ids(first)).toEqual(['r4', 'r3', 'r2']);
      const last = first.at(-1)!;
      const before = { time: last.time.getTime(), replicaId: last.replicaId, sequence: last.sequence };
      expect(ids(await audit().query({ ...range, key: 'k-page', before, limit: 3 }))).toEqual(['r1']);
    });

    // Moved from test/integration/audit.test.ts, which wrote it through this repository.
    it('one group commit of many batch records indexes all their keys, more rows than one SQLite insert takes', async () => {
      const { time, range } = ownWindow();
      const chain = await startedChain(replica('bulk'));
      // 130 records of 64 keys each: 8,320 key index rows, where one SQLite insert takes 500.
      const events = Array.from({ length: 130 }, (_, i) =>
        event(chain.replicaId, {
          time: time(1),
          requestId: `bulk-${i}`,
          action: 'batch',
          keyName: null,
          batch: {
            items: 130 * MAX_AUDIT_BATCH_ENTRIES,
            part: i + 1,
            parts: 130,
            entries: Array.from({ length: MAX_AUDIT_BATCH_ENTRIES }, (_, k) => ({
              action: 'datakey', keyName: `bulk-${i}-${k}`, keyId: null, keyVersion: null, outcome: 'KH_ERR_KEY_NOT_FOUND', count: 1,
            })),
          },
        }),
      );
      await chain.commit(events);
      for (const [i, k] of [[0, 0], [7, 52], [62, 31], [129, 63]] as const) {
        expect(ids(await audit().query({ ...range, key: `bulk-${i}-${k}`, limit: 10 }))).toEqual([`bulk-${i}`]);
      }
    });
  });

  describe('retention', () => {
    it('purge deletes a chain’s records up to the cut and records the cut as its purge checkpoint', async () => {
      const chain = await startedChain(replica('purge'));
      const other = await startedChain(replica('kept'));
      const records = await chain.commit([1, 2, 3, 4].map(() => event(chain.replicaId)));
      await other.commit([event(other.replicaId)]);
      const cut = checkpoint(chain.replicaId, records[1]!, 'purge');
      expect(await audit().purge(cut, T0)).toBe(2);
      expect((await chainOf(chain.replicaId)).map((r) => r.sequence)).toEqual([3, 4]);
      expect(await audit().checkpoints(chain.replicaId)).toEqual({ head: checkpoint(chain.replicaId, records[3]!), purge: cut });
      expect(await chainOf(other.replicaId)).toHaveLength(1);
    });

    it('a purged record is no longer found by a key its batch summary named', async () => {
      const chain = await startedChain(replica('purge-keys'));
      const keyName = `gone-${randomUUID()}`;
      const batch = { items: 1, part: 1, parts: 1, entries: [{ action: 'decrypt', keyName, keyId: null, keyVersion: null, outcome: 'ok', count: 1 }] };
      const [record] = await chain.commit([event(chain.replicaId, { keyName: null, batch })]);
      expect(await audit().query({ key: keyName, limit: 10 })).toHaveLength(1);
      await audit().purge(checkpoint(chain.replicaId, record!, 'purge'), T0);
      expect(await audit().query({ key: keyName, limit: 10 })).toEqual([]);
    });

    it('a purge checkpoint moves only forwards: a replayed older cut deletes nothing more and keeps the later one', async () => {
      const chain = await startedChain(replica('purge-replay'));
      const records = await chain.commit([1, 2, 3].map(() => event(chain.replicaId)));
      const later = checkpoint(chain.replicaId, records[1]!, 'purge');
      await audit().purge(later, T0);
      expect(await audit().purge(checkpoint(chain.replicaId, records[0]!, 'purge'), T0)).toBe(0);
      expect((await audit().checkpoints(chain.replicaId)).purge).toEqual(later);
    });

    it('cutsBefore names, per chain, the last record older than the time, with its hash', async () => {
      const old = (ms: number) => new Date(Date.UTC(2001, 0, 1) + ms);
      const a = await startedChain(replica('cut-a'));
      const b = await startedChain(replica('cut-b'));
      const young = await startedChain(replica('cut-young'));
      const aRecords = await a.commit([1, 2, 3].map((ms) => event(a.replicaId, { time: old(ms) })));
      const bRecords = await b.commit([event(b.replicaId, { time: old(1) })]);
      await young.commit([event(young.replicaId, { time: old(3) })]);
      const cuts = (await audit().cutsBefore(old(3))).filter((cut) => [a, b, young].some((c) => c.replicaId === cut.replicaId));
      expect(cuts.sort((x, y) => x.replicaId.localeCompare(y.replicaId))).toEqual([
        { replicaId: a.replicaId, sequence: 2, hash: aRecords[1]!.hash },
        { replicaId: b.replicaId, sequence: 1, hash: bRecords[0]!.hash },
      ]);
    });
  });
});
