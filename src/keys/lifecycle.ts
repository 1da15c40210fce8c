import type { KeyOperation } from '../context/caller.js';
import { KeyholdError, type ErrorCode } from '../errors.js';
import { findVersion, type KeyRecord, type KeyState, type KeyVersionRecord, type KeyVersionState } from './key-record.js';

/**
 * The state × operation rules of keys and key versions, as one pure table. Services ask it before they act; the
 * unit tests walk every cell.
 */


/** `ok`: allowed; `noop`: allowed and already in the target state; otherwise the error code to refuse with. */
export type Verdict = 'ok' | 'noop' | ErrorCode;

export const KEY_OPERATION_TABLE: Record<KeyState, Record<KeyOperation, Verdict>> = {
  enabled: {
    read: 'ok',
    update: 'ok',
    rotate: 'ok',
    disable: 'ok',
    enable: 'noop',
    'schedule-deletion': 'ok',
    'cancel-deletion': 'KH_ERR_ILLEGAL_TRANSITION',
    'disable-version': 'ok',
    'enable-version': 'ok',
    encrypt: 'ok',
    decrypt: 'ok',
    'rewrap-revoked': 'ok',
  },
  disabled: {
    read: 'ok',
    update: 'ok',
    // A compromised key is disabled first and rotated before it is enabled again.
    rotate: 'ok',
    disable: 'noop',
    enable: 'ok',
    'schedule-deletion': 'ok',
    'cancel-deletion': 'KH_ERR_ILLEGAL_TRANSITION',
    'disable-version': 'ok',
    'enable-version': 'ok',
    encrypt: 'KH_ERR_KEY_DISABLED',
    decrypt: 'KH_ERR_KEY_DISABLED',
    // Disabling the key is the fastest way to stop every workload at once; its data must still be migrable before
    // it is enabled again.
    'rewrap-revoked': 'ok',
  },
  pending_deletion: {
    read: 'ok',
    update: 'KH_ERR_KEY_PENDING_DELETION',
    rotate: 'KH_ERR_KEY_PENDING_DELETION',
    disable: 'KH_ERR_KEY_PENDING_DELETION',
    enable: 'KH_ERR_KEY_PENDING_DELETION',
    'schedule-deletion': 'KH_ERR_KEY_PENDING_DELETION',
    'cancel-deletion': 'ok',
    'disable-version': 'KH_ERR_KEY_PENDING_DELETION',
    'enable-version': 'KH_ERR_KEY_PENDING_DELETION',
    encrypt: 'KH_ERR_KEY_PENDING_DELETION',
    decrypt: 'KH_ERR_KEY_PENDING_DELETION',
    'rewrap-revoked': 'KH_ERR_KEY_PENDING_DELETION',
  },
  destroyed: {
    read: 'ok',
    update: 'KH_ERR_KEY_DESTROYED',
    rotate: 'KH_ERR_KEY_DESTROYED',
    disable: 'KH_ERR_KEY_DESTROYED',
    enable: 'KH_ERR_KEY_DESTROYED',
    'schedule-deletion': 'KH_ERR_KEY_DESTROYED',
    'cancel-deletion': 'KH_ERR_KEY_DESTROYED',
    'disable-version': 'KH_ERR_KEY_DESTROYED',
    'enable-version': 'KH_ERR_KEY_DESTROYED',
    encrypt: 'KH_ERR_KEY_DESTROYED',
    decrypt: 'KH_ERR_KEY_DESTROYED',
    'rewrap-revoked': 'KH_ERR_KEY_DESTROYED',
  },
};

export type VersionOperation = 'disable-version' | 'enable-version';

export const VERSION_OPERATION_TABLE: Record<KeyVersionState, Record<VersionOperation, Verdict>> = {
  enabled: { 'disable-version': 'ok', 'enable-version': 'noop' },
  disabled: { 'disable-version': 'noop', 'enable-version': 'ok' },
  destroyed: { 'disable-version': 'KH_ERR_KEY_VERSION_DESTROYED', 'enable-version': 'KH_ERR_KEY_VERSION_DESTROYED' },
};

/** Operations that read ciphertext under a version: a workload's decrypt (and rewrap), or the migration of revoked data. */
export type VersionReadOperation = 'decrypt' | 'rewrap-revoked';

/**
 * How a version stands for reading: its state, except that a version that still has material but lies below the
 * key's `minDecryptionVersion` is `below-minimum`. Destroyed comes first (there is no material left), then the
 * minimum, then the version's own state.
 */
export type VersionStanding = KeyVersionState | 'below-minimum';

export const VERSION_READ_TABLE: Record<VersionStanding, Record<VersionReadOperation, 'ok' | ErrorCode>> = {
  enabled: { decrypt: 'ok', 'rewrap-revoked': 'ok' },
  // Revoked versions refuse every workload, but keep their material so that their data can be moved to the primary.
  disabled: { decrypt: 'KH_ERR_KEY_VERSION_DISABLED', 'rewrap-revoked': 'ok' },
  'below-minimum': { decrypt: 'KH_ERR_KEY_VERSION_BELOW_MINIMUM', 'rewrap-revoked': 'ok' },
  destroyed: { decrypt: 'KH_ERR_KEY_VERSION_DESTROYED', 'rewrap-revoked': 'KH_ERR_KEY_VERSION_DESTROYED' },
};

function versionStanding(key: KeyRecord, version: KeyVersionRecord): VersionStanding {
  if (version.state === 'destroyed') return 'destroyed';
  if (version.version < key.minDecryptionVersion) return 'below-minimum';
  return version.state;
}

