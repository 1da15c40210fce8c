import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readWitness, verifyAuditFile } from '../../src/audit/audit-file.js';
import { parseHeadStatement, verifyHeadStatement } from '../../src/audit/head-statement.js';
import { SEAL_ACTION, SEAL_METHOD } from '../../src/audit/seal.js';
import type { Environment } from '../../src/config.js';
import { deriveAuditKeyFromSecret } from '../../src/audit/audit-key.js';
import { buildTestApp, describeEachDatabase, TestStore, TEST_ROOT_KEY, type TestApp } from '../helpers/app.js';
import {
  auditFileLines,
  auditRecords,
  CLI_IS_BUILT,
  createKey,
  lastRecord,
  replicaOf,
  runAuditVerifyCli,
  verifyDirectly,
  verifyViaApi,
  type VerificationBody,
} from '../helpers/audit.js';
import { ManualClock } from '../helpers/clock.js';

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
/** The test store's audit key: derived from its first root key, as the server derives it. */
const AUDIT_KEY = deriveAuditKeyFromSecret(Buffer.from(TEST_ROOT_KEY, 'base64'));

describeEachDatabase('audit chain ends: seal, heartbeat and witness', (kind) => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A store and a JSON-lines audit file, both removed after the test. */
  function storeWithFile(): { store: TestStore; auditFile: string } {
    const store = new TestStore(kind);
    const fileDir = mkdtempSync(join(tmpdir(), 'keyhold-audit-seal-'));
    cleanups.push(async () => {
      await store.destroy();
      rmSync(fileDir, { recursive: true, force: true });
    });
    return { store, auditFile: join(fileDir, 'audit.jsonl') };
  }

  /** An app over `store` that the test may close itself; closed after the test otherwise. */
  async function serve(store: TestStore, clock: ManualClock, env: Environment = {}): Promise<TestApp> {
    const app = await buildTestApp(kind, { store, clock, env });
    let closed = false;
    const close = app.app.close.bind(app.app);
    cleanups.push(async () => {
      if (!closed) await close();
    });
    return {
      ...app,
      async close() {
        closed = true;
        await close();
      },
    };
  }

  function chainOf(report: VerificationBody, replicaId: string) {
    const chain = report.chains.find((c) => c.replicaId === replicaId);
    if (chain === undefined) throw new Error(`No chain ${replicaId} in ${JSON.stringify(report)}`);
    return chain;
  }

  describe('seal and liveness', () => {
    it('a clean shutdown ends the chain with a seal record, and the chain then reads sealed', async () => {
      const { store } = storeWithFile();
      const clock = new ManualClock();
      const first = await serve(store, clock);
      await createKey(first, 'k');
      const replicaId = replicaOf(first);
      await first.close();

      const second = await serve(store, clock);
      const records = (await auditRecords(second)).filter((record) => record.replicaId === replicaId);
      expect(records.map((record) => record.sequence)).toEqual([1, 2]);
      expect(records[1]).toMatchObject({ method: SEAL_METHOD, action: SEAL_ACTION, route: null, principalId: null, outcome: 'sealed' });
      expect(chainOf(await verifyViaApi(second), replicaId)).toMatchObject({ ok: true, records: 2, lastSequence: 2, state: 'sealed' });
    });

    it('a running chain reads live in GET /v1/audit/verify; once its heartbeat is over 3 minutes old with no seal, unsealed', async () => {
      const { store } = storeWithFile();
      const t = await serve(store, new ManualClock());
      await createKey(t, 'k');
      expect(await verifyViaApi(t)).toEqual({
        ok: true,
        chains: [{ replicaId: replicaOf(t), ok: true, records: 1, lastSequence: 1, state: 'live', heartbeat: t.clock.now().toISOString() }],
      });
      // The writer's timer did not run in these three minutes: to the verifier, it has stopped.
      t.clock.advance(3 * MINUTE_MS + 1);
      const report = await verifyViaApi(t);
      expect(report.ok).toBe(false);
      expect(chainOf(report, replicaOf(t))).toMatchObject({ ok: true, state: 'unsealed' });
      await t.services.auditWriter!.stateHead();
      expect(await verifyViaApi(t)).toMatchObject({ ok: true, chains: [{ state: 'live' }] });
    });

    it('a retention purge keeps a sealed chain\'s seal, so the old chain still reads sealed', async () => {
      const { store } = storeWithFile();
      const clock = new ManualClock();
      const first = await serve(store, clock);
      await createKey(first, 'k');
      await first.call('POST', '/v1/keys/k/datakey');
      const replicaId = replicaOf(first);
      await first.close();
      clock.advance(10 * DAY_MS);
      const second = await serve(store, clock);
      const purged = await second.services.auditLog.purgeOlderThan(5);
      expect(purged).toEqual([{ replicaId, deleted: 2 }]);
      expect(chainOf(await verifyDirectly(second), replicaId)).toMatchObject({ ok: true, records: 1, lastSequence: 3, state: 'sealed' });
    });
  });

  describe('the red-team rollback: checkpoints saved at 30, 31 more requests, stop, records above 30 deleted, checkpoints put back', () => {
    /**
     * Runs the reproduction. The first server runs ten minutes in the past, so that by the time the chain is
     * verified its last heartbeat is stale; the clock then follows the system clock, which the CLI judges by.
     */
    async function rollback(options: { alsoRestoreHeartbeat: boolean }) {
      const { store, auditFile } = storeWithFile();
      const clock = new ManualClock(Date.now() - 10 * MINUTE_MS);
      const first = await serve(store, clock, { KEYHOLD_AUDIT_FILE: auditFile });
      const replicaId = replicaOf(first);
      const db = first.db;
      await createKey(first, 'orders');
      while ((await lastRecord(first)).sequence < 30) await first.call('POST', '/v1/keys/orders/datakey');
      expect((await lastRecord(first)).sequence).toBe(30);
      const savedCheckpoints = (await db('audit_checkpoints').where({ replica_id: replicaId })) as Array<Record<string, unknown>>;
      const savedHeartbeat = (await db('audit_heads').where({ replica_id: replicaId })) as Array<Record<string, unknown>>;

      // 31 more requests, one of which creates the key the cut tail would hide.
      expect((await first.call('POST', '/v1/keys', { name: 'exfiltration' })).status).toBe(201);
      for (let i = 0; i < 30; i += 1) await first.call('POST', '/v1/keys/exfiltration/datakey');
      expect((await lastRecord(first)).sequence).toBe(61);
      await first.close();
      clock.advance(10 * MINUTE_MS);

      // The next server is up; the attacker edits the store under it, as with the server stopped.
      const second = await serve(store, clock);
      const attacker = second.db;
      expect(await attacker('audit_records').where({ replica_id: replicaId }).andWhere('sequence', '>', 30).delete()).toBe(32);
      await attacker('audit_checkpoints').where({ replica_id: replicaId }).delete();
      await attacker('audit_checkpoints').insert(savedCheckpoints);
      if (options.alsoRestoreHeartbeat) {
        await attacker('audit_heads').where({ replica_id: replicaId }).delete();
        await attacker('audit_heads').insert(savedHeartbeat);
      }
      const key = await second.call('GET', '/v1/keys/exfiltration');
      expect(key.status, 'the key created in the cut tail still exists').toBe(200);
      return { second, replicaId, auditFile, log: first.logs.text() };
    }

    it('as reported (checkpoints put back): the heartbeat the writer stored at shutdown shows the cut, at sequence 31', async () => {
      const { second, replicaId } = await rollback({ alsoRestoreHeartbeat: false });
      const report = await verifyDirectly(second);
      expect(report.ok).toBe(false);
      expect(chainOf(report, replicaId)).toMatchObject({ ok: false, firstBadSequence: 31, problem: 'truncated', state: 'unsealed' });
    });

    it('with the heartbeat put back too: the chain verifies but ended without a seal, which fails the verdict unless accepted', async () => {
      const { second, replicaId } = await rollback({ alsoRestoreHeartbeat: true });
      const report = await verifyDirectly(second);
      expect(report.ok).toBe(false);
      expect(chainOf(report, replicaId)).toMatchObject({ ok: true, records: 30, lastSequence: 30, state: 'unsealed' });
      expect(chainOf(report, replicaOf(second))).toMatchObject({ ok: true, state: 'live' });
      const accepted = await second.services.auditLog.verify({ acceptUnsealed: new Set([replicaId]) });
      expect(accepted.ok).toBe(true);
      expect(chainOf(JSON.parse(JSON.stringify(accepted)) as VerificationBody, replicaId)).toMatchObject({ state: 'unsealed', accepted: true });
    });

    it('with a witness (the JSON-lines file): the exact cut, against the sealed head the witness holds', async () => {
      const { second, replicaId, auditFile } = await rollback({ alsoRestoreHeartbeat: true });
      const witness = await readWitness(auditFile);
      expect(witness.get(replicaId)).toMatchObject({ sequence: 62, sealed: true });
      const report = await second.services.auditLog.verify({ witness, acceptUnsealed: 'all' });
      expect(report.ok).toBe(false);
      expect(chainOf(JSON.parse(JSON.stringify(report)) as VerificationBody, replicaId)).toMatchObject({
        ok: false,
        firstBadSequence: 31,
        problem: 'truncated',
        witnessed: { sequence: 62, sealed: true },
      });
    });

    it('the server\'s log is a witness too: the same latest statement as the file', async () => {
      const { replicaId, auditFile, log } = await rollback({ alsoRestoreHeartbeat: true });
      const logFile = `${auditFile}.log`;
      // A container's captured stdout: the JSON log lines, and the server's plain lines among them.
      writeFileSync(logFile, `Keyhold listening on http://127.0.0.1:7780\n${log}`);
      expect((await readWitness(logFile)).get(replicaId)).toEqual((await readWitness(auditFile)).get(replicaId));
    });

    it('a chain the witness knows and the database has lost entirely is reported truncated from sequence 1', async () => {
      const { second, replicaId, auditFile } = await rollback({ alsoRestoreHeartbeat: true });
      const db = second.db;
      for (const table of ['audit_records', 'audit_checkpoints', 'audit_heads']) await db(table).where({ replica_id: replicaId }).delete();
      const report = await second.services.auditLog.verify({ witness: await readWitness(auditFile) });
      expect(chainOf(JSON.parse(JSON.stringify(report)) as VerificationBody, replicaId)).toMatchObject({
        ok: false,
        firstBadSequence: 1,
        problem: 'truncated',
      });
    });

    it.skipIf(!CLI_IS_BUILT)('keyhold audit verify (dist) exits 1 on the rollback; --accept-unsealed accepts only a chain that verifies; --witness shows the cut', async () => {
      const { second, replicaId, auditFile } = await rollback({ alsoRestoreHeartbeat: true });
      const plain = await runAuditVerifyCli(second);
      expect(plain.code, plain.stderr).toBe(1);
      expect(chainOf(JSON.parse(plain.stdout) as VerificationBody, replicaId)).toMatchObject({ ok: true, state: 'unsealed' });

      const accepted = await runAuditVerifyCli(second, ['--accept-unsealed', replicaId]);
      expect(accepted.code, accepted.stderr).toBe(0);

      const witnessed = await runAuditVerifyCli(second, ['--witness', auditFile, '--accept-unsealed', 'all']);
      expect(witnessed.code, witnessed.stderr).toBe(1);
      expect(chainOf(JSON.parse(witnessed.stdout) as VerificationBody, replicaId)).toMatchObject({
        ok: false,
        firstBadSequence: 31,
        problem: 'truncated',
        witnessed: { sequence: 62, sealed: true },
      });
    });
  });

  describe('the witness in the JSON-lines file and the log', () => {
    it('the file and the log carry the same MAC\'d head statements: at start, and sealed at shutdown', async () => {
      const { store, auditFile } = storeWithFile();
      const t = await serve(store, new ManualClock(), { KEYHOLD_AUDIT_FILE: auditFile });
      await createKey(t, 'k');
      const replicaId = replicaOf(t);
      await t.close();
      const lines = auditFileLines(auditFile).statements;
      const statements = lines.map((line) => parseHeadStatement(JSON.parse(line)));
      expect(statements).toMatchObject([
        { replicaId, sequence: 0, sealed: false },
        { replicaId, sequence: 2, sealed: true },
      ]);
      for (const statement of statements) expect(verifyHeadStatement(AUDIT_KEY, statement)).toBe(true);
      const logged = t.logs.lines
        .map((line) => JSON.parse(line) as { msg?: string; auditHead?: unknown })
        .filter((line) => line.msg === 'audit chain head')
        .map((line) => line.auditHead);
      expect(logged).toEqual(lines.map((line) => JSON.parse(line)));
    });

    describe('a shipped file verifies offline, with the audit key alone', () => {
      async function shippedFile(): Promise<{ auditFile: string; replicaId: string; store: TestStore; lines: string[] }> {
        const { store, auditFile } = storeWithFile();
        const clock = new ManualClock(Date.now() - 10 * MINUTE_MS);
        const t = await serve(store, clock, { KEYHOLD_AUDIT_FILE: auditFile });
        await createKey(t, 'k');
        for (let i = 0; i < 3; i += 1) await t.call('POST', '/v1/keys/k/datakey');
        const replicaId = replicaOf(t);
        await t.close();
        const lines = readFileSync(auditFile, 'utf8').split('\n').filter(Boolean);
        // The start statement, four records, the seal, the sealed statement.
        expect(lines).toHaveLength(7);
        return { auditFile, replicaId, store, lines };
      }

      const verify = (path: string) => verifyAuditFile(path, { auditKey: AUDIT_KEY, now: new Date(), acceptUnsealed: undefined });

      it('whole, it reads sealed', async () => {
        const { auditFile, replicaId } = await shippedFile();
        expect(JSON.parse(JSON.stringify(await verify(auditFile)))).toEqual({
          ok: true,
          chains: [
            {
              replicaId,
              ok: true,
              records: 5,
              lastSequence: 5,
              state: 'sealed',
              heartbeat: expect.any(String),
              witnessed: { sequence: 5, time: expect.any(String), sealed: true },
            },
          ],
        });
      });

      it('with its end cut off, it reads unsealed; with records cut under its last statement, truncated', async () => {
        const { auditFile, replicaId, lines } = await shippedFile();
        writeFileSync(auditFile, `${lines.slice(0, 4).join('\n')}\n`);
        expect(await verify(auditFile)).toMatchObject({ ok: false, chains: [{ replicaId, ok: true, lastSequence: 3, state: 'unsealed' }] });
        writeFileSync(auditFile, `${[...lines.slice(0, 4), lines[6]].join('\n')}\n`);
        expect(await verify(auditFile)).toMatchObject({
          ok: false,
          chains: [{ replicaId, ok: false, firstBadSequence: 4, problem: 'truncated' }],
        });
      });

      it('a line that is neither a record nor a head statement is refused with its line number', async () => {
        const { auditFile, lines } = await shippedFile();
        writeFileSync(auditFile, `${[lines[0], '{"not":"a record"}', ...lines.slice(1)].join('\n')}\n`);
        await expect(verify(auditFile)).rejects.toThrow(/line 2 is neither an audit record nor a head statement/);
      });

      it.skipIf(!CLI_IS_BUILT)('keyhold audit verify --file (dist) exits 0 on the whole file, 1 on one cut short', async () => {
        const { auditFile, store, lines } = await shippedFile();
        const whole = await runAuditVerifyCli({ store }, ['--file', auditFile]);
        expect(whole.code, whole.stderr).toBe(0);
        expect(JSON.parse(whole.stdout)).toMatchObject({ ok: true, chains: [{ state: 'sealed' }] });
        writeFileSync(auditFile, `${lines.slice(0, 4).join('\n')}\n`);
        const cut = await runAuditVerifyCli({ store }, ['--file', auditFile]);
        expect(cut.code, cut.stderr).toBe(1);
      });
    });
  });
});

describe('keyhold audit verify: arguments', () => {
  it.skipIf(!CLI_IS_BUILT)('refuses an unknown flag, --witness with --file, and an empty value, with exit status 2 and the usage', async () => {
    const store = new TestStore('sqlite');
    try {
      for (const args of [['--witnesses', 'f'], ['--witness', 'a', '--file', 'b'], ['--accept-unsealed', ''], ['--file'], ['extra']]) {
        const result = await runAuditVerifyCli({ store }, args);
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toContain('Usage: keyhold');
        expect(result.stdout).toBe('');
      }
    } finally {
      await store.destroy();
    }
  });
});
