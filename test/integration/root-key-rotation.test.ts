import { randomBytes } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { LocalRootKey, parseRootKeyText } from '../../src/root-keys/root-key.js';
import { RootKeyring } from '../../src/root-keys/root-keyring.js';
import { StartupError } from '../../src/errors.js';
import { readRootKeyFile } from '../../src/root-keys/root-key-loader.js';
import { rotateRootKey, type RewrapProgress, type RewrapSummary } from '../../src/root-keys/root-rotation.js';
import { KnexRootKeyRepository } from '../../src/storage/knex-root-key-repository.js';
import { KnexRootRewrapRepository } from '../../src/storage/knex-root-rewrap-repository.js';
import { KnexSystemSecretRepository } from '../../src/storage/knex-system-secret-repository.js';
import { buildTestApp, describeEachDatabase, TEST_ROOT_KEY, TestStore, type TestApp } from '../helpers/app.js';

const OLD_KEY = TEST_ROOT_KEY;
const OLD = new LocalRootKey(parseRootKeyText(OLD_KEY)!);
const NEW_KEY = randomBytes(32).toString('base64');
const NEW = new LocalRootKey(parseRootKeyText(NEW_KEY)!);
/** KEYHOLD_CACHE_TTL_MS's default: the tests' apps keep key versions in their cache this long by their clock. */
const CACHE_TTL_MS = 5000;

interface Sealed {
  readonly ciphertext: string;
  readonly plaintext: string;
}

/** Thrown from a progress callback to stop a rotation between batches, as a killed run stops. */
class Interrupted extends Error {}

