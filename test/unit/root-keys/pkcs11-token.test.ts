import { describe, expect, it } from 'vitest';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { DecryptionFailedError, StartupError, UnavailableError } from '../../../src/errors.js';
import { Pkcs11Runtime, type Pkcs11Settings } from '../../../src/root-keys/pkcs11-token.js';
import { createPkcs11RootKey, openPkcs11RootKey } from '../../../src/root-keys/root-key-loader.js';
import { ckr, FAKE_CK, FakePkcs11, type FakeToken } from '../../helpers/fakes/fake-pkcs11.js';

const PIN = 'pin-3141';
const LIBRARY = '/usr/lib/fake/libpkcs11.so';
const settings = (pin = PIN, tokenLabel = 'keyhold'): Pkcs11Settings => ({
  library: LIBRARY,
  tokenLabel,
  pin: { kind: 'inline', pin: SecretBytes.adopt(Buffer.from(pin, 'utf8')) },
});
const ROOT = { label: 'root-1', what: 'KEYHOLD_PKCS11_KEY_LABEL' };
const aad = Buffer.from('keyhold/key-version/v1 test');

function world(...keys: FakeToken['keys']): { fake: FakePkcs11; runtime: Pkcs11Runtime } {
  const fake = new FakePkcs11([
    { label: 'other', pin: 'x', keys: [] },
    { label: 'keyhold', pin: PIN, keys: keys.length > 0 ? keys : [FakePkcs11.key('root-1'), FakePkcs11.key('root-2')] },
  ]);
  return { fake, runtime: new Pkcs11Runtime(() => fake.binding(), 2) };
}

/** What `promise` rejected with, checked to be a `type`; fails the test if it resolved. */
async function expectError<T>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(type);
  return error as T;
}

async function startupMessage(promise: Promise<unknown>): Promise<string> {
  return (await expectError(promise, StartupError)).message;
}

describe('the PKCS#11 runtime', () => {
  it('initialises the library with CKF_OS_LOCKING_OK, so that sessions on several threads are safe', async () => {
    const { fake, runtime } = world();
    const key = await openPkcs11RootKey(settings(), ROOT, runtime);
    expect(fake.initializeFlags).toBe(FAKE_CK.CKF_OS_LOCKING_OK);
    await key.close();
  });

  it('logs in once per process for every key of one token, and finalises the library when the last key closes', async () => {
    const { fake, runtime } = world();
    const first = await openPkcs11RootKey(settings(), ROOT, runtime);
    const second = await openPkcs11RootKey(settings(), { label: 'root-2', what: 'KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL' }, runtime);
    expect(fake.calls.filter((call) => call === 'C_Login')).toHaveLength(1);
    await first.close();
    expect(fake.initialized).toBe(true);
    expect(await second.unwrap(await second.wrap(Buffer.alloc(32, 1), aad), aad)).toEqual(Buffer.alloc(32, 1));
    await second.close();
    expect(fake.calls.slice(-2)).toEqual(['C_Finalize', 'close']);
    expect(fake.openSessions).toBe(0);
  });

  it('opens the library again after it was finalised', async () => {
    const { fake, runtime } = world();
    await (await openPkcs11RootKey(settings(), ROOT, runtime)).close();
    const again = await openPkcs11RootKey(settings(), ROOT, runtime);
    expect(fake.calls.filter((call) => call === 'C_Initialize')).toHaveLength(2);
    await again.close();
  });

  it('gives the same id and check value to the same token key in every process, and others to another key', async () => {
    const { fake, runtime } = world();
    const a = await openPkcs11RootKey(settings(), ROOT, runtime);
    const again = await openPkcs11RootKey(settings(), ROOT, new Pkcs11Runtime(() => new FakePkcs11(fake.tokens).binding()));
    const b = await openPkcs11RootKey(settings(), { label: 'root-2', what: 'x' }, runtime);
    expect([again.id, again.checkValue]).toEqual([a.id, a.checkValue]);
    expect(b.id).not.toBe(a.id);
    expect(a.id).toMatch(/^[0-9a-f]{16}$/);
    expect(a.checkValue).toMatch(/^[0-9a-f]{64}$/);
    await Promise.all([a.close(), again.close(), b.close()]);
  });

  it('refuses a wrong PIN with a message that names the variable and never the PIN', async () => {
    const { runtime } = world();
    const message = await startupMessage(openPkcs11RootKey(settings('wrong-pin-2718'), ROOT, runtime));
    expect(message).toBe('The token "keyhold" refused KEYHOLD_PKCS11_PIN: the PIN is wrong (CKR_PIN_INCORRECT)');
    expect(message).not.toContain('wrong-pin-2718');
  });

  it('refuses a second PIN for a token this process is logged in to already', async () => {
    const { runtime } = world();
    const key = await openPkcs11RootKey(settings(), ROOT, runtime);
    const message = await startupMessage(openPkcs11RootKey(settings('another-pin'), { label: 'root-2', what: 'x' }, runtime));
    expect(message).toContain('differs from the one this process logged in with');
    expect(message).not.toContain('another-pin');
    await key.close();
  });

  it('refuses a token label that no token has, listing the labels present', async () => {
    const { fake, runtime } = world();
    expect(await startupMessage(openPkcs11RootKey(settings(PIN, 'nope'), ROOT, runtime))).toBe(
      `No token labelled "nope" (KEYHOLD_PKCS11_TOKEN_LABEL) in ${LIBRARY}; tokens present: "other", "keyhold"`,
    );
    expect(fake.initialized).toBe(false);
  });

  it('refuses a key label the token lacks, and suggests keyhold root init-hsm', async () => {
    const { fake, runtime } = world();
    const message = await startupMessage(openPkcs11RootKey(settings(), { label: 'missing', what: 'KEYHOLD_PKCS11_KEY_LABEL' }, runtime));
    expect(message).toContain('No AES key labelled "missing" (KEYHOLD_PKCS11_KEY_LABEL) in token "keyhold"');
    expect(message).toContain('keyhold root init-hsm');
    expect(fake.openSessions).toBe(0);
    expect(fake.initialized).toBe(false);
  });

  it('refuses a library that cannot be loaded, naming the path', async () => {
    const { fake, runtime } = world();
    fake.missingLibraries.add(LIBRARY);
    expect(await startupMessage(openPkcs11RootKey(settings(), ROOT, runtime))).toContain(
      `KEYHOLD_PKCS11_LIBRARY ${LIBRARY} cannot be loaded as a PKCS#11 module: ${LIBRARY}: cannot open shared object file`,
    );
  });

  it('says how to get pkcs11js when the optional package is missing', async () => {
    const runtime = new Pkcs11Runtime(() => {
      throw new StartupError('KEYHOLD_ROOT_KEY_PROVIDER=pkcs11 needs the optional package pkcs11js');
    });
    expect(await startupMessage(openPkcs11RootKey(settings(), ROOT, runtime))).toContain('needs the optional package pkcs11js');
  });

  it.each([
    ['can be exported', { CKA_EXTRACTABLE: true }, 'it can be exported (CKA_EXTRACTABLE is true)'],
    ['can be read', { CKA_SENSITIVE: false }, 'its value can be read (CKA_SENSITIVE is false)'],
    ['is a session object', { CKA_TOKEN: false }, 'it is not a token object'],
    ['is AES-128', { CKA_VALUE_LEN: 16 }, 'it is not AES-256 (CKA_VALUE_LEN is 16)'],
  ])('refuses a key that %s', async (_title, attributes, problem) => {
    const { runtime } = world(FakePkcs11.key('root-1', attributes));
    expect(await startupMessage(openPkcs11RootKey(settings(), ROOT, runtime))).toContain(problem);
  });

  it('refuses a label that names two keys', async () => {
    const { runtime } = world(FakePkcs11.key('root-1'), FakePkcs11.key('root-1'));
    expect(await startupMessage(openPkcs11RootKey(settings(), ROOT, runtime))).toContain('holds 2 AES keys labelled "root-1"');
  });

  it('creates a key that the next open finds, and refuses a label the token holds already', async () => {
    const { fake, runtime } = world();
    const created = await createPkcs11RootKey(settings(), { label: 'root-3', what: '--label' }, runtime);
    const opened = await openPkcs11RootKey(settings(), { label: 'root-3', what: 'x' }, runtime);
    expect(opened.id).toBe(created.id);
    expect(await startupMessage(createPkcs11RootKey(settings(), { label: 'root-3', what: '--label' }, runtime))).toBe(
      'The token "keyhold" already holds an object labelled "root-3" (--label); choose another label',
    );
    expect(fake.tokens[1]!.keys.filter((key) => key.label === 'root-3')).toHaveLength(1);
    await Promise.all([created.close(), opened.close()]);
  });
});

