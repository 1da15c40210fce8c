import { describe, expect, it } from 'vitest';
import { ERROR_CODES, KeyholdError, type ErrorCode } from '../../../src/errors.js';
import {
  KEY_STATES,
  KEY_VERSION_STATES,
  type KeyState,
  type KeyVersionState,
} from '../../../src/keys/key-record.js';
import { checkCanDecrypt, checkCanEncrypt, checkCanRewrapRevoked, checkKeyOperation, checkVersionOperation, isDueForDestruction, KEY_OPERATION_TABLE, MAX_ROTATION_PERIOD_SECONDS, MIN_ROTATION_PERIOD_SECONDS, minDecryptionVersionAfterRotation, nextRotationAfter, VERSION_OPERATION_TABLE, VERSION_READ_TABLE, type Verdict, type VersionOperation, type VersionReadOperation, type VersionStanding } from '../../../src/keys/lifecycle.js';
import { keyRecord, T0, versionRecord } from '../../helpers/key-fixtures.js';
import type { KeyOperation } from '../../../src/context/caller.js';

const version = versionRecord;

function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return undefined;
}

function expectRefusal(action: () => unknown, code: ErrorCode): void {
  const error = thrownBy(action);
  expect(error).toBeInstanceOf(KeyholdError);
  expect((error as KeyholdError).code).toBe(code);
  expect((error as KeyholdError).status).toBe(ERROR_CODES[code].status);
}

/**
 * The rules, written out independently of the implementation: state × operation → ok, noop or refusal code.
 * `ILLEGAL` = KH_ERR_ILLEGAL_TRANSITION.
 */
const ILLEGAL = 'KH_ERR_ILLEGAL_TRANSITION';
const DISABLED = 'KH_ERR_KEY_DISABLED';
const PENDING = 'KH_ERR_KEY_PENDING_DELETION';
const DESTROYED = 'KH_ERR_KEY_DESTROYED';

const EXPECTED_KEY_RULES: Record<KeyState, Record<KeyOperation, Verdict>> = {
  enabled: {
    read: 'ok',
    update: 'ok',
    rotate: 'ok',
    disable: 'ok',
    enable: 'noop',
    'schedule-deletion': 'ok',
    'cancel-deletion': ILLEGAL,
    'disable-version': 'ok',
    'enable-version': 'ok',
    encrypt: 'ok',
    decrypt: 'ok',
    'rewrap-revoked': 'ok',
  },
  disabled: {
    read: 'ok',
    update: 'ok',
    rotate: 'ok',
    disable: 'noop',
    enable: 'ok',
    'schedule-deletion': 'ok',
    'cancel-deletion': ILLEGAL,
    'disable-version': 'ok',
    'enable-version': 'ok',
    encrypt: DISABLED,
    decrypt: DISABLED,
    'rewrap-revoked': 'ok',
  },
  pending_deletion: {
    read: 'ok',
    update: PENDING,
    rotate: PENDING,
    disable: PENDING,
    enable: PENDING,
    'schedule-deletion': PENDING,
    'cancel-deletion': 'ok',
    'disable-version': PENDING,
    'enable-version': PENDING,
    encrypt: PENDING,
    decrypt: PENDING,
    'rewrap-revoked': PENDING,
  },
  destroyed: {
    read: 'ok',
    update: DESTROYED,
    rotate: DESTROYED,
    disable: DESTROYED,
    enable: DESTROYED,
    'schedule-deletion': DESTROYED,
    'cancel-deletion': DESTROYED,
    'disable-version': DESTROYED,
    'enable-version': DESTROYED,
    encrypt: DESTROYED,
    decrypt: DESTROYED,
    'rewrap-revoked': DESTROYED,
  },
};

const EXPECTED_VERSION_RULES: Record<KeyVersionState, Record<VersionOperation, Verdict>> = {
  enabled: { 'disable-version': 'ok', 'enable-version': 'noop' },
  disabled: { 'disable-version': 'noop', 'enable-version': 'ok' },
  destroyed: { 'disable-version': 'KH_ERR_KEY_VERSION_DESTROYED', 'enable-version': 'KH_ERR_KEY_VERSION_DESTROYED' },
};

