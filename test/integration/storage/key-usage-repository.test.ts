import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/audit-record.js';
import { createCheckpoint, genesisHead, linkAuditEvent, type ChainedAuditRecord, type ChainHead } from '../../../src/audit/chain.js';
import { KnexAuditRepository } from '../../../src/storage/knex-audit-repository.js';
import { describeEachDatabase } from '../../helpers/app.js';
import { sharedStore } from './store.js';

const AUDIT_KEY = Buffer.alloc(32, 7);
const HOUR_MS = 3_600_000;
const T0 = Date.parse('2026-03-01T00:00:00Z');
const at = (ms: number) => new Date(T0 + ms);

function use(replicaId: string, keyId: string, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    time: at(0),
    requestId: randomUUID(),
    replicaId,
    principalId: 'token:app',
    principalType: 'token',
    tokenId: null,
    sourceAddress: null,
    method: 'POST',
    route: '/v1/keys/:name/datakey',
    action: 'datakey',
    keyName: 'orders',
    keyId,
    keyVersion: 1,
    contextKeys: [],
    decision: 'allow',
    decisionReason: 'allowed',
    policy: 'p',
    statement: 0,
    outcome: 'ok',
    status: 200,
    latencyMs: 1,
    ...overrides,
  };
}

describeEachDatabase('KeyUsageRepository contract (the audit repository\'s rollup)', (kind) => {
  const store = sharedStore(kind);
  const audit = () => new KnexAuditRepository(store.db);

  /** A chain written a commit at a time, as the writer does. */
  async function chain() {
    const replicaId = `usage-${randomUUID()}`;
    let last: ChainHead | ChainedAuditRecord = genesisHead(AUDIT_KEY, replicaId);
    const checkpoint = (head: ChainHead) => createCheckpoint(AUDIT_KEY, { replicaId, kind: 'head', sequence: head.sequence, hash: head.hash });
    await audit().startChain(checkpoint(last as ChainHead), at(0));
    return {
      replicaId,
      async commit(events: readonly AuditEvent[]): Promise<void> {
        const links: ChainedAuditRecord[] = [];
        for (const next of events) links.push(linkAuditEvent(AUDIT_KEY, next, links.at(-1) ?? last));
        const previous = 'record' in last ? last.record.sequence : last.sequence;
        expect(await audit().append(links, checkpoint(links.at(-1)!.record), previous, at(0))).toBe(true);
        last = links.at(-1)!;
      },
    };
  }

  const window = { since: at(-24 * HOUR_MS), until: at(24 * HOUR_MS) };

  it('sums a commit\'s uses, and later commits\' into the same rows, with first and last seen', async () => {
    const keyId = randomUUID();
    const c = await chain();
    await c.commit([use(c.replicaId, keyId, { time: at(1000) }), use(c.replicaId, keyId, { time: at(2000) })]);
    await c.commit([use(c.replicaId, keyId, { time: at(500) }), use(c.replicaId, keyId, { time: at(HOUR_MS + 7) })]);
    expect(await audit().keyUsage({ keyId, ...window })).toEqual([
      { principal: 'token:app', keyVersion: 1, action: 'datakey', count: 4, firstSeen: at(500), lastSeen: at(HOUR_MS + 7) },
    ]);
    // Two hours' rows, one chain.
    expect(Number((await store.db('key_usage').where({ key_id: keyId }).count({ n: '*' }))[0]!.n)).toBe(2);
  });

  it('counts a batch summary\'s successful entries, and no denial, failure or administration', async () => {
    const keyId = randomUUID();
    const other = randomUUID();
    const c = await chain();
    await c.commit([
      use(c.replicaId, keyId, { decision: 'deny', outcome: 'KH_ERR_FORBIDDEN', status: 403 }),
      use(c.replicaId, keyId, { outcome: 'KH_ERR_KEY_DISABLED', status: 409 }),
      use(c.replicaId, keyId, { action: 'keys:rotate', keyVersion: 2 }),
      use(c.replicaId, keyId, {
        action: 'batch',
        keyName: null,
        keyId: null,
        keyVersion: null,
        status: 207,
        batch: {
          items: 9,
          part: 1,
          parts: 1,
          entries: [
            { action: 'decrypt', keyName: 'orders', keyId, keyVersion: 1, outcome: 'ok', count: 3 },
            { action: 'decrypt', keyName: 'orders', keyId, keyVersion: 2, outcome: 'ok', count: 2 },
            { action: 'decrypt', keyName: 'orders', keyId, keyVersion: 1, outcome: 'KH_ERR_DECRYPTION_FAILED', count: 1 },
            { action: 'datakey', keyName: 'other', keyId: other, keyVersion: 1, outcome: 'ok', count: 2 },
            { action: 'datakey', keyName: 'nope', keyId: null, keyVersion: null, outcome: 'KH_ERR_KEY_NOT_FOUND', count: 1 },
          ],
        },
      }),
    ]);
    expect(await audit().keyUsage({ keyId, ...window })).toEqual([
      { principal: 'token:app', keyVersion: 1, action: 'decrypt', count: 3, firstSeen: at(0), lastSeen: at(0) },
      { principal: 'token:app', keyVersion: 2, action: 'decrypt', count: 2, firstSeen: at(0), lastSeen: at(0) },
    ]);
    expect(await audit().keyUsage({ keyId: other, ...window })).toMatchObject([{ action: 'datakey', count: 2 }]);
  });

  it('filters by version and by the hours of the window (since inclusive, until exclusive)', async () => {
    const keyId = randomUUID();
    const c = await chain();
    await c.commit([
      use(c.replicaId, keyId, { time: at(10) }),
      use(c.replicaId, keyId, { time: at(HOUR_MS + 10), keyVersion: 2 }),
      use(c.replicaId, keyId, { time: at(2 * HOUR_MS + 10), keyVersion: 2 }),
    ]);
    const read = (since: number, until: number, version?: number) => audit().keyUsage({ keyId, version, since: at(since), until: at(until) });
    expect((await read(0, HOUR_MS)).map((u) => u.keyVersion)).toEqual([1]);
    expect(await read(HOUR_MS, 3 * HOUR_MS)).toMatchObject([{ keyVersion: 2, count: 2 }]);
    expect(await read(0, 3 * HOUR_MS, 1)).toMatchObject([{ keyVersion: 1, count: 1 }]);
    expect(await read(3 * HOUR_MS, 4 * HOUR_MS)).toEqual([]);
  });

  it('sums over chains: concurrent commits of several replicas on the same key, principal and hour all count', async () => {
    const keyId = randomUUID();
    const chains = await Promise.all([chain(), chain(), chain()]);
    await Promise.all(
      chains.map(async (c) => {
        for (let i = 0; i < 5; i += 1) await c.commit(Array.from({ length: 4 }, () => use(c.replicaId, keyId, { time: at(i) })));
      }),
    );
    expect(await audit().keyUsage({ keyId, ...window })).toEqual([
      { principal: 'token:app', keyVersion: 1, action: 'datakey', count: 60, firstSeen: at(0), lastSeen: at(4) },
    ]);
  });

  it('sorts by last seen, newest first, then principal, version and action', async () => {
    const keyId = randomUUID();
    const c = await chain();
    await c.commit([
      use(c.replicaId, keyId, { time: at(5), principalId: 'token:b' }),
      use(c.replicaId, keyId, { time: at(5), principalId: 'token:a', action: 'encrypt' }),
      use(c.replicaId, keyId, { time: at(5), principalId: 'token:a' }),
      use(c.replicaId, keyId, { time: at(9), principalId: 'token:z' }),
    ]);
    expect((await audit().keyUsage({ keyId, ...window })).map((u) => [u.principal, u.action])).toEqual([
      ['token:z', 'datakey'],
      ['token:a', 'datakey'],
      ['token:a', 'encrypt'],
      ['token:b', 'datakey'],
    ]);
  });
});