describe('the PKCS#11 root key', () => {
  it('answers a tag that does not verify (CKR_GENERAL_ERROR from SoftHSM) with the one decryption error', async () => {
    const { runtime } = world();
    const key = await openPkcs11RootKey(settings(), ROOT, runtime);
    const wrapped = await key.wrap(Buffer.alloc(32, 2), aad);
    wrapped[wrapped.length - 1]! ^= 1;
    await expectError(key.unwrap(wrapped, aad), DecryptionFailedError);
    await key.close();
  });

  it('answers any other token failure with 503, naming the return value, and replaces the failed session', async () => {
    const { fake, runtime } = world();
    const key = await openPkcs11RootKey(settings(), ROOT, runtime);
    const wrapped = await key.wrap(Buffer.alloc(32, 3), aad);
    fake.failNext = ckr('CKR_DEVICE_ERROR', 0x30);
    const error = await expectError(key.unwrap(wrapped, aad), UnavailableError);
    expect(error.message).toContain('CKR_DEVICE_ERROR');
    fake.failNext = undefined;
    expect(await key.unwrap(wrapped, aad)).toEqual(Buffer.alloc(32, 3));
    await key.close();
  });

  it('runs at most one operation per session, and no more at once than the pool has sessions', async () => {
    const { fake, runtime } = world();
    const key = await openPkcs11RootKey(settings(), ROOT, runtime);
    const wrapped = await Promise.all(Array.from({ length: 20 }, (_, i) => key.wrap(Buffer.alloc(32, i), aad)));
    let open!: () => void;
    fake.gate = new Promise((resolve) => (open = resolve));
    const unwrapped = Promise.all(wrapped.map((material) => key.unwrap(material, aad)));
    await new Promise((resolve) => setTimeout(resolve, 10));
    open();
    expect((await unwrapped).map((plain) => plain[0])).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(fake.maxInFlight).toBe(2);
    await key.close();
  });

  it('waits for operations under way before it closes the sessions', async () => {
    const { fake, runtime } = world();
    const key = await openPkcs11RootKey(settings(), ROOT, runtime);
    const wrapping = key.wrap(Buffer.alloc(32, 4), aad);
    await key.close();
    expect((await wrapping).length).toBe(12 + 32 + 16);
    expect(fake.initialized).toBe(false);
  });

  it('refuses to derive from the key: its bytes never leave the token', async () => {
    const { runtime } = world();
    const key = await openPkcs11RootKey(settings(), ROOT, runtime);
    expect(key.derivable).toBe(false);
    await expect(key.deriveKey(() => SecretBytes.random(32))).rejects.toThrow(/held in an HSM .* gives out no bytes/);
    await key.close();
  });
});