const KEY_OPERATIONS = Object.keys(EXPECTED_KEY_RULES.enabled) as KeyOperation[];
const VERSION_OPERATIONS = Object.keys(EXPECTED_VERSION_RULES.enabled) as VersionOperation[];

const keyCells = KEY_STATES.flatMap((state) =>
  KEY_OPERATIONS.map((operation) => ({ state, operation, verdict: EXPECTED_KEY_RULES[state][operation] })),
);

/** The verdict of a version operation: the key's state is asked first, then the version's. */
function expectedVersionVerdict(keyState: KeyState, versionState: KeyVersionState, operation: VersionOperation): Verdict {
  const keyVerdict = EXPECTED_KEY_RULES[keyState][operation];
  return keyVerdict === 'ok' || keyVerdict === 'noop' ? EXPECTED_VERSION_RULES[versionState][operation] : keyVerdict;
}

const versionCells = KEY_STATES.flatMap((keyState) =>
  KEY_VERSION_STATES.flatMap((versionState) =>
    VERSION_OPERATIONS.map((operation) => ({
      keyState,
      versionState,
      operation,
      verdict: expectedVersionVerdict(keyState, versionState, operation),
    })),
  ),
);

describe('KEY_OPERATION_TABLE', () => {
  it('has a row for every key state and nothing else', () => {
    expect(Object.keys(KEY_OPERATION_TABLE).sort()).toEqual([...KEY_STATES].sort());
  });

  it('has exactly the cells the rules name', () => {
    expect(KEY_OPERATION_TABLE).toEqual(EXPECTED_KEY_RULES);
  });

  it('answers read in every state, even destroyed', () => {
    for (const state of KEY_STATES) expect(KEY_OPERATION_TABLE[state].read).toBe('ok');
  });

  it('names only error codes the error table knows', () => {
    for (const row of Object.values(KEY_OPERATION_TABLE)) {
      for (const verdict of Object.values(row)) {
        if (verdict !== 'ok' && verdict !== 'noop') expect(ERROR_CODES).toHaveProperty(verdict);
      }
    }
  });
});

describe('checkKeyOperation: every cell', () => {
  it.each(keyCells)('$state key, $operation → $verdict', ({ state, operation, verdict }) => {
    const key = keyRecord({ state });
    if (verdict === 'ok' || verdict === 'noop') {
      expect(checkKeyOperation(key, operation)).toBe(verdict);
    } else {
      expectRefusal(() => checkKeyOperation(key, operation), verdict);
    }
  });

  it('explains an illegal transition with the operation and the state', () => {
    const error = thrownBy(() => checkKeyOperation(keyRecord({ state: 'enabled' }), 'cancel-deletion'));
    expect(error).toMatchObject({ code: ILLEGAL, message: 'Cannot cancel-deletion a key in state enabled' });
  });

  it('uses the error title as the message of a state refusal', () => {
    const error = thrownBy(() => checkKeyOperation(keyRecord({ state: 'destroyed' }), 'rotate'));
    expect(error).toMatchObject({ code: DESTROYED, message: ERROR_CODES.KH_ERR_KEY_DESTROYED.title });
  });
});

describe('VERSION_OPERATION_TABLE', () => {
  it('has a row for every version state and nothing else', () => {
    expect(Object.keys(VERSION_OPERATION_TABLE).sort()).toEqual([...KEY_VERSION_STATES].sort());
  });

  it('has exactly the cells the rules name', () => {
    expect(VERSION_OPERATION_TABLE).toEqual(EXPECTED_VERSION_RULES);
  });
});

describe('checkVersionOperation: every cell', () => {
  it.each(versionCells)(
    '$keyState key, $versionState version, $operation → $verdict',
    ({ keyState, versionState, operation, verdict }) => {
      const key = keyRecord({ state: keyState, versions: [version(1), version(2, versionState), version(3)] });
      if (verdict === 'ok' || verdict === 'noop') {
        expect(checkVersionOperation(key, 2, operation)).toBe(verdict);
      } else {
        expectRefusal(() => checkVersionOperation(key, 2, operation), verdict);
      }
    },
  );

  it.each(VERSION_OPERATIONS)('refuses %s on a version the key never had with KH_ERR_KEY_VERSION_NOT_FOUND', (operation) => {
    expectRefusal(() => checkVersionOperation(keyRecord(), 4, operation), 'KH_ERR_KEY_VERSION_NOT_FOUND');
    expectRefusal(() => checkVersionOperation(keyRecord(), 0, operation), 'KH_ERR_KEY_VERSION_NOT_FOUND');
  });

  it('refuses by key state before looking for the version', () => {
    expectRefusal(() => checkVersionOperation(keyRecord({ state: 'destroyed' }), 99, 'enable-version'), DESTROYED);
  });

  it('finds a version in a key whose versions have a gap', () => {
    const key = keyRecord({ versions: [version(1), version(3, 'disabled')] });
    expect(checkVersionOperation(key, 3, 'enable-version')).toBe('ok');
  });
});

