import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { callerOf } from '../../../src/context/caller.js';
import { LocalRootKey } from '../../../src/root-keys/root-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import type { Principal } from '../../../src/context/principal.js';
import { KeyCache } from '../../../src/keys/key-cache.js';
import type { KeyRepository } from '../../../src/keys/key-repository.js';
import { KeyService } from '../../../src/keys/key-service.js';
import { PolicyAuthorizer } from '../../../src/policy/authorizer.js';
import { PolicySet } from '../../../src/policy/evaluate.js';
import { compilePolicy, type StatementDocument } from '../../../src/policy/policy.js';
import { ManualClock } from '../../helpers/clock.js';
import { InMemoryKeyRepository } from '../../helpers/fakes/in-memory-key-repository.js';
import { keyRecord } from '../../helpers/key-fixtures.js';

/** The most rows one workload listing may read (LIST_SCAN_ROWS), plus the one-row look-ahead of a full page. */
const MAX_ROWS_PER_REQUEST = 1000 + 1;

const WORKER: Principal = Object.freeze({ id: 'token:worker', type: 'token', admin: false, attributes: Object.freeze({}) });

/** An in-memory key store that counts the rows its listings read, as the database would. */
function countedStore(names: readonly string[]) {
  const repository = new InMemoryKeyRepository();
  for (const name of names) repository.seed(keyRecord({ id: randomUUID(), name }));
  const reads = {
    get queries() {
      return repository.reads.list + repository.reads.findNameById;
    },
    get rows() {
      return repository.reads.listedRows;
    },
  };
  return { repository, reads };
}

function keyServiceFor(repository: KeyRepository, statements: Array<Partial<StatementDocument>>): KeyService {
  const policies = new PolicySet([
    compilePolicy('p', {
      statements: statements.map((statement) => ({ effect: 'allow', principals: ['token:worker'], actions: ['keys:read'], keys: ['*'], ...statement })),
    }),
  ]);
  const clock = new ManualClock();
  const rootKey = new LocalRootKey(SecretBytes.random(32));
  return new KeyService({
    repository,
    cache: new KeyCache({ repository, rootKey, clock, ttlMs: 5000 }),
    rootKey,
    authorizer: new PolicyAuthorizer(() => policies),
    clock,
  });
}

const numbered = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(6, '0')}`);

describe('KeyService.list for a workload', () => {
  it('answers an empty page without any query when no statement grants keys:read', async () => {
    const store = countedStore(numbered('k-', 50));
    const service = keyServiceFor(store.repository, [{ actions: ['encrypt', 'decrypt'] }]);
    expect(await service.list(callerOf(WORKER), { limit: 100 })).toEqual({ keys: [] });
    expect(store.reads.queries).toBe(0);
  });

  it('reads only the names under the literal prefixes of its key globs', async () => {
    const store = countedStore([...numbered('other.', 5000), 'team.a', 'team.b', 'zeta.c']);
    const service = keyServiceFor(store.repository, [{ keys: ['team.*', 'zeta.c'] }]);
    const page = await service.list(callerOf(WORKER), { limit: 100 });
    expect(page.keys.map((key) => key.name)).toEqual(['team.a', 'team.b', 'zeta.c']);
    expect(page.nextCursor).toBeUndefined();
    expect(store.reads.rows).toBe(3);
  });

  it('substitutes principal variables into the prefixes, and a requested prefix narrows them further', async () => {
    const payments: Principal = Object.freeze({
      id: 'k8s:payments:api',
      type: 'kubernetes',
      admin: false,
      attributes: Object.freeze({ namespace: 'payments', serviceAccount: 'api' }),
    });
    const store = countedStore([...numbered('payments-prod.', 3000), 'payments.a1', 'payments.a2', 'payments.b1']);
    const service = keyServiceFor(store.repository, [{ principals: ['k8s:*'], keys: ['${principal.namespace}.*'] }]);
    const page = await service.list(callerOf(payments), { prefix: 'payments.a', limit: 100 });
    expect(page.keys.map((key) => key.name)).toEqual(['payments.a1', 'payments.a2']);
    expect(store.reads.rows).toBe(2);
  });

  it.each([2_000, 20_000])(
    'reads a bounded number of rows per request on a store of %i keys, and its cursors reach every readable key',
    async (size) => {
      // `*-x` has no literal prefix: the scan cannot be narrowed, only bounded.
      const names = numbered('k-', size);
      const readable = [names[10]!, names[size - 1]!].map((name) => `${name}-x`);
      const store = countedStore([...names, ...readable]);
      const service = keyServiceFor(store.repository, [{ keys: ['*-x'] }]);
      const seen: string[] = [];
      let cursor: string | undefined;
      let requests = 0;
      do {
        const before = store.reads.rows;
        const page = await service.list(callerOf(WORKER), { cursor, limit: 100 });
        requests += 1;
        expect(store.reads.rows - before).toBeLessThanOrEqual(MAX_ROWS_PER_REQUEST);
        seen.push(...page.keys.map((key) => key.name));
        cursor = page.nextCursor;
        // A cursor where the scan stopped names neither a key the caller may not read nor its id.
        if (cursor !== undefined) {
          const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
          expect(readable.includes(decoded) || decoded.startsWith('~')).toBe(true);
          expect(decoded).not.toMatch(/k-\d{6}$|[0-9a-f]{8}-[0-9a-f]{4}/);
        }
      } while (cursor !== undefined);
      expect(seen).toEqual(readable);
      expect(requests).toBeGreaterThan(1);
    },
  );

  it('a sealed cursor opens only for the caller it was given to; a made-up one is refused without a key lookup', async () => {
    const names = numbered('k-', 2_000);
    const store = countedStore([...names, `${names[1_999]}-x`]);
    const service = keyServiceFor(store.repository, [{ principals: ['token:*'], keys: ['*-x'] }]);
    const sealed = (await service.list(callerOf(WORKER), { limit: 100 })).nextCursor;
    expect(Buffer.from(sealed!, 'base64url')[0]).toBe(0x7e);
    const other: Principal = Object.freeze({ ...WORKER, id: 'token:other' });
    await expect(service.list(callerOf(other), { cursor: sealed, limit: 100 })).rejects.toMatchObject({ code: 'KH_ERR_VALIDATION' });
    const queries = store.reads.queries;
    const forged = Buffer.from(`~${randomUUID()}`).toString('base64url');
    await expect(service.list(callerOf(WORKER), { cursor: forged, limit: 100 })).rejects.toMatchObject({ code: 'KH_ERR_VALIDATION' });
    expect(store.reads.queries).toBe(queries);
    const seen: string[] = [];
    for (let cursor = sealed; cursor !== undefined; ) {
      const page = await service.list(callerOf(WORKER), { cursor, limit: 100 });
      seen.push(...page.keys.map((key) => key.name));
      cursor = page.nextCursor;
    }
    expect(seen).toEqual([`${names[1_999]}-x`]);
  });

  it('a full page carries a cursor only when keys it could read may follow', async () => {
    const store = countedStore(['a.1', 'a.2', 'a.3', 'b.1']);
    const service = keyServiceFor(store.repository, [{ keys: ['a.*'] }]);
    const first = await service.list(callerOf(WORKER), { limit: 2 });
    expect(first.keys.map((key) => key.name)).toEqual(['a.1', 'a.2']);
    const second = await service.list(callerOf(WORKER), { limit: 1, cursor: first.nextCursor });
    expect(second).toEqual({ keys: [expect.objectContaining({ name: 'a.3' })] });
  });
});
