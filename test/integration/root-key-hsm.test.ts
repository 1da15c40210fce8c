import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { DecryptionFailedError, StartupError } from '../../src/errors.js';
import { keyVersionWrapAad } from '../../src/crypto/key-version-cipher.js';
import { LocalRootKey, parseRootKeyText } from '../../src/root-keys/root-key.js';
import { createPkcs11RootKey, openPkcs11RootKey } from '../../src/root-keys/root-key-loader.js';
import { KnexRootKeyRepository } from '../../src/storage/knex-root-key-repository.js';
import { buildTestApp, DATABASE_KINDS, TEST_ROOT_KEY, TestStore, type DatabaseKind, type TestApp } from '../helpers/app.js';
import { cliEnvironment } from '../helpers/audit.js';
import { CLI_IS_BUILT, runCli } from '../helpers/cli.js';
import { freshKeyLabel, SOFTHSM_LIBRARY, SOFTHSM_MISSING, softHsmToken } from '../helpers/softhsm.js';

/**
 * The PKCS#11 root-key provider against a real token: SoftHSM 2 in a token directory of this run's own. `.ci/run`
 * installs softhsm2, so CI runs this; elsewhere it is skipped, saying why.
 */
if (SOFTHSM_MISSING !== undefined) console.warn(`root-key-hsm: skipped, ${SOFTHSM_MISSING}`);

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FILE_KEY = new LocalRootKey(parseRootKeyText(TEST_ROOT_KEY)!);
const NEW_FILE_KEY_TEXT = randomBytes(32).toString('base64');
const NEW_FILE_KEY = new LocalRootKey(parseRootKeyText(NEW_FILE_KEY_TEXT)!);

interface Sealed {
  readonly ciphertext: string;
  readonly plaintext: string;
}

async function seal(t: TestApp, names: readonly string[]): Promise<Sealed[]> {
  const sealed: Sealed[] = [];
  for (const name of names) {
    if ((await t.call('GET', `/v1/keys/${name}`)).status === 404) expect((await t.call('POST', '/v1/keys', { name })).status).toBe(201);
    else expect((await t.call('POST', `/v1/keys/${name}/rotate`)).status).toBe(200);
    const dk = await t.call('POST', `/v1/keys/${name}/datakey`, {});
    expect(dk.status, dk.text).toBe(200);
    sealed.push({ ciphertext: dk.body.ciphertext, plaintext: dk.body.plaintext });
  }
  return sealed;
}

async function expectAllDecrypt(t: TestApp, sealed: readonly Sealed[]): Promise<void> {
  for (const { ciphertext, plaintext } of sealed) {
    const opened = await t.call('POST', '/v1/decrypt', { ciphertext });
    expect(opened.status, opened.text).toBe(200);
    expect(opened.body.plaintext).toBe(plaintext);
  }
}

/** Where every wrapped thing in the store is: root key id → how many key versions and system secrets. */
async function wrappedUnder(t: TestApp): Promise<Record<string, number>> {
  const rows = [...(await t.db('key_versions').whereNotNull('material').select('root_key_id')), ...(await t.db('system_secrets').select('root_key_id'))];
  const counts: Record<string, number> = {};
  for (const { root_key_id: id } of rows as Array<{ root_key_id: string }>) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
}

/** The id of a key in the token, as a server computes it. */
async function hsmKeyId(label: string): Promise<string> {
  const key = await openPkcs11RootKey(softHsmToken().settings, { label, what: 'test' });
  await key.close();
  return key.id;
}