function refuse(code: ErrorCode, detail?: string): never {
  throw new KeyholdError(code, detail);
}

/**
 * The state rules apply to: a key pending deletion whose date has passed counts as destroyed, whether or not the
 * sweeper has erased it yet, so every path refuses it the same way.
 */
export function effectiveKeyState(key: KeyRecord, now?: Date): KeyState {
  return now !== undefined && isDueForDestruction(key, now) ? 'destroyed' : key.state;
}

/** Returns whether the operation changes anything; throws the refusal the table names. */
export function checkKeyOperation(key: KeyRecord, operation: KeyOperation, now?: Date): 'ok' | 'noop' {
  const state = effectiveKeyState(key, now);
  const verdict = KEY_OPERATION_TABLE[state][operation];
  if (verdict === 'ok' || verdict === 'noop') return verdict;
  if (verdict === 'KH_ERR_ILLEGAL_TRANSITION') {
    refuse(verdict, `Cannot ${operation} a key in state ${state}`);
  }
  return refuse(verdict);
}

export function checkVersionOperation(
  key: KeyRecord,
  version: number,
  operation: VersionOperation,
  now?: Date,
): 'ok' | 'noop' {
  checkKeyOperation(key, operation, now);
  const record = findVersion(key, version);
  if (record === undefined) return refuse('KH_ERR_KEY_VERSION_NOT_FOUND');
  const verdict = VERSION_OPERATION_TABLE[record.state][operation];
  if (verdict === 'ok' || verdict === 'noop') return verdict;
  return refuse(verdict);
}

function checkPrimaryVersionEnabled(key: KeyRecord): void {
  const primary = findVersion(key, key.primaryVersion);
  if (primary === undefined) refuse('KH_ERR_INTERNAL');
  if (primary.state === 'disabled') refuse('KH_ERR_KEY_VERSION_DISABLED');
  if (primary.state === 'destroyed') refuse('KH_ERR_KEY_VERSION_DESTROYED');
}

/** Only an enabled key whose primary version is enabled encrypts or issues data keys. */
export function checkCanEncrypt(key: KeyRecord, now?: Date): void {
  checkKeyOperation(key, 'encrypt', now);
  checkPrimaryVersionEnabled(key);
}

/**
 * Whether ciphertext under `version` may be read for `operation`: the key's state first, then the version's
 * standing. A version the key never had is a malformed ciphertext, so it fails as decryption does.
 */
function checkVersionRead(key: KeyRecord, version: number, operation: VersionReadOperation, now?: Date): 'ok' | 'unknown-version' {
  checkKeyOperation(key, operation, now);
  const record = findVersion(key, version);
  if (record === undefined) return 'unknown-version';
  const verdict = VERSION_READ_TABLE[versionStanding(key, record)][operation];
  if (verdict !== 'ok') refuse(verdict);
  return 'ok';
}

/** Decrypt and rewrap need an enabled key and an enabled version at or above `minDecryptionVersion`. */
export function checkCanDecrypt(key: KeyRecord, version: number, now?: Date): 'ok' | 'unknown-version' {
  return checkVersionRead(key, version, 'decrypt', now);
}

/**
 * Moving ciphertext under `version` to the same key's primary version, for an explicitly granted principal: any
 * version that still has material is read (disabled and below-minimum ones included), of an enabled or a disabled
 * key; the primary it is sealed under must be enabled.
 */
export function checkCanRewrapRevoked(key: KeyRecord, version: number, now?: Date): 'ok' | 'unknown-version' {
  if (checkVersionRead(key, version, 'rewrap-revoked', now) === 'unknown-version') return 'unknown-version';
  checkPrimaryVersionEnabled(key);
  return 'ok';
}

/** AWS KMS's bounds for the waiting period before deletion. */
export const MIN_PENDING_WINDOW_DAYS = 7;
export const MAX_PENDING_WINDOW_DAYS = 30;
export const DEFAULT_PENDING_WINDOW_DAYS = 30;

/** 0 turns scheduled rotation off; otherwise at least an hour, at most ten years. */
export const MIN_ROTATION_PERIOD_SECONDS = 3600;
export const MAX_ROTATION_PERIOD_SECONDS = 10 * 365 * 24 * 3600;
export const MAX_RETAIN_VERSIONS = 10_000;

/**
 * The minimum decryption version after `primaryVersion` became primary: raised so that only the newest
 * `retainVersions` decrypt, and never lowered, since an operator may have raised it further by hand.
 */
export function minDecryptionVersionAfterRotation(
  key: { readonly minDecryptionVersion: number; readonly retainVersions: number | null },
  primaryVersion: number,
): number {
  if (key.retainVersions === null) return key.minDecryptionVersion;
  return Math.max(key.minDecryptionVersion, primaryVersion - key.retainVersions + 1);
}

export function nextRotationAfter(now: Date, rotationPeriodSeconds: number | null): Date | null {
  if (rotationPeriodSeconds === null || rotationPeriodSeconds === 0) return null;
  return new Date(now.getTime() + rotationPeriodSeconds * 1000);
}

/** A key pending deletion whose date has passed is destroyed, whether or not the sweeper has run yet. */
export function isDueForDestruction(key: KeyRecord, now: Date): boolean {
  return key.state === 'pending_deletion' && key.deletionDate !== null && key.deletionDate.getTime() <= now.getTime();
}
