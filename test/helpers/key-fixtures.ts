import type { KeyRecord, KeyVersionRecord, KeyVersionState } from '../../src/keys/key-record.js';

export const T0 = new Date('2026-01-01T00:00:00Z');
export const FIXTURE_KEY_ID = '6f9619ff-8b86-4011-b42d-00c04fc964ff';

export function versionRecord(number: number, state: KeyVersionState = 'enabled'): KeyVersionRecord {
  return {
    version: number,
    state,
    rootKeyId: '0123456789abcdef',
    createdAt: T0,
    updatedAt: T0,
    destroyedAt: state === 'destroyed' ? T0 : null,
  };
}

/** A key with versions 1..3, all enabled, primary 3, minimum decryption version 1, unless overridden. */
export function keyRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id: FIXTURE_KEY_ID,
    name: 'payments',
    description: '',
    labels: {},
    boundContext: [],
    state: 'enabled',
    primaryVersion: 3,
    minDecryptionVersion: 1,
    rotationPeriodSeconds: null,
    retainVersions: null,
    nextRotationAt: null,
    deletionDate: null,
    createdAt: T0,
    updatedAt: T0,
    destroyedAt: null,
    versions: [versionRecord(1), versionRecord(2), versionRecord(3)],
    ...overrides,
  };
}
