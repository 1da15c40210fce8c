import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import type { PolicyDocument } from '../../../src/policy/policy.js';
import { KnexChangeRepository } from '../../../src/storage/knex-change-repository.js';
import { KnexPolicyRepository } from '../../../src/storage/knex-policy-repository.js';
import { KnexTokenRepository } from '../../../src/storage/knex-token-repository.js';
import type { StoredToken } from '../../../src/tokens/token-repository.js';
import { describeEachDatabase } from '../../helpers/app.js';
import { T0 } from '../../helpers/key-fixtures.js';
import { sharedStore } from './store.js';

function token(name: string, overrides: Partial<StoredToken> = {}): StoredToken {
  return { id: randomUUID(), name, admin: false, secretHash: randomUUID(), createdAt: T0, expiresAt: null, revokedAt: null, ...overrides };
}

const DOCUMENT: PolicyDocument = { statements: [{ effect: 'allow', principals: ['token:a'], actions: ['encrypt'], keys: ['*'] }] } as PolicyDocument;
const later = (ms: number) => new Date(T0.getTime() + ms);

describeEachDatabase('TokenRepository contract', (kind) => {
  const store = sharedStore(kind);
  const tokens = () => new KnexTokenRepository(store.db);
  const changes = () => new KnexChangeRepository(store.db);

  it('gives back an inserted token by its secret hash and by id', async () => {
    const stored = token('t.find', { expiresAt: later(1000) });
    await tokens().insert(stored);
    expect(await tokens().findByHash(stored.secretHash)).toEqual(stored);
    expect(await tokens().findById(stored.id)).toEqual(stored);
    expect(await tokens().findByHash('absent')).toBeUndefined();
  });

  it('refuses a second token of one secret with KH_ERR_TOKEN_EXISTS', async () => {
    const stored = token('t.unique');
    await tokens().insert(stored);
    await expect(tokens().insert(token('t.other', { secretHash: stored.secretHash }))).rejects.toMatchObject({ code: 'KH_ERR_TOKEN_EXISTS' });
  });

  it('revokes a live token once, recording the revoke in the same commit', async () => {
    const stored = token('t.revoke');
    await tokens().insert(stored);
    const before = await changes().latestSeq();
    expect(await tokens().revoke(stored.id, later(5))).toBe(true);
    expect(await tokens().revoke(stored.id, later(6))).toBe(false);
    expect((await tokens().findById(stored.id))!.revokedAt).toEqual(later(5));
    expect((await changes().since(before, 10)).map((c) => [c.kind, c.action, c.subject])).toEqual([['token', 'revoke', stored.id]]);
  });

  it('lists live tokens in name order, after a cursor, and leaves revoked ones out', async () => {
    const c = token('tl.c');
    const b = token('tl.b');
    const revoked = token('tl.a');
    for (const stored of [c, b, revoked]) await tokens().insert(stored);
    await tokens().revoke(revoked.id, T0);
    const listed = (await tokens().list({ after: { name: 'tl.', id: '' }, limit: 100 })).filter((t) => t.name.startsWith('tl.'));
    expect(listed.map((t) => t.name)).toEqual(['tl.b', 'tl.c']);
    expect((await tokens().list({ after: { name: 'tl.b', id: b.id }, limit: 1 })).map((t) => t.name)).toEqual(['tl.c']);
  });

  it('refuses a second live token of one name with KH_ERR_TOKEN_EXISTS', async () => {
    await tokens().insert(token('t.same-name'));
    await expect(tokens().insert(token('t.same-name'))).rejects.toMatchObject({ code: 'KH_ERR_TOKEN_EXISTS' });
  });

  it('knows whether an admin token is live: not revoked, not expired', async () => {
    // The store is shared: this is the only test that makes admin tokens.
    expect(await tokens().hasLiveAdmin(T0)).toBe(false);
    const expiring = token('t.admin', { admin: true, expiresAt: later(10) });
    await tokens().insert(expiring);
    expect(await tokens().hasLiveAdmin(later(9))).toBe(true);
    expect(await tokens().hasLiveAdmin(later(10))).toBe(false);
    await tokens().revoke(expiring.id, later(1));
    expect(await tokens().hasLiveAdmin(later(1))).toBe(false);
  });
});

