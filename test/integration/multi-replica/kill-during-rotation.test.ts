import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_KINDS } from '../../helpers/app.js';
import { startCluster, stopAllClusters, type Replica } from '../../helpers/replicas.js';

interface Tally {
  rotated: number;
  issued: number;
  /** Answers other than 200, by status, and calls that got no answer (the victim was dead). */
  other: Record<string, number>;
}

/** Rotates and issues data keys on `replica` until `running()` turns false; keeps every issued ciphertext. */
async function hammer(replica: Replica, running: () => boolean, ciphertexts: string[], tally: Tally): Promise<void> {
  while (running()) {
    for (const [path, onOk] of [
      ['/v1/keys/ledger/rotate', () => (tally.rotated += 1)],
      ['/v1/keys/ledger/datakey', (body: { ciphertext: string }) => (ciphertexts.push(body.ciphertext), (tally.issued += 1))],
    ] as const) {
      try {
        const response = await replica.call('POST', path, path.endsWith('datakey') ? { includePlaintext: false } : undefined);
        if (response.status === 200) onOk(response.body);
        else tally.other[response.status] = (tally.other[response.status] ?? 0) + 1;
      } catch {
        tally.other.noAnswer = (tally.other.noAnswer ?? 0) + 1;
        // A dead replica refuses at once; do not spin on it.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }
}

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.runIf(DATABASE_KINDS.includes('postgres'))('kill -9 during rotation [postgres]', () => {
  afterEach(stopAllClusters);

  it('leaves one primary version, versions 1..N without gap or duplicate, and every issued ciphertext decryptable on every replica', async () => {
    const cluster = await startCluster({ replicas: 3 });
    const [victim] = cluster.replicas as [Replica, ...Replica[]];
    expect((await victim.call('POST', '/v1/keys', { name: 'ledger' })).status).toBe(201);

    const ciphertexts: string[] = [];
    const tallies = cluster.replicas.map((): Tally => ({ rotated: 0, issued: 0, other: {} }));
    let running = true;
    const workers = cluster.replicas.flatMap((replica) =>
      Array.from({ length: replica === victim ? 4 : 2 }, () => hammer(replica, () => running, ciphertexts, tallies[replica.index]!)),
    );
    try {
      await waitFor('the victim to rotate', () => tallies[0]!.rotated >= 20);
      const killed = await victim.kill('SIGKILL');
      const rotatedByVictim = tallies[0]!.rotated;
      const othersAtKill = tallies.slice(1).reduce((sum, tally) => sum + tally.rotated, 0);
      await waitFor('the others to rotate on', () => tallies.slice(1).reduce((sum, tally) => sum + tally.rotated, 0) >= othersAtKill + 20);
      await victim.restart();
      const afterRestart = tallies[0]!.rotated;
      await waitFor('the restarted victim to rotate', () => tallies[0]!.rotated >= afterRestart + 10);
      console.log(`victim ${JSON.stringify(killed)} after ${rotatedByVictim} rotations; others had ${othersAtKill}`);
    } finally {
      running = false;
      await Promise.all(workers);
    }
    console.log(`tallies: ${JSON.stringify(tallies)}; ${ciphertexts.length} ciphertexts`);

    const key = await cluster.db('keys').where({ name: 'ledger' }).first();
    const versions = await cluster.db('key_versions').where({ key_id: key.id }).orderBy('version').pluck('version');
    const n = versions.length;
    expect(versions).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(key.primary_version).toBe(n);
    // Every answered rotation made a version; a rotation cut by the kill made one or none.
    const answered = tallies.reduce((sum, tally) => sum + tally.rotated, 0);
    console.log(`${n - 1} rotations stored, ${answered} answered with 200`);
    expect(n - 1).toBeGreaterThanOrEqual(answered);
    for (const replica of cluster.replicas) {
      const read = await replica.call('GET', '/v1/keys/ledger');
      expect(read.body.primaryVersion).toBe(n);
      expect(read.body.versions.map((version: { version: number }) => version.version).sort((a: number, b: number) => a - b)).toEqual(versions);
    }

    const failures: string[] = [];
    for (const replica of cluster.replicas) {
      for (let i = 0; i < ciphertexts.length; i += 25) {
        const answers = await Promise.all(
          ciphertexts.slice(i, i + 25).map((ciphertext) => replica.call('POST', '/v1/decrypt', { ciphertext })),
        );
        for (const answer of answers) if (answer.status !== 200) failures.push(`replica ${replica.index}: ${answer.status} ${answer.body?.code}`);
      }
    }
    expect(failures).toEqual([]);
    // Three real replicas start, one is killed and restarted: on a loaded 2-core machine that alone can take 30 s.
  }, 90_000);
});