describe('checkCanEncrypt', () => {
  it('allows an enabled key whose primary version is enabled', () => {
    expect(() => checkCanEncrypt(keyRecord())).not.toThrow();
  });

  it('refuses a primary version that is disabled with KH_ERR_KEY_VERSION_DISABLED', () => {
    expectRefusal(
      () => checkCanEncrypt(keyRecord({ versions: [version(1), version(2), version(3, 'disabled')] })),
      'KH_ERR_KEY_VERSION_DISABLED',
    );
  });

  it('refuses a primary version that is destroyed with KH_ERR_KEY_VERSION_DESTROYED', () => {
    expectRefusal(
      () => checkCanEncrypt(keyRecord({ versions: [version(1), version(2), version(3, 'destroyed')] })),
      'KH_ERR_KEY_VERSION_DESTROYED',
    );
  });

  it('looks at the primary version only, not at older ones', () => {
    const key = keyRecord({ versions: [version(1, 'destroyed'), version(2, 'disabled'), version(3)] });
    expect(() => checkCanEncrypt(key)).not.toThrow();
  });

  it('looks at the primary version, not at the newest one', () => {
    const key = keyRecord({ primaryVersion: 2, versions: [version(1), version(2, 'disabled'), version(3)] });
    expectRefusal(() => checkCanEncrypt(key), 'KH_ERR_KEY_VERSION_DISABLED');
  });

  it('reports a primary version missing from the record as KH_ERR_INTERNAL', () => {
    expectRefusal(() => checkCanEncrypt(keyRecord({ primaryVersion: 4 })), 'KH_ERR_INTERNAL');
  });

  it.each([
    ['disabled', DISABLED],
    ['pending_deletion', PENDING],
    ['destroyed', DESTROYED],
  ] as const)('refuses a %s key with %s', (state, code) => {
    expectRefusal(() => checkCanEncrypt(keyRecord({ state })), code);
  });

  it('refuses by key state before looking at the primary version', () => {
    const key = keyRecord({ state: 'disabled', versions: [version(1), version(2), version(3, 'destroyed')] });
    expectRefusal(() => checkCanEncrypt(key), DISABLED);
  });
});

