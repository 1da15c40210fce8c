import { timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.js';
import type { RootKeySource } from './root-key.js';
import { deriveAuditKeyFromSecret } from '../audit/audit-key.js';
import { LocalRootKey, parseRootKeyText, type RootKey } from './root-key.js';
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
function readPrimarySecret(source: RootKeySource, storeInUse: boolean, logger: Logger): SecretBytes {
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
        'Set KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE to the key the store was created with.',
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
      `${problems.join('; ')}, which is not configured. Set KEYHOLD_PREVIOUS_ROOT_KEY_FILE to that root key ` +
        'until `keyhold root rotate` has rewrapped everything under the new one.',
    );
  }
}

/**
 * Finds the configured root keys and proves each is the one the store recorded, by its check value, before
 * anything is unwrapped, then refuses a store with material under a key not configured. See
 * {@link proveConfiguredRootKeys}.
 */
export async function loadRootKeyring(
  source: RootKeySource,
  previousFile: string | undefined,
  repository: RootKeyRepository,
  clock: Clock,
  logger: Logger,
): Promise<RootKeyring> {
  const keyring = await proveConfiguredRootKeys(source, previousFile, repository, clock, logger);
  await refuseMaterialUnderUnheldKeys(keyring, repository);
  return keyring;
}

/**
 * Finds the configured root keys and proves each is the one the store recorded, by its check value. With no key
 * configured and an empty store, it generates a development key into the data dir. A primary key the store has not
 * recorded yet is recorded only as the next key of a rotation: when a configured previous key is recorded and
 * matches, which proves the operator holds the store's key and not just any key.
 */
export async function proveConfiguredRootKeys(
  source: RootKeySource,
  previousFile: string | undefined,
  repository: RootKeyRepository,
  clock: Clock,
  logger: Logger,
): Promise<RootKeyring> {
  const known = await repository.list();
  const storeInUse = known.length > 0 || (await repository.keyCount()) > 0;
  const primary = new LocalRootKey(readPrimarySecret(source, storeInUse, logger));
  let previous: LocalRootKey | undefined;
  if (previousFile !== undefined) {
    previous = new LocalRootKey(readRootKeyFile(previousFile, 'KEYHOLD_PREVIOUS_ROOT_KEY_FILE'));
    warnIfReadableByOthers(previousFile, logger);
    if (previous.id === primary.id) {
      throw new StartupError('KEYHOLD_PREVIOUS_ROOT_KEY_FILE holds the same key as the primary root key; name the old key');
    }
  }

  if (known.length === 0) {
    if (storeInUse) throw new StartupError('The store holds keys but records no root key; refusing to start.');
    if (previous !== undefined) {
      throw new StartupError('KEYHOLD_PREVIOUS_ROOT_KEY_FILE is set, but the store records no root key yet to rotate from.');
    }
    const recorded = await repository.recordIfFirst({ id: primary.id, checkValue: primary.checkValue }, clock.now());
    // Another replica may have recorded its own key first.
    if (!isRecorded(recorded, primary, 'The configured root key')) throw wrongRootKey();
    return new RootKeyring(primary);
  }

  if (previous !== undefined && !isRecorded(known, previous, 'KEYHOLD_PREVIOUS_ROOT_KEY_FILE')) {
    throw new StartupError(
      `KEYHOLD_PREVIOUS_ROOT_KEY_FILE holds root key ${previous.id}, which this store never recorded. ` +
        'It must hold the root key the store was wrapped with before this rotation.',
    );
  }
  if (!isRecorded(known, primary, 'The configured root key')) {
    if (previous === undefined) throw wrongRootKey();
    const recorded = await repository.recordNext({ id: primary.id, checkValue: primary.checkValue }, previous.id, clock.now());
    if (!isRecorded(recorded, primary, 'The configured root key')) throw wrongRootKey();
    logger.warn({ rootKeyId: primary.id, previousRootKeyId: previous.id }, 'recorded a new primary root key: run `keyhold root rotate` to rewrap');
  }
  return new RootKeyring(primary, previous === undefined ? [] : [previous]);
}

function wrongRootKey(): StartupError {
  return new StartupError(
    'The configured root key is not the one the store was wrapped with (its check value does not match). ' +
      'Refusing to start rather than fail on every key. To rotate to a new root key, also set ' +
      'KEYHOLD_PREVIOUS_ROOT_KEY_FILE to the current one.',
  );
}

/** The audit key's name in `system_secrets`. */
export const AUDIT_KEY_SECRET = 'audit-key';

/**
 * The audit key, stored wrapped under the root key so that it outlives root key rotations. A store migrated from
 * before it was stored derives it once, exactly as it used to be derived, from the store's first root key (the only
 * one that could be recorded then), so the chains MAC'd before still verify. Replicas that start together derive
 * the same key, so whichever stores it first is right.
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
    const derived = await original.deriveKey(deriveAuditKeyFromSecret);
    try {
      const material = await derived.use((bytes) => keyring.wrap(bytes, aad));
      stored = await secrets.insertIfAbsent({ name: AUDIT_KEY_SECRET, rootKeyId: keyring.id, material }, clock.now());
    } finally {
      derived.zero();
    }
  }
  return SecretBytes.adopt(await keyring.unwrapRecorded(stored.rootKeyId, stored.material, aad));
}