describeEachDatabase('root key rotation', (kind) => {
  let store: TestStore;
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.app.close();
    t = undefined;
    await store.destroy();
  });

  /** Old key primary, as before any rotation (inline, as the test apps are built). */
  const oldOnly = () => ({ KEYHOLD_ROOT_KEY: OLD_KEY, KEYHOLD_ROOT_KEY_FILE: '', KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '' });
  /** The new key primary, the old one accepted for unwrapping: every replica during a rotation. */
  const both = () => ({ KEYHOLD_ROOT_KEY: '', KEYHOLD_ROOT_KEY_FILE: store.writeSecretFile('new.key', NEW_KEY), KEYHOLD_PREVIOUS_ROOT_KEY_FILE: store.writeSecretFile('old.key', OLD_KEY) });
  const newOnly = () => ({ KEYHOLD_ROOT_KEY: '', KEYHOLD_ROOT_KEY_FILE: store.writeSecretFile('new.key', NEW_KEY), KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '' });

  /** Three keys of two versions each, a data key and a ciphertext under each version. */
  async function seed(): Promise<Sealed[]> {
    store = new TestStore(kind);
    t = await buildTestApp(kind, { store });
    const sealed: Sealed[] = [];
    for (const name of ['alpha', 'beta', 'gamma']) {
      expect((await t.call('POST', '/v1/keys', { name })).status).toBe(201);
      for (let version = 1; version <= 2; version++) {
        if (version === 2) expect((await t.call('POST', `/v1/keys/${name}/rotate`)).status).toBe(200);
        const dk = await t.call('POST', `/v1/keys/${name}/datakey`, { context: { app: name } });
        expect(dk.status).toBe(200);
        sealed.push({ ciphertext: dk.body.ciphertext, plaintext: dk.body.plaintext });
      }
    }
    return sealed;
  }

  async function expectAllDecrypt(app: TestApp, sealed: readonly Sealed[]): Promise<void> {
    for (const [index, { ciphertext, plaintext }] of sealed.entries()) {
      const context = { app: ['alpha', 'beta', 'gamma'][Math.floor(index / 2)]! };
      const opened = await app.call('POST', '/v1/decrypt', { ciphertext, context });
      expect(opened.status, opened.text).toBe(200);
      expect(opened.body.plaintext).toBe(plaintext);
    }
  }

  async function rootKeyIds(app: TestApp): Promise<string[]> {
    const versions = await app.db('key_versions').whereNotNull('material').select('root_key_id');
    const secrets = await app.db('system_secrets').select('root_key_id');
    return [...versions, ...secrets].map((row: { root_key_id: string }) => row.root_key_id);
  }

  /** Runs the rotation in-process over the app's store, with the keyring `both()` configures: new primary, old previous. */
  function rotate(app: TestApp, onProgress?: (progress: RewrapProgress) => void, batchSize = 2): Promise<RewrapSummary> {
    const db = app.db;
    const configured = new RootKeyring(NEW, [OLD]);
    return rotateRootKey({
      rootKeys: new KnexRootKeyRepository(db),
      secrets: new KnexSystemSecretRepository(db),
      rewrap: new KnexRootRewrapRepository(db),
      configured,
      newKey: NEW,
      clock: app.clock,
      batchSize,
      onProgress,
      patienceMs: 0,
    });
  }

  it('a server with the new key and the previous one serves every key made before, and wraps new versions under the new key', async () => {
    const sealed = await seed();
    t = await t!.restart(both());
    await expectAllDecrypt(t, sealed);
    expect((await t.call('POST', '/v1/keys/alpha/rotate')).status).toBe(200);
    const alpha = await t.call('GET', '/v1/keys/alpha');
    expect(alpha.body.versions.map((v: { rootKeyId: string }) => v.rootKeyId)).toEqual([OLD.id, OLD.id, NEW.id]);
    const created = await t.call('POST', '/v1/keys', { name: 'delta' });
    expect(created.body.versions[0].rootKeyId).toBe(NEW.id);
    const dk = await t.call('POST', '/v1/keys/delta/datakey', {});
    t = await t.restart(both());
    expect((await t.call('POST', '/v1/decrypt', { ciphertext: dk.body.ciphertext })).body.plaintext).toBe(dk.body.plaintext);
  });

  it('the rewrap moves every version and the audit key under the new key, and then the new key alone serves everything', async () => {
    const sealed = await seed();
    t = await t!.restart(both());
    const summary = await rotate(t);
    expect(summary).toEqual({ rootKeyId: NEW.id, rewrapped: 7, remaining: 0, dryRun: false });
    expect(new Set(await rootKeyIds(t))).toEqual(new Set([NEW.id]));
    t = await t.restart(newOnly());
    await expectAllDecrypt(t, sealed);
    expect((await t.services.auditLog.verify()).ok).toBe(true);
  });

  it('the rewrap moves AWS secret keys too: each still signs with the same secret under the new key alone', async () => {
    await seed();
    const issued = (await t!.call('POST', '/v1/aws-credentials', { name: 'rotated', principal: 'k8s:shop:api' })).body;
    const revoked = (await t!.call('POST', '/v1/aws-credentials', { name: 'revoked' })).body;
    expect((await t!.call('DELETE', `/v1/aws-credentials/${revoked.accessKeyId}`)).status).toBe(204);
    t = await t!.restart(both());
    expect(await rotate(t)).toMatchObject({ rewrapped: 9, remaining: 0 });
    const rows = await t.db('aws_credentials').select('root_key_id');
    expect(rows.map((row: { root_key_id: string }) => row.root_key_id)).toEqual([NEW.id, NEW.id]);
    t = await t.restart(newOnly());
    const credential = await t.services.awsCredentials.signingCredential(issued.accessKeyId);
    expect(credential?.secretAccessKey).toBe(issued.secretAccessKey);
    expect(await t.services.awsCredentials.signingCredential(revoked.accessKeyId)).toBeUndefined();
  });

  it('a server with only the new key refuses to start while an AWS secret key is still under the old one', async () => {
    await seed();
    await t!.call('POST', '/v1/aws-credentials', { name: 'left-behind' });
    t = await t!.restart(both());
    // One row per batch, system secrets first: the audit key moves, the AWS secret key and every version stay.
    await expect(rotate(t, () => { throw new Interrupted(); }, 1)).rejects.toBeInstanceOf(Interrupted);
    const restart = t.restart(newOnly());
    t = undefined;
    await expect(restart).rejects.toThrow(new RegExp(`1 AWS secret key\\(s\\) are wrapped under root key ${OLD.id}`));
  });

  it('a rewrap stopped part way leaves a store that both keys serve in full, and a second run finishes it', async () => {
    const sealed = await seed();
    t = await t!.restart(both());
    const stopped = rotate(t, () => {
      throw new Interrupted();
    });
    await expect(stopped).rejects.toBeInstanceOf(Interrupted);
    const ids = await rootKeyIds(t);
    expect(ids.filter((id) => id === NEW.id)).toHaveLength(2);
    expect(ids.filter((id) => id === OLD.id)).toHaveLength(5);

    // A fresh app has no cache: each version is unwrapped from the store, under whichever key holds it now.
    t = await t.restart(both());
    await expectAllDecrypt(t, sealed);

    const progress: RewrapProgress[] = [];
    const summary = await rotate(t, (p) => progress.push(p));
    expect(summary).toMatchObject({ rewrapped: 5, remaining: 0 });
    expect(progress.at(-1)).toEqual({ rewrapped: 5, remaining: 0 });
    t = await t.restart(newOnly());
    await expectAllDecrypt(t, sealed);
  });

  it('keeps serving every key while the rewrap runs', async () => {
    const sealed = await seed();
    t = await t!.restart(both());
    const app = t;
    let done = false;
    const rotation = rotate(app, undefined, 1).finally(() => (done = true));
    let rounds = 0;
    while (!done || rounds === 0) {
      // Past the cache's TTL, every round unwraps from the store as the rewrap has left it so far.
      app.clock.advance(CACHE_TTL_MS + 1);
      await expectAllDecrypt(app, sealed);
      rounds += 1;
    }
    expect((await rotation).remaining).toBe(0);
  });

  it('a server with only the new key refuses to start while material is still under the old one, naming the count and the id', async () => {
    await seed();
    t = await t!.restart(both());
    await expect(rotate(t, () => { throw new Interrupted(); })).rejects.toBeInstanceOf(Interrupted);
    const restart = t.restart(newOnly());
    t = undefined;
    await expect(restart).rejects.toThrow(StartupError);
    await expect(restart).rejects.toThrow(new RegExp(`5 key version\\(s\\) are wrapped under root key ${OLD.id}, which is not configured`));
    await expect(restart).rejects.toThrow(/KEYHOLD_PREVIOUS_ROOT_KEY_FILE/);
  });

  it('a server with only a new key that was never recorded refuses to start: a rotation needs the previous key', async () => {
    await seed();
    const restart = t!.restart(newOnly());
    t = undefined;
    await expect(restart).rejects.toThrow(/check value does not match/);
    await expect(restart).rejects.toThrow(/KEYHOLD_PREVIOUS_ROOT_KEY_FILE/);
  });

  it('a previous key the store never recorded refuses start-up and records nothing', async () => {
    await seed();
    const stranger = randomBytes(32).toString('base64');
    const restart = t!.restart({ ...newOnly(), KEYHOLD_PREVIOUS_ROOT_KEY_FILE: store.writeSecretFile('stranger.key', stranger) });
    t = undefined;
    await expect(restart).rejects.toThrow(/KEYHOLD_PREVIOUS_ROOT_KEY_FILE holds root key [0-9a-f]{16}, which this store never recorded/);
    t = await buildTestApp(kind, { store, env: oldOnly() });
    expect((await new KnexRootKeyRepository(t.db).list()).map((entry) => entry.id)).toEqual([OLD.id]);
  });

  it('the old key alone still starts after the first rotated start, until the rewrap has moved something', async () => {
    await seed();
    t = await t!.restart(both());
    t = await t.restart(oldOnly());
    expect((await t.call('GET', '/v1/keys/alpha')).status).toBe(200);
  });

  it('the audit chain verifies across the rotation, and the audit key is the one derived before it was stored', async () => {
    await seed();
    const before = await t!.services.auditLog.verify();
    expect(before.ok).toBe(true);
    // A store from before the audit key was stored: the next start derives it as before and stores it.
    await t!.db('system_secrets').delete();
    t = await t!.restart(oldOnly());
    expect((await t.services.auditLog.verify()).ok).toBe(true);
    expect(await t.db('system_secrets').select('name', 'root_key_id')).toEqual([{ name: 'audit-key', root_key_id: OLD.id }]);
    await t.call('GET', '/v1/keys/alpha');

    t = await t.restart(both());
    await t.call('GET', '/v1/keys/alpha');
    await rotate(t);
    await t.call('GET', '/v1/keys/beta');
    t = await t.restart(newOnly());
    await t.call('GET', '/v1/keys/gamma');
    await t.services.auditWriter?.flush();
    const report = await t.services.auditLog.verify();
    expect(report.ok, JSON.stringify(report)).toBe(true);
    expect(report.chains.length).toBeGreaterThanOrEqual(4);
  });

  it('the first start with both keys on a store that never stored its audit key derives it from the first root key', async () => {
    await seed();
    await t!.db('system_secrets').delete();
    t = await t!.restart(both());
    expect((await t.services.auditLog.verify()).ok).toBe(true);
    t = await t.restart(both());
    expect((await t.services.auditLog.verify()).ok).toBe(true);
  });

  it('rotating again to the same key finds nothing to do', async () => {
    await seed();
    t = await t!.restart(both());
    await rotate(t);
    expect(await rotate(t)).toEqual({ rootKeyId: NEW.id, rewrapped: 0, remaining: 0, dryRun: false });
  });

  it('an unreadable or malformed new key file is a clear error that names the option and the path', () => {
    store = new TestStore(kind);
    const missing = join(store.dataDir, 'missing.key');
    expect(() => readRootKeyFile(missing, '--new-key-file')).toThrow(`--new-key-file ${missing} cannot be read: ENOENT`);
    const malformed = store.writeSecretFile('malformed.key', 'not a key');
    expect(() => readRootKeyFile(malformed, '--new-key-file')).toThrow(
      `--new-key-file ${malformed} must hold the base64 encoding of exactly 32 bytes`,
    );
    if (process.getuid?.() !== 0) {
      const locked = store.writeSecretFile('locked.key', NEW_KEY);
      chmodSync(locked, 0o000);
      expect(() => readRootKeyFile(locked, '--new-key-file')).toThrow(/cannot be read: EACCES/);
    }
  });
});
