import { timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { RootKeySource } from './config.js';
import { LocalRootKey, parseRootKeyText } from './crypto/root-key.js';
import { SecretBytes } from './crypto/secret-bytes.js';
import { StartupError } from './errors.js';
import type { RootKeyRepository } from './storage/root-key-repository.js';

function readKeyFile(path: string, what: string): SecretBytes {
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

function warnIfReadableByOthers(path: string, logger: Logger): void {
  if ((statSync(path).mode & 0o077) !== 0) {
    logger.warn({ path }, 'the root key file is readable by group or others; chmod 600 it');
  }
}

/**
 * Finds the root key and proves it is the one the store was wrapped with, by its check value, before anything is
 * unwrapped. With no key configured and an empty store, it generates a development key into the data dir.
 */
export async function loadRootKey(
  source: RootKeySource,
  repository: RootKeyRepository,
  clock: Clock,
  logger: Logger,
): Promise<LocalRootKey> {
  const known = await repository.list();
  const storeInUse = known.length > 0 || (await repository.keyCount()) > 0;

  let secret: SecretBytes;
  if (source.kind === 'inline') {
    secret = source.key;
  } else if (source.kind === 'file') {
    secret = readKeyFile(source.path, 'KEYHOLD_ROOT_KEY_FILE');
    warnIfReadableByOthers(source.path, logger);
  } else if (existsSync(source.path)) {
    secret = readKeyFile(source.path, 'The root key file');
    warnIfReadableByOthers(source.path, logger);
    logger.warn({ path: source.path }, 'DEV MODE: using the generated root key in the data dir; set KEYHOLD_ROOT_KEY_FILE in production');
  } else if (storeInUse) {
    throw new StartupError(
      'The store holds keys wrapped under a root key, but no root key is configured. ' +
        'Set KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE to the key the store was created with.',
    );
  } else {
    secret = SecretBytes.random(32);
    mkdirSync(dirname(source.path), { recursive: true, mode: 0o700 });
    // 'wx': never overwrite a key file another process created in the meantime.
    writeFileSync(source.path, `${secret.use((bytes) => bytes.toString('base64'))}\n`, { mode: 0o600, flag: 'wx' });
    logger.warn(
      { path: source.path },
      '!!! DEV MODE: no root key configured; generated one into the data dir. Anyone who can read this file can ' +
        'decrypt every key. Set KEYHOLD_ROOT_KEY_FILE (from a secret store) in production. !!!',
    );
  }

  const rootKey = new LocalRootKey(secret);
  let recorded = known;
  if (recorded.length === 0) {
    if (storeInUse) throw new StartupError('The store holds keys but records no root key; refusing to start.');
    recorded = await repository.recordIfFirst({ id: rootKey.id, checkValue: rootKey.checkValue }, clock.now());
  }
  const match = recorded.find((entry) => entry.id === rootKey.id);
  if (
    match === undefined ||
    !timingSafeEqual(Buffer.from(match.checkValue, 'hex'), Buffer.from(rootKey.checkValue, 'hex'))
  ) {
    throw new StartupError(
      'The configured root key is not the one the store was wrapped with (its check value does not match). ' +
        'Refusing to start rather than fail on every key.',
    );
  }
  return rootKey;
}

/** Writes the generated admin token for the operator to pick up: 0600, next to the development root key. */
export function writeAdminTokenFile(path: string, token: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
}
