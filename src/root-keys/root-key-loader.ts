import { timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.js';
import type { PreviousRootKeySource, RootKeySource } from './root-key.js';
import { AUDIT_KEY_BYTES, deriveAuditKeyFromSecret } from '../audit/audit-key.js';
import { LocalRootKey, parseRootKeyText, type RootKey } from './root-key.js';
import { Pkcs11RootKey, type TokenAesKey } from './pkcs11-root-key.js';
import { processPkcs11, type KeyNaming, type Pkcs11Runtime, type Pkcs11Settings } from './pkcs11-token.js';
import { RootKeyring, systemSecretWrapAad } from './root-keyring.js';
import { SecretBytes } from '../crypto/secret-bytes.js';
import { StartupError } from '../errors.js';
import type { RootKeyEntry, RootKeyRepository } from './root-key-repository.js';
import type { SystemSecretRepository } from './system-secret-repository.js';

function warnIfReadableByOthers(path: string, logger: Logger): void {
  if ((statSync(path).mode & 0o077) !== 0) {
    logger.warn({ path }, 'the root key file is readable by group or others; chmod 600 it');
  }
}

/** Reads a root key file, with a clear message naming `what` (the variable or option) when it cannot be used. */
export function readRootKeyFile(path: string, what: string): SecretBytes {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new StartupError(`${what} ${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const key = parseRootKeyText(text);
  if (key === undefined) throw new StartupError(`${what} ${path} must hold the base64 encoding of exactly 32 bytes`);
  return key;
}

/** Finds the primary root key's bytes, generating a development key into the data dir for an empty store. */
function readPrimarySecret(source: Exclude<RootKeySource, { kind: 'pkcs11' }>, storeInUse: boolean, logger: Logger): SecretBytes {
  if (source.kind === 'inline') return source.key;
  if (source.kind === 'file') {
    const secret = readRootKeyFile(source.path, 'KEYHOLD_ROOT_KEY_FILE');
    warnIfReadableByOthers(source.path, logger);
    return secret;
  }
  if (existsSync(source.path)) {
    const secret = readRootKeyFile(source.path, 'The root key file');
    warnIfReadableByOthers(source.path, logger);
    logger.warn({ path: source.path }, 'DEV MODE: using the generated root key in the data dir; set KEYHOLD_ROOT_KEY_FILE in production');
    return secret;
  }
  if (storeInUse) {
    throw new StartupError(
      'The store holds keys wrapped under a root key, but no root key is configured. ' +
        'Set KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE to the key the store was created with, or ' +
        'KEYHOLD_ROOT_KEY_PROVIDER=pkcs11 and KEYHOLD_PKCS11_* for a key in an HSM.',
    );
  }
  const secret = SecretBytes.random(32);
  mkdirSync(dirname(source.path), { recursive: true, mode: 0o700 });
  // 'wx': never overwrite a key file another process created in the meantime.
  writeFileSync(source.path, `${secret.use((bytes) => bytes.toString('base64'))}\n`, { mode: 0o600, flag: 'wx' });
  logger.warn(
    { path: source.path },
    '!!! DEV MODE: no root key configured; generated one into the data dir. Anyone who can read this file can ' +
      'decrypt every key. Set KEYHOLD_ROOT_KEY_FILE (from a secret store) in production. !!!',
  );
  return secret;
}

/**
 * Proves `key` is the recorded root key of its id, by check value, before anything is unwrapped with it. Returns
 * false when its id is not recorded at all; throws when it is recorded with another check value.
 */
export function isRecorded(recorded: readonly RootKeyEntry[], key: RootKey, what: string): boolean {
  const entry = recorded.find((candidate) => candidate.id === key.id);
  if (entry === undefined) return false;
  if (!timingSafeEqual(Buffer.from(entry.checkValue, 'hex'), Buffer.from(key.checkValue, 'hex'))) {
    throw new StartupError(
      `${what} is not the root key ${key.id} the store recorded (its check value does not match). ` +
        'Refusing to start rather than unwrap garbage.',
    );
  }
  return true;
}

/**
 * Refuses a store that holds material wrapped under a root key `keyring` lacks: every such key would fail on first
 * use, so the process would be up but broken. Root key ids are public, so the message names them.
 */
export async function refuseMaterialUnderUnheldKeys(keyring: RootKeyring, repository: RootKeyRepository): Promise<void> {
  const problems: string[] = [];
  for (const entry of await repository.list()) {
    if (keyring.get(entry.id) !== undefined) continue;
    const under = await repository.wrappedUnder(entry.id);
    if (under.keyVersions > 0) problems.push(`${under.keyVersions} key version(s) are wrapped under root key ${entry.id}`);
    if (under.systemSecrets > 0) problems.push(`${under.systemSecrets} system secret(s) are wrapped under root key ${entry.id}`);
    if (under.awsCredentials > 0) problems.push(`${under.awsCredentials} AWS secret key(s) are wrapped under root key ${entry.id}`);
  }
  if (problems.length > 0) {
    throw new StartupError(
      `${problems.join('; ')}, which is not configured. Set KEYHOLD_PREVIOUS_ROOT_KEY_FILE (or, for a key in the HSM, ` +
        'KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL) to that root key until `keyhold root rotate` has rewrapped everything under the new one.',
    );
  }
}

/** The root keys as configured (`Config` has these fields): the primary, a previous one during a rotation, the token. */
export interface RootKeyConfig {
  readonly rootKey: RootKeySource;
  readonly previousRootKey: PreviousRootKeySource | undefined;
  /** `KEYHOLD_PKCS11_*`: the token that holds the PKCS#11 keys, and its PIN. */
  readonly pkcs11: Pkcs11Settings | undefined;
}

/**
 * Opens the AES key `key.label` in the configured token as a root key, computing its id and check value there. The
 * caller closes it. `runtime` is the process's PKCS#11 state unless a test passes its own.
 */
export async function openPkcs11RootKey(
  settings: Pkcs11Settings | undefined,
  key: KeyNaming,
  runtime: Pkcs11Runtime = processPkcs11,
): Promise<Pkcs11RootKey> {
  return asRootKey(runtime.openKey(tokenSettings(settings, key), key));
}

/**
 * `keyhold root init-hsm`: generates the AES-256 key `key.label` inside the token (sensitive, not extractable; refused
 * when the label is taken) and opens it as a root key, to learn its id. The caller closes it.
 */
export async function createPkcs11RootKey(
  settings: Pkcs11Settings | undefined,
  key: KeyNaming,
  runtime: Pkcs11Runtime = processPkcs11,
): Promise<Pkcs11RootKey> {
  return asRootKey(runtime.createKey(tokenSettings(settings, key), key));
}

function tokenSettings(settings: Pkcs11Settings | undefined, key: KeyNaming): Pkcs11Settings {
  if (settings !== undefined) return settings;
  throw new StartupError(`${key.what} names a key in an HSM: set KEYHOLD_PKCS11_LIBRARY, KEYHOLD_PKCS11_TOKEN_LABEL and KEYHOLD_PKCS11_PIN (or _PIN_FILE)`);
}

async function asRootKey(opening: Promise<TokenAesKey>): Promise<Pkcs11RootKey> {
  const tokenKey = await opening;
  try {
    return await Pkcs11RootKey.open(tokenKey);
  } catch (error) {
    await tokenKey.close();
    throw error;
  }
}

/** The name of the setting that configures the previous root key, for messages. */
function previousSetting(source: PreviousRootKeySource): string {
  return source.kind === 'file' ? 'KEYHOLD_PREVIOUS_ROOT_KEY_FILE' : 'KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL';
}

async function openPrevious(config: RootKeyConfig, source: PreviousRootKeySource, logger: Logger, runtime: Pkcs11Runtime): Promise<RootKey> {
  if (source.kind === 'pkcs11') return openPkcs11RootKey(config.pkcs11, { label: source.keyLabel, what: previousSetting(source) }, runtime);
  const key = new LocalRootKey(readRootKeyFile(source.path, previousSetting(source)));
  warnIfReadableByOthers(source.path, logger);
  return key;
}

/**
 * Finds the configured root keys and proves each is the one the store recorded, by its check value, before
 * anything is unwrapped, then refuses a store with material under a key not configured. See
 * {@link proveConfiguredRootKeys}. The caller closes the keyring.
 */
export async function loadRootKeyring(
  config: RootKeyConfig,
  repository: RootKeyRepository,
  clock: Clock,
  logger: Logger,
  runtime: Pkcs11Runtime = processPkcs11,
): Promise<RootKeyring> {
  const keyring = await proveConfiguredRootKeys(config, repository, clock, logger, runtime);
  try {
    await refuseMaterialUnderUnheldKeys(keyring, repository);
  } catch (error) {
    await keyring.close();
    throw error;
  }
  return keyring;
}

/**
 * Finds the configured root keys and proves each is the one the store recorded, by its check value. With no key
 * configured and an empty store, it generates a development key into the data dir. A primary key the store has not
 * recorded yet is recorded only as the next key of a rotation: when a configured previous key is recorded and
 * matches, which proves the operator holds the store's key and not just any key. A key in an HSM is opened there
 * (its id and check value are computed in the token); whatever was opened is closed again if the proof fails.
 */
export async function proveConfiguredRootKeys(
  config: RootKeyConfig,
  repository: RootKeyRepository,
  clock: Clock,
  logger: Logger,
  runtime: Pkcs11Runtime = processPkcs11,
): Promise<RootKeyring> {
  const known = await repository.list();
  const storeInUse = known.length > 0 || (await repository.keyCount()) > 0;
  const source = config.rootKey;
  const opened: RootKey[] = [];
  try {
    const primary =
      source.kind === 'pkcs11'
        ? await openPkcs11RootKey(config.pkcs11, { label: source.keyLabel, what: 'KEYHOLD_PKCS11_KEY_LABEL' }, runtime)
        : new LocalRootKey(readPrimarySecret(source, storeInUse, logger));
    opened.push(primary);
    const previousSource = config.previousRootKey;
    let previous: RootKey | undefined;
    if (previousSource !== undefined) {
      previous = await openPrevious(config, previousSource, logger, runtime);
      opened.push(previous);
      if (previous.id === primary.id) {
        throw new StartupError(`${previousSetting(previousSource)} names the same key as the primary root key; name the old key`);
      }
    }
    await proveAgainstStore(known, storeInUse, primary, previous, previousSource, repository, clock, logger);
    return new RootKeyring(primary, previous === undefined ? [] : [previous]);
  } catch (error) {
    await Promise.all(opened.map((key) => key.close?.()));
    throw error;
  }
}

async function proveAgainstStore(
  known: readonly RootKeyEntry[],
  storeInUse: boolean,
  primary: RootKey,
  previous: RootKey | undefined,
  previousSource: PreviousRootKeySource | undefined,
  repository: RootKeyRepository,
  clock: Clock,
  logger: Logger,
): Promise<void> {
  if (known.length === 0) {
    if (storeInUse) throw new StartupError('The store holds keys but records no root key; refusing to start.');
    if (previousSource !== undefined) {
      throw new StartupError(`${previousSetting(previousSource)} is set, but the store records no root key yet to rotate from.`);
    }
    const recorded = await repository.recordIfFirst({ id: primary.id, checkValue: primary.checkValue }, clock.now());
    // Another replica may have recorded its own key first.
    if (!isRecorded(recorded, primary, 'The configured root key')) throw wrongRootKey();
    return;
  }

  if (previous !== undefined && previousSource !== undefined && !isRecorded(known, previous, previousSetting(previousSource))) {
    throw new StartupError(
      `${previousSetting(previousSource)} holds root key ${previous.id}, which this store never recorded. ` +
        'It must hold the root key the store was wrapped with before this rotation.',
    );
  }
  if (!isRecorded(known, primary, 'The configured root key')) {
    if (previous === undefined) throw wrongRootKey();
    const recorded = await repository.recordNext({ id: primary.id, checkValue: primary.checkValue }, previous.id, clock.now());
    if (!isRecorded(recorded, primary, 'The configured root key')) throw wrongRootKey();
    logger.warn({ rootKeyId: primary.id, previousRootKeyId: previous.id }, 'recorded a new primary root key: run `keyhold root rotate` to rewrap');
  }
}

function wrongRootKey(): StartupError {
  return new StartupError(
    'The configured root key is not the one the store was wrapped with (its check value does not match). ' +
      'Refusing to start rather than fail on every key. To rotate to a new root key, also set ' +
      'KEYHOLD_PREVIOUS_ROOT_KEY_FILE (or KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL) to the current one.',
  );
}

/** The audit key's name in `system_secrets`. */
export const AUDIT_KEY_SECRET = 'audit-key';

/**
 * The audit key, stored wrapped under the root key so that it outlives root key rotations. A store migrated from
 * before it was stored derives it once, exactly as it used to be derived, from the store's first root key (the only
 * one that could be recorded then), so the chains MAC'd before still verify. Replicas that start together derive
 * the same key, so whichever stores it first is right.
 *
 * A store whose first root key is in an HSM cannot derive (the key gives out no bytes), and need not: the HSM provider
 * came after the audit key was stored, so such a store is new and no chain was ever MAC'd under a derived key. It gets
 * a random audit key; replicas that start together each draw one, the first stored wins, and all use that one.
 */
export async function loadAuditKey(
  keyring: RootKeyring,
  rootKeys: RootKeyRepository,
  secrets: SystemSecretRepository,
  clock: Clock,
): Promise<SecretBytes> {
  const aad = systemSecretWrapAad(AUDIT_KEY_SECRET);
  let stored = await secrets.find(AUDIT_KEY_SECRET);
  if (stored === undefined) {
    const [first] = await rootKeys.list();
    const original = first === undefined ? undefined : keyring.get(first.id);
    if (original === undefined) {
      throw new StartupError(
        `The audit key is not stored yet; it is derived once from the store's first root key ${first?.id ?? '(none)'}, ` +
          'which is not configured. Start once with that key (as KEYHOLD_ROOT_KEY_FILE or KEYHOLD_PREVIOUS_ROOT_KEY_FILE).',
      );
    }
    const derived = original.derivable ? await original.deriveKey(deriveAuditKeyFromSecret) : SecretBytes.random(AUDIT_KEY_BYTES);
    try {
      const material = await derived.use((bytes) => keyring.wrap(bytes, aad));
      stored = await secrets.insertIfAbsent({ name: AUDIT_KEY_SECRET, rootKeyId: keyring.id, material }, clock.now());
    } finally {
      derived.zero();
    }
  }
  return SecretBytes.adopt(await keyring.unwrapRecorded(stored.rootKeyId, stored.material, aad));
}