describe.skipIf(SOFTHSM_MISSING !== undefined)('the PKCS#11 root key in SoftHSM', () => {
  const hsm = SOFTHSM_MISSING === undefined ? softHsmToken() : undefined;

  it('is a token key that cannot be read or exported, even by a client holding the PIN', async () => {
    const label = freshKeyLabel();
    const created = await createPkcs11RootKey(hsm!.settings, { label, what: '--label' });
    await created.close();
    const script = `
      const p = require('pkcs11js');
      const [library, tokenLabel, pin, label] = process.argv.slice(1);
      const lib = new p.PKCS11(); lib.load(library); lib.C_Initialize({ flags: p.CKF_OS_LOCKING_OK });
      const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === tokenLabel);
      const session = lib.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
      lib.C_Login(session, p.CKU_USER, pin);
      lib.C_FindObjectsInit(session, [{ type: p.CKA_LABEL, value: label }]);
      const [key] = lib.C_FindObjects(session, 2); lib.C_FindObjectsFinal(session);
      const attempt = (f) => { try { f(); return 'done'; } catch (e) { return e.message; } };
      const wrapping = lib.C_GenerateKey(session, { mechanism: p.CKM_AES_KEY_GEN }, [
        { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
        { type: p.CKA_VALUE_LEN, value: 32 }, { type: p.CKA_TOKEN, value: false }, { type: p.CKA_WRAP, value: true }]);
      const flags = lib.C_GetAttributeValue(session, key, [p.CKA_TOKEN, p.CKA_SENSITIVE, p.CKA_EXTRACTABLE, p.CKA_PRIVATE]
        .map((type) => ({ type }))).map((a) => a.value[0]);
      console.log(JSON.stringify({
        value: attempt(() => lib.C_GetAttributeValue(session, key, [{ type: p.CKA_VALUE }])),
        wrap: attempt(() => lib.C_WrapKey(session, { mechanism: p.CKM_AES_KEY_WRAP }, wrapping, key, Buffer.alloc(64))),
        makeExtractable: attempt(() => lib.C_SetAttributeValue(session, key, [{ type: p.CKA_EXTRACTABLE, value: true }])),
        flags,
      }));
      lib.C_Logout(session); lib.C_CloseSession(session); lib.C_Finalize();`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script, SOFTHSM_LIBRARY, hsm!.tokenLabel, hsm!.pin, label], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', SOFTHSM2_CONF: hsm!.conf },
    });
    expect(JSON.parse(stdout)).toEqual({
      value: 'CKR_ATTRIBUTE_SENSITIVE',
      wrap: 'CKR_KEY_UNEXTRACTABLE',
      // Refused: SoftHSM answers CKR_ACTION_PROHIBITED (0x1B, PKCS#11 3.0), which pkcs11js names by number.
      makeExtractable: expect.stringMatching(/^CKR_(ACTION_PROHIBITED|VENDOR_DEFINED:27|ATTRIBUTE_READ_ONLY)$/),
      // CKA_TOKEN, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_PRIVATE
      flags: [1, 1, 0, 1],
    });
  });

  it('survives 100 concurrent unwraps and wraps, with tampered material among them, on its session pool', async () => {
    const label = freshKeyLabel();
    const key = await createPkcs11RootKey(hsm!.settings, { label, what: '--label' });
    try {
      const keyIds = Array.from({ length: 100 }, () => randomUUID());
      const aad = (i: number) => keyVersionWrapAad(keyIds[i]!, 1);
      const materials = Array.from({ length: 100 }, () => randomBytes(32));
      const wrapped = await Promise.all(materials.map((material, i) => key.wrap(material, aad(i))));
      const tampered = wrapped.slice(0, 5).map((w) => Buffer.concat([w.subarray(0, -1), Buffer.of(w[w.length - 1]! ^ 1)]));
      const [unwrapped, rewrapped, refused] = await Promise.all([
        Promise.all(wrapped.map((w, i) => key.unwrap(w, aad(i)))),
        Promise.all(materials.map((material, i) => key.wrap(material, aad(i)))),
        Promise.all(tampered.map((w, i) => key.unwrap(w, aad(i)).then(() => 'opened', (error: unknown) => error))),
      ]);
      expect(unwrapped).toEqual(materials);
      expect(await Promise.all(rewrapped.map((w, i) => key.unwrap(w, aad(i))))).toEqual(materials);
      for (const error of refused) expect(error).toBeInstanceOf(DecryptionFailedError);
    } finally {
      await key.close();
    }
  });

  describe.each(DATABASE_KINDS)('with a store [%s]', (kind: DatabaseKind) => {
    let store: TestStore;
    let t: TestApp | undefined;
    afterEach(async () => {
      await t?.app.close();
      t = undefined;
      await store.destroy();
    });

    it('a fresh store starts on the HSM: versions and a random audit key are wrapped there, and a cold restart unwraps them', async () => {
      const label = freshKeyLabel();
      await (await createPkcs11RootKey(hsm!.settings, { label, what: '--label' })).close();
      const id = await hsmKeyId(label);
      store = new TestStore(kind);
      t = await buildTestApp(kind, { store, env: hsm!.env(label) });
      const sealed = await seal(t, ['orders', 'orders', 'billing']);
      expect(await new KnexRootKeyRepository(t.db).list()).toEqual([expect.objectContaining({ id })]);
      expect(await wrappedUnder(t)).toEqual({ [id]: 4 });
      t = await t.restart();
      await expectAllDecrypt(t, sealed);
      await t.services.auditWriter?.flush();
      expect((await t.services.auditLog.verify()).ok).toBe(true);
      expect(t.logs.text()).not.toContain(hsm!.pin);
    });

    it('start-up fails closed, saying what to fix: a wrong PIN, a missing token or key, a wrong library', async () => {
      const label = freshKeyLabel();
      await (await createPkcs11RootKey(hsm!.settings, { label, what: '--label' })).close();
      store = new TestStore(kind);
      const start = (env: Record<string, string>) => buildTestApp(kind, { store, env: { ...hsm!.env(label), ...env } });
      const failures: Array<[Record<string, string>, string]> = [
        [{ KEYHOLD_PKCS11_PIN: 'not-the-pin-1' }, `The token "${hsm!.tokenLabel}" refused KEYHOLD_PKCS11_PIN: the PIN is wrong (CKR_PIN_INCORRECT)`],
        [{ KEYHOLD_PKCS11_TOKEN_LABEL: 'no-such-token' }, 'No token labelled "no-such-token" (KEYHOLD_PKCS11_TOKEN_LABEL)'],
        [{ KEYHOLD_PKCS11_KEY_LABEL: 'no-such-key' }, 'No AES key labelled "no-such-key" (KEYHOLD_PKCS11_KEY_LABEL)'],
        [{ KEYHOLD_PKCS11_KEY_LABEL: 'no-such-key' }, 'Create it with `keyhold root init-hsm`'],
        [{ KEYHOLD_PKCS11_LIBRARY: '/usr/lib/softhsm/libnothing.so' }, 'KEYHOLD_PKCS11_LIBRARY /usr/lib/softhsm/libnothing.so cannot be loaded'],
      ];
      for (const [env, message] of failures) {
        const error = await start(env).then(() => undefined, (reason: unknown) => reason as Error);
        expect(error).toBeInstanceOf(StartupError);
        expect(error!.message).toContain(message);
        expect(error!.message).not.toContain('not-the-pin-1');
        expect(error!.message).not.toContain(hsm!.pin);
      }
      // Each failure released the library: the right settings start.
      t = await start({});
      expect((await t.call('POST', '/v1/keys', { name: 'after' })).status).toBe(201);
    });

    it.skipIf(!CLI_IS_BUILT)(
      'a store moves from a file root key to the HSM and back with keyhold root rotate, and every ciphertext and chain survives',
      async () => {
        const label = freshKeyLabel();
        store = new TestStore(kind);
        t = await buildTestApp(kind, { store });
        const sealed = await seal(t, ['alpha', 'beta', 'alpha']);
        const cli = (env: Record<string, string>, args: string[]) =>
          runCli(args, { env: { ...cliEnvironment(t!), SOFTHSM2_CONF: hsm!.conf, ...env } });

        // keyhold root init-hsm creates the key and prints its id; a second run refuses the label.
        const init = await cli({ ...hsm!.tokenEnv }, ['root', 'init-hsm', '--label', label]);
        expect(init.code, init.stderr).toBe(0);
        const { rootKeyId: hsmId } = JSON.parse(init.stdout) as { rootKeyId: string };
        expect(hsmId).toBe(await hsmKeyId(label));
        const again = await cli({ ...hsm!.tokenEnv }, ['root', 'init-hsm', '--label', label]);
        expect(again.code).toBe(1);
        expect(again.stderr).toContain(`already holds an object labelled "${label}"`);

        // File → HSM: the servers run on the HSM key with the file key previous; the rotation moves everything.
        const fileToHsm = { ...hsm!.env(label), KEYHOLD_PREVIOUS_ROOT_KEY_FILE: store.writeSecretFile('old.key', TEST_ROOT_KEY) };
        t = await t.restart(fileToHsm);
        sealed.push(...(await seal(t, ['gamma'])));
        const toHsm = await cli(fileToHsm, ['root', 'rotate', '--new-key-label', label, '--batch-size', '2']);
        expect(toHsm.code, toHsm.stderr).toBe(0);
        expect(JSON.parse(toHsm.stdout)).toEqual({ rootKeyId: hsmId, rewrapped: 4, remaining: 0, dryRun: false });
        t = await t.restart({ ...hsm!.env(label), KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '' });
        expect(await wrappedUnder(t)).toEqual({ [hsmId]: 5 });
        await expectAllDecrypt(t, sealed);

        // HSM → file: a new file key primary, the HSM key previous, and the same command with --new-key-file.
        const newKeyFile = store.writeSecretFile('new.key', NEW_FILE_KEY_TEXT);
        const hsmToFile = { ...hsm!.tokenEnv, KEYHOLD_ROOT_KEY: '', KEYHOLD_ROOT_KEY_FILE: newKeyFile, KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: label };
        t = await t.restart({ ...hsmToFile, KEYHOLD_ROOT_KEY_PROVIDER: '', KEYHOLD_PKCS11_KEY_LABEL: '', KEYHOLD_PREVIOUS_ROOT_KEY_FILE: '' });
        const toFile = await cli({ ...hsmToFile, KEYHOLD_ROOT_KEY_PROVIDER: 'local' }, ['root', 'rotate', '--new-key-file', newKeyFile]);
        expect(toFile.code, toFile.stderr).toBe(0);
        expect(JSON.parse(toFile.stdout)).toMatchObject({ rootKeyId: NEW_FILE_KEY.id, remaining: 0 });
        const noHsm = Object.fromEntries(Object.keys({ ...hsm!.env(label), ...hsmToFile }).map((name) => [name, '']));
        t = await t.restart({ ...noHsm, KEYHOLD_ROOT_KEY_FILE: newKeyFile });
        expect(await wrappedUnder(t)).toEqual({ [NEW_FILE_KEY.id]: 5 });
        await expectAllDecrypt(t, sealed);
        await t.services.auditWriter?.flush();
        const report = await t.services.auditLog.verify();
        expect(report.ok, JSON.stringify(report)).toBe(true);
        expect((await new KnexRootKeyRepository(t.db).list()).map((entry) => entry.id)).toEqual([FILE_KEY.id, hsmId, NEW_FILE_KEY.id]);
        for (const run of [init, again, toHsm, toFile]) expect(run.stdout + run.stderr).not.toContain(hsm!.pin);
      },
      60_000,
    );
  });
});
