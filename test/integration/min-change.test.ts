import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { KnexChangeRepository } from '../../src/storage/knex-change-repository.js';
import { MIN_CHANGE_WAIT_MS, MIN_CHANGE_HEADER } from '../../src/http/plugins/min-change.js';
import { buildReplicaPair, describeEachDatabase, type ReplicaPair, TEST_ADMIN_TOKEN, type ApiResponse, type TestApp } from '../helpers/app.js';
import { expectProblem } from '../helpers/expect-problem.js';

/**
 * Two replicas over one store, as in change-feed.test.ts: B learns of A's writes only through its feed. The poll
 * interval is beyond the test, and on SQLite the replicas are not woken by each other's commits (as replicas in
 * separate processes are not), so there only `Keyhold-Min-Change` makes B catch up; on PostgreSQL a NOTIFY may get
 * there first, so the tests that need B behind run on SQLite, and the refusals hold on both.
 */
describeEachDatabase('Keyhold-Min-Change', (kind) => {
  let pair: ReplicaPair;
  let a: TestApp;
  let b: TestApp;

  beforeEach(async () => {
    vi.spyOn(KnexChangeRepository.prototype, 'onLocalCommit').mockReturnValue(() => undefined);
    pair = await buildReplicaPair(kind);
    ({ a, b } = pair);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await pair.close();
  });

  /** The sequence of A's last write, as A's event stream would have named it. */
  async function seqOfA(): Promise<string> {
    await a.services.changes.catchUp();
    return String(a.services.changes.appliedSeq);
  }

  async function callB(method: 'GET' | 'POST', url: string, minChange: string, token = TEST_ADMIN_TOKEN): Promise<ApiResponse> {
    const response = await b.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${token}`, [MIN_CHANGE_HEADER]: minChange },
      ...(method === 'POST' ? { payload: {} } : {}),
    });
    const body: unknown = response.body === '' ? undefined : JSON.parse(response.body);
    return { status: response.statusCode, headers: response.headers as ApiResponse['headers'], body, text: response.body };
  }

  async function disabledThroughA(name: string): Promise<string> {
    await a.call('POST', '/v1/keys', { name });
    expect((await b.call('POST', `/v1/keys/${name}/datakey`, {})).status).toBe(200);
    expect((await a.call('POST', `/v1/keys/${name}/disable`)).status).toBe(200);
    return seqOfA();
  }

  it.runIf(kind === 'sqlite')('without the header, a replica behind the feed still answers from its cache', async () => {
    await disabledThroughA('stale');
    expect((await b.call('POST', '/v1/keys/stale/datakey', {})).status).toBe(200);
  });

  it('a replica named a change it has not applied catches up first, and refuses the key that change disabled', async () => {
    const seq = await disabledThroughA('revoked');
    expectProblem(await callB('POST', '/v1/keys/revoked/datakey', seq), 409, 'KH_ERR_KEY_DISABLED');
    expect(b.services.changes.appliedSeq).toBeGreaterThanOrEqual(Number(seq));
  });

  it('a policy withdrawn by the named change no longer grants, though authentication ran before the catch-up', async () => {
    await a.call('POST', '/v1/keys', { name: 'app-key' });
    const worker = (await a.call('POST', '/v1/tokens', { name: 'app' })).body.token as string;
    const grant = { statements: [{ effect: 'allow', principals: ['token:app'], actions: ['datakey'], keys: ['app-key'] }] };
    expect((await a.call('PUT', '/v1/policies/app', grant)).status).toBe(201);
    await b.services.changes.catchUp();
    expect((await b.call('POST', '/v1/keys/app-key/datakey', {}, worker)).status).toBe(200);
    expect((await a.call('DELETE', '/v1/policies/app')).status).toBe(204);
    expectProblem(await callB('POST', '/v1/keys/app-key/datakey', await seqOfA(), worker), 403, 'KH_ERR_FORBIDDEN');
  });

  it('a malformed sequence is refused as a validation problem', async () => {
    for (const value of ['', 'abc', '-1', '+1', '01', '1.0', '1, 2', '9007199254740992', '99999999999999999999']) {
      expectProblem(await callB('GET', '/v1/whoami', value), 400, 'KH_ERR_VALIDATION');
    }
  });

  it('a sequence beyond the store\'s latest is satisfied after one catch-up, well within the bound', async () => {
    await disabledThroughA('ahead');
    const started = performance.now();
    expectProblem(await callB('POST', '/v1/keys/ahead/datakey', String(Number.MAX_SAFE_INTEGER)), 409, 'KH_ERR_KEY_DISABLED');
    expect(performance.now() - started).toBeLessThan(MIN_CHANGE_WAIT_MS);
  });

  it('a replica that cannot read the feed answers 503 with Retry-After rather than from older state', async () => {
    const feed = b.services.changes;
    vi.spyOn(feed, 'changesSince').mockRejectedValue(new Error('the store is gone'));
    const response = await callB('GET', '/v1/whoami', String(feed.appliedSeq + 1));
    expectProblem(response, 503, 'KH_ERR_UNAVAILABLE');
    expect(response.headers['retry-after']).toBeDefined();
  });

  it('a replica that cannot catch up within the bound answers 503 at the bound, not later', async () => {
    const feed = b.services.changes;
    // The read ends only when the test lets it, so the answer can only have come from the bound, however loaded the
    // machine is; the bounds below say it came at the bound.
    // Reads started later (the poll) answer at once, so that nothing is left waiting when the replica closes.
    let released = false;
    const reads: Array<() => void> = [];
    vi.spyOn(feed, 'changesSince').mockImplementation(() =>
      released ? Promise.resolve([]) : new Promise<[]>((resolve) => reads.push(() => resolve([]))),
    );
    const started = performance.now();
    let waited: number;
    let response: ApiResponse;
    try {
      response = await callB('GET', '/v1/whoami', String(feed.appliedSeq + 1));
      waited = performance.now() - started;
    } finally {
      released = true;
      for (const release of reads) release();
    }
    expectProblem(response, 503, 'KH_ERR_UNAVAILABLE');
    expect(waited).toBeGreaterThanOrEqual(MIN_CHANGE_WAIT_MS - 50);
    expect(waited).toBeLessThan(MIN_CHANGE_WAIT_MS + 2500);
  });

  // On PostgreSQL a notification may start a read of its own meanwhile.
  it.runIf(kind === 'sqlite')('a sequence this replica has applied costs no read of the feed', async () => {
    const feed = b.services.changes;
    const read = vi.spyOn(feed, 'changesSince');
    expect((await callB('GET', '/v1/whoami', String(feed.appliedSeq))).status).toBe(200);
    expect((await callB('GET', '/v1/whoami', '0')).status).toBe(200);
    expect(read).not.toHaveBeenCalled();
  });

  it('public routes ignore the header', async () => {
    expect((await b.app.inject({ method: 'GET', url: '/healthz', headers: { [MIN_CHANGE_HEADER]: 'abc' } })).statusCode).toBe(200);
  });
});