describe('checkCanDecrypt', () => {
  it('allows an enabled version of an enabled key', () => {
    expect(checkCanDecrypt(keyRecord(), 3)).toBe('ok');
  });

  it('allows an enabled older version at or above the minimum', () => {
    expect(checkCanDecrypt(keyRecord({ minDecryptionVersion: 2 }), 2)).toBe('ok');
  });

  it('refuses a version below minDecryptionVersion with KH_ERR_KEY_VERSION_BELOW_MINIMUM', () => {
    expectRefusal(() => checkCanDecrypt(keyRecord({ minDecryptionVersion: 2 }), 1), 'KH_ERR_KEY_VERSION_BELOW_MINIMUM');
  });

  it('refuses a disabled version with KH_ERR_KEY_VERSION_DISABLED', () => {
    const key = keyRecord({ versions: [version(1), version(2, 'disabled'), version(3)] });
    expectRefusal(() => checkCanDecrypt(key, 2), 'KH_ERR_KEY_VERSION_DISABLED');
  });

  it('refuses a disabled primary version with KH_ERR_KEY_VERSION_DISABLED', () => {
    const key = keyRecord({ versions: [version(1), version(2), version(3, 'disabled')] });
    expectRefusal(() => checkCanDecrypt(key, 3), 'KH_ERR_KEY_VERSION_DISABLED');
  });

  it('refuses a destroyed version with KH_ERR_KEY_VERSION_DESTROYED', () => {
    const key = keyRecord({ versions: [version(1), version(2, 'destroyed'), version(3)] });
    expectRefusal(() => checkCanDecrypt(key, 2), 'KH_ERR_KEY_VERSION_DESTROYED');
  });

  it('reports a destroyed version as destroyed even when it is also below the minimum', () => {
    const key = keyRecord({ minDecryptionVersion: 3, versions: [version(1), version(2, 'destroyed'), version(3)] });
    expectRefusal(() => checkCanDecrypt(key, 2), 'KH_ERR_KEY_VERSION_DESTROYED');
  });

  it('reports a disabled version below the minimum as below the minimum', () => {
    const key = keyRecord({ minDecryptionVersion: 3, versions: [version(1), version(2, 'disabled'), version(3)] });
    expectRefusal(() => checkCanDecrypt(key, 2), 'KH_ERR_KEY_VERSION_BELOW_MINIMUM');
  });

  it.each([4, 0, 2 ** 32 - 1])('answers unknown-version, not an error, for version %i the key never had', (v) => {
    expect(checkCanDecrypt(keyRecord(), v)).toBe('unknown-version');
  });

  it.each([
    ['disabled', DISABLED],
    ['pending_deletion', PENDING],
    ['destroyed', DESTROYED],
  ] as const)('refuses a %s key with %s', (state, code) => {
    expectRefusal(() => checkCanDecrypt(keyRecord({ state }), 3), code);
  });

  it.each(['disabled', 'pending_deletion', 'destroyed'] as const)(
    'refuses a %s key by its state even for an unknown version',
    (state) => {
      expectRefusal(() => checkCanDecrypt(keyRecord({ state }), 9), EXPECTED_KEY_RULES[state].decrypt as ErrorCode);
    },
  );
});

/** A version's standing for reading: destroyed first, then below the minimum, then its own state. */
const EXPECTED_READ_RULES: Record<VersionStanding, Record<VersionReadOperation, Verdict>> = {
  enabled: { decrypt: 'ok', 'rewrap-revoked': 'ok' },
  disabled: { decrypt: 'KH_ERR_KEY_VERSION_DISABLED', 'rewrap-revoked': 'ok' },
  'below-minimum': { decrypt: 'KH_ERR_KEY_VERSION_BELOW_MINIMUM', 'rewrap-revoked': 'ok' },
  destroyed: { decrypt: 'KH_ERR_KEY_VERSION_DESTROYED', 'rewrap-revoked': 'KH_ERR_KEY_VERSION_DESTROYED' },
};

describe('VERSION_READ_TABLE', () => {
  it('has exactly the cells the rules name', () => {
    expect(VERSION_READ_TABLE).toEqual(EXPECTED_READ_RULES);
  });
});

/**
 * Every key state × version state × below the minimum or not, for the source version 2 of a key whose primary is 3.
 * The key's verdict for rewrap-revoked comes first, then the source version's standing.
 */
const rewrapRevokedCells = KEY_STATES.flatMap((keyState) =>
  KEY_VERSION_STATES.flatMap((versionState) =>
    [false, true].map((belowMinimum) => {
      const standing: VersionStanding =
        versionState === 'destroyed' ? 'destroyed' : belowMinimum ? 'below-minimum' : versionState;
      const keyVerdict = EXPECTED_KEY_RULES[keyState]['rewrap-revoked'];
      const verdict = keyVerdict === 'ok' ? EXPECTED_READ_RULES[standing]['rewrap-revoked'] : keyVerdict;
      return { keyState, versionState, belowMinimum, verdict };
    }),
  ),
);

