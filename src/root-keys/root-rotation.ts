import type { Clock } from '../lib/clock.js';
import { keyVersionWrapAad } from '../crypto/key-version-cipher.js';
import type { RootKey } from './root-key.js';
import { awsCredentialWrapAad, RootKeyring, systemSecretWrapAad } from './root-keyring.js';
import { isRecorded, loadAuditKey, refuseMaterialUnderUnheldKeys } from './root-key-loader.js';
import { isDatabaseUnavailable } from '../lib/database-errors.js';
import type { RootKeyRepository } from './root-key-repository.js';
import type { RootRewrapRepository, WrappedRow } from './root-rewrap-repository.js';
import type { SystemSecretRepository } from './system-secret-repository.js';

export interface RewrapProgress {
  /** Rows this run has moved to the new root key so far. */
  readonly rewrapped: number;
  /** Rows still under another root key, as of the last count less what moved since. */
  readonly remaining: number;
}

export interface RewrapSummary extends RewrapProgress {
  /** The root key everything is being moved to. */
  readonly rootKeyId: string;
  readonly dryRun: boolean;
}

export interface RotateRootKeyOptions {
  readonly rootKeys: RootKeyRepository;
  readonly secrets: SystemSecretRepository;
  readonly rewrap: RootRewrapRepository;
  /** The root keys the process was configured with, already proved against the store: they unwrap. */
  readonly configured: RootKeyring;
  /** The root key everything moves under. */
  readonly newKey: RootKey;
  readonly clock: Clock;
  /** Rows per transaction: a smaller batch holds fewer row locks for less time. */
  readonly batchSize: number;
  /** Count only. */
  readonly dryRun?: boolean;
  readonly onProgress?: (progress: RewrapProgress) => void;
  /** How long to wait for rows another transaction holds, or for a busy database, before giving up. */
  readonly patienceMs?: number;
}

const RETRY_DELAY_MS = 200;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function aadOf(row: WrappedRow): Buffer {
  switch (row.table) {
    case 'key_versions':
      return keyVersionWrapAad(row.keyId, row.version);
    case 'system_secrets':
      return systemSecretWrapAad(row.name);
    case 'aws_credentials':
      return awsCredentialWrapAad(row.accessKeyId);
  }
}

/**
 * Rotates the store to `newKey`: records it (check value) unless it is recorded, which the configured primary
 * vouches for, then moves everything under it with {@link rewrapUnderPrimary}. A dry run records nothing and only
 * counts. Refuses, before moving anything, a store with material under a root key neither configured nor new.
 */
export async function rotateRootKey(options: RotateRootKeyOptions): Promise<RewrapSummary> {
  const { rootKeys, configured, newKey, clock } = options;
  if (!isRecorded(await rootKeys.list(), newKey, 'The new root key') && options.dryRun !== true) {
    await rootKeys.recordNext({ id: newKey.id, checkValue: newKey.checkValue }, configured.id, clock.now());
  }
  const previous = configured.ids.flatMap((id) => {
    const key = configured.get(id);
    return key === undefined || id === newKey.id ? [] : [key];
  });
  const keyring = new RootKeyring(newKey, previous);
  await refuseMaterialUnderUnheldKeys(keyring, rootKeys);
  // A store whose audit key was never stored gets it now, derived as before, so that it is moved too.
  if (options.dryRun !== true) (await loadAuditKey(keyring, rootKeys, options.secrets, clock)).zero();
  return rewrapUnderPrimary(keyring, options);
}

/**
 * Moves every stored material (key versions, system secrets and AWS secret keys) from the keyring's previous root keys to its
 * primary, batch by batch, as `vault operator rewrap` does. The plaintext material never changes, so ciphertexts
 * and caches stay valid. Each batch commits on its own: a run stopped at any point leaves every row under its old
 * key or wholly under the new one, and a later run carries on from there. The summary's `remaining` comes from a
 * final count, so 0 means nothing is left under another root key.
 */
async function rewrapUnderPrimary(keyring: RootKeyring, options: RotateRootKeyOptions): Promise<RewrapSummary> {
  const { rewrap: repository, clock, batchSize } = options;
  const rootKeyId = keyring.id;
  const patienceMs = options.patienceMs ?? 10_000;
  const summary = (rewrapped: number, remaining: number): RewrapSummary => ({
    rootKeyId,
    rewrapped,
    remaining,
    dryRun: options.dryRun === true,
  });
  let remaining = await repository.countOutside(rootKeyId);
  if (options.dryRun === true) return summary(0, remaining);

  const moveRow = async (row: WrappedRow): Promise<Buffer> => {
    const aad = aadOf(row);
    const plaintext = await keyring.unwrapRecorded(row.rootKeyId, row.material, aad);
    try {
      return await keyring.wrap(plaintext, aad);
    } finally {
      plaintext.fill(0);
    }
  };

  let rewrapped = 0;
  let idleSince: number | undefined;
  while (remaining > 0) {
    let moved: number;
    try {
      moved = await repository.rewrapBatch(rootKeyId, batchSize, moveRow, clock.now());
    } catch (error) {
      // A busy SQLite file or a lock timeout: the batch rolled back whole, so it is safe to try it again.
      if (!isDatabaseUnavailable(error)) throw error;
      moved = 0;
    }
    if (moved > 0) {
      idleSince = undefined;
      rewrapped += moved;
      remaining = Math.max(0, remaining - moved);
      options.onProgress?.({ rewrapped, remaining });
      continue;
    }
    // Nothing free to take: the rest is held by another run or a server's write, or the count was stale.
    remaining = await repository.countOutside(rootKeyId);
    idleSince ??= Date.now();
    if (remaining === 0 || Date.now() - idleSince > patienceMs) break;
    await sleep(RETRY_DELAY_MS);
  }
  return summary(rewrapped, await repository.countOutside(rootKeyId));
}