describeEachDatabase('PolicyRepository contract', (kind) => {
  const store = sharedStore(kind);
  const policies = () => new KnexPolicyRepository(store.db);
  const changes = () => new KnexChangeRepository(store.db);

  it('creates at revision 1 and replaces at the next, keeping the creation time', async () => {
    expect(await policies().put('p.put', DOCUMENT, later(1), undefined)).toMatchObject({ kind: 'created', policy: { revision: 1 } });
    const replaced = await policies().put('p.put', DOCUMENT, later(2), undefined);
    expect(replaced).toMatchObject({ kind: 'replaced', policy: { revision: 2, createdAt: later(1), updatedAt: later(2) } });
    expect(await policies().find('p.put')).toEqual({ name: 'p.put', document: DOCUMENT, revision: 2, createdAt: later(1), updatedAt: later(2) });
  });

  it('replaces only the expected revision; 0 means create only', async () => {
    await policies().put('p.rev', DOCUMENT, T0, 0);
    expect(await policies().put('p.rev', DOCUMENT, T0, 0)).toEqual({ kind: 'revision-mismatch' });
    expect(await policies().put('p.rev', DOCUMENT, T0, 2)).toEqual({ kind: 'revision-mismatch' });
    expect(await policies().put('p.rev', DOCUMENT, T0, 1)).toMatchObject({ kind: 'replaced', policy: { revision: 2 } });
  });

  it('deletes only the expected revision, and a name deleted and made again never reuses a revision', async () => {
    await policies().put('p.del', DOCUMENT, T0, undefined);
    expect(await policies().delete('p.del', 2, T0)).toBe('revision-mismatch');
    expect(await policies().delete('p.del', 1, T0)).toBe('deleted');
    expect(await policies().delete('p.del', undefined, T0)).toBe('not-found');
    expect(await policies().find('p.del')).toBeUndefined();
    expect(await policies().put('p.del', DOCUMENT, T0, 0)).toMatchObject({ kind: 'created', policy: { revision: 2 } });
  });

  it('records each put and delete as a change in its commit, and a refused write records none', async () => {
    const before = await changes().latestSeq();
    await policies().put('p.change', DOCUMENT, T0, undefined);
    await policies().put('p.change', DOCUMENT, T0, 7);
    await policies().delete('p.change', undefined, T0);
    expect((await changes().since(before, 10)).map((c) => [c.kind, c.action, c.subject])).toEqual([
      ['policy', 'put', 'p.change'],
      ['policy', 'delete', 'p.change'],
    ]);
  });

  it('concurrent first writes of one name all land, as successive revisions', async () => {
    const outcomes = await Promise.all([0, 1, 2].map(() => policies().put('p.race', DOCUMENT, T0, undefined)));
    expect(outcomes.map((o) => (o.kind === 'revision-mismatch' ? 0 : o.policy.revision)).sort()).toEqual([1, 2, 3]);
  });

  it('lists live policies in name order, under a prefix, after a cursor', async () => {
    for (const name of ['pl.b', 'pl.a', 'pl.c']) await policies().put(name, DOCUMENT, T0, undefined);
    await policies().delete('pl.c', undefined, T0);
    expect((await policies().list({ prefix: 'pl.', limit: 10 })).map((p) => p.name)).toEqual(['pl.a', 'pl.b']);
    expect((await policies().list({ prefix: 'pl.', after: 'pl.a', limit: 10 })).map((p) => p.name)).toEqual(['pl.b']);
    expect((await policies().all()).map((p) => p.name)).toEqual(expect.arrayContaining(['pl.a', 'pl.b']));
    expect((await policies().all()).map((p) => p.name)).not.toContain('pl.c');
  });
});
