import { describe, expect, it } from 'vitest';
import { findVersion, KEY_NAME_PATTERN, type KeyRecord } from '../../../src/keys/key-record.js';
import { keyRecord, versionRecord } from '../../helpers/key-fixtures.js';

function keyWithVersions(numbers: readonly number[]): KeyRecord {
  return keyRecord({ primaryVersion: numbers.at(-1) ?? 1, versions: numbers.map((n) => versionRecord(n)) });
}

describe('findVersion', () => {
  it('finds every version of a key with dense versions', () => {
    const key = keyWithVersions([1, 2, 3]);
    for (const n of [1, 2, 3]) expect(findVersion(key, n)?.version).toBe(n);
  });

  it('finds a version after a gap in the version numbers', () => {
    const key = keyWithVersions([1, 3, 4]);
    expect(findVersion(key, 3)?.version).toBe(3);
    expect(findVersion(key, 4)?.version).toBe(4);
  });

  it('does not return a neighbour for a version missing from a gap', () => {
    expect(findVersion(keyWithVersions([1, 3, 4]), 2)).toBeUndefined();
  });

  it.each([0, -1, 4, 1.5, Number.NaN])('finds nothing for version %d', (n) => {
    expect(findVersion(keyWithVersions([1, 2, 3]), n)).toBeUndefined();
  });
});

describe('KEY_NAME_PATTERN', () => {
  const pattern = new RegExp(KEY_NAME_PATTERN);

  it.each(['a', 'payments', 'App_1.key-2', '9lives', 'x'.repeat(128)])('accepts the name %j', (name) => {
    expect(pattern.test(name)).toBe(true);
  });

  it.each(['', '.hidden', '-flag', '_x', 'a b', 'a/b', 'ключ', 'x'.repeat(129), 'a\n'])('rejects the name %j', (name) => {
    expect(pattern.test(name)).toBe(false);
  });
});