describe('checkCanRewrapRevoked: every cell', () => {
  it.each(rewrapRevokedCells)(
    '$keyState key, $versionState version, below the minimum: $belowMinimum → $verdict',
    ({ keyState, versionState, belowMinimum, verdict }) => {
      const key = keyRecord({
        state: keyState,
        minDecryptionVersion: belowMinimum ? 3 : 1,
        versions: [version(1), version(2, versionState), version(3)],
      });
      if (verdict === 'ok') expect(checkCanRewrapRevoked(key, 2)).toBe('ok');
      else expectRefusal(() => checkCanRewrapRevoked(key, 2), verdict as ErrorCode);
    },
  );

  it('reads the versions decrypt refuses: disabled, and below the minimum', () => {
    const key = keyRecord({ minDecryptionVersion: 2, versions: [version(1), version(2, 'disabled'), version(3)] });
    expectRefusal(() => checkCanDecrypt(key, 1), 'KH_ERR_KEY_VERSION_BELOW_MINIMUM');
    expectRefusal(() => checkCanDecrypt(key, 2), 'KH_ERR_KEY_VERSION_DISABLED');
    expect(checkCanRewrapRevoked(key, 1)).toBe('ok');
    expect(checkCanRewrapRevoked(key, 2)).toBe('ok');
  });

  it('refuses a key whose deletion date has passed as destroyed', () => {
    const key = keyRecord({ state: 'pending_deletion', deletionDate: T0 });
    expectRefusal(() => checkCanRewrapRevoked(key, 2, new Date(T0.getTime() + 1)), DESTROYED);
  });

  it.each([
    ['disabled', 'KH_ERR_KEY_VERSION_DISABLED'],
    ['destroyed', 'KH_ERR_KEY_VERSION_DESTROYED'],
  ] as const)('refuses when the primary version it would seal under is %s, with %s', (state, code) => {
    const key = keyRecord({ versions: [version(1, 'disabled'), version(2), version(3, state)] });
    expectRefusal(() => checkCanRewrapRevoked(key, 1), code);
  });

  it.each([4, 0, 2 ** 32 - 1])('answers unknown-version, not an error, for version %i the key never had', (v) => {
    expect(checkCanRewrapRevoked(keyRecord(), v)).toBe('unknown-version');
  });
});

describe('nextRotationAfter', () => {
  it('is null when the rotation period is null (rotation off)', () => {
    expect(nextRotationAfter(T0, null)).toBeNull();
  });

  it('is null when the rotation period is 0 (rotation off)', () => {
    expect(nextRotationAfter(T0, 0)).toBeNull();
  });

  it('is one period after now', () => {
    expect(nextRotationAfter(T0, MIN_ROTATION_PERIOD_SECONDS)).toEqual(new Date('2026-01-01T01:00:00Z'));
  });

  it('handles the longest period (ten years of 365 days)', () => {
    expect(nextRotationAfter(T0, MAX_ROTATION_PERIOD_SECONDS)?.getTime()).toBe(T0.getTime() + 3650 * 86_400_000);
  });

  it('does not change the date it is given', () => {
    const now = new Date(T0);
    nextRotationAfter(now, 86_400);
    expect(now).toEqual(T0);
  });
});

describe('isDueForDestruction', () => {
  const deletionDate = new Date('2026-01-31T00:00:00Z');
  const pending = keyRecord({ state: 'pending_deletion', deletionDate });

  it('is true for a pending key whose deletion date has passed', () => {
    expect(isDueForDestruction(pending, new Date(deletionDate.getTime() + 1))).toBe(true);
  });

  it('is true for a pending key at exactly its deletion date', () => {
    expect(isDueForDestruction(pending, deletionDate)).toBe(true);
  });

  it('is false for a pending key before its deletion date', () => {
    expect(isDueForDestruction(pending, new Date(deletionDate.getTime() - 1))).toBe(false);
  });

  it('is false for a pending key without a deletion date', () => {
    expect(isDueForDestruction(keyRecord({ state: 'pending_deletion', deletionDate: null }), deletionDate)).toBe(false);
  });

  it.each(['enabled', 'disabled', 'destroyed'] as const)('is false for a %s key, whatever its deletion date', (state) => {
    expect(isDueForDestruction(keyRecord({ state, deletionDate: T0 }), deletionDate)).toBe(false);
  });
});

describe('minDecryptionVersionAfterRotation', () => {
  it.each([
    { min: 1, retain: null, primary: 9, expected: 1 },
    { min: 1, retain: 1, primary: 9, expected: 9 },
    { min: 1, retain: 3, primary: 9, expected: 7 },
    { min: 1, retain: 3, primary: 2, expected: 1 },
    { min: 8, retain: 3, primary: 9, expected: 8 },
  ])('min $min, retain $retain, primary $primary → $expected', ({ min, retain, primary, expected }) => {
    expect(minDecryptionVersionAfterRotation({ minDecryptionVersion: min, retainVersions: retain }, primary)).toBe(expected);
  });
});
