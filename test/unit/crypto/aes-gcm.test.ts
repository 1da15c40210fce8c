import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { aesGcmOpen, aesGcmSeal, GCM_IV_BYTES, GCM_TAG_BYTES } from '../../../src/crypto/aes-gcm.js';
import { DecryptionFailedError } from '../../../src/errors.js';

import { DECRYPTION_FAILED_MESSAGE, expectDecryptionFailed, thrownBy } from '../../helpers/expect-error.js';

const key = randomBytes(32);
const iv = randomBytes(GCM_IV_BYTES);
const aad = Buffer.from('header and context');
const plaintext = Buffer.from('attack at dawn');

describe('aesGcmSeal / aesGcmOpen', () => {
  it('opens what it sealed', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    expect(aesGcmOpen(key, iv, sealed, aad)).toEqual(plaintext);
  });

  it.each([16, 24, 32])('accepts a %i-byte AES key', (keyBytes) => {
    const k = randomBytes(keyBytes);
    expect(aesGcmOpen(k, iv, aesGcmSeal(k, iv, plaintext, aad), aad)).toEqual(plaintext);
  });

  it('returns the ciphertext followed by a 16-byte tag', () => {
    expect(aesGcmSeal(key, iv, plaintext, aad)).toHaveLength(plaintext.length + GCM_TAG_BYTES);
  });

  it('seals and opens an empty plaintext', () => {
    const sealed = aesGcmSeal(key, iv, new Uint8Array(0), aad);
    expect(sealed).toHaveLength(GCM_TAG_BYTES);
    expect(aesGcmOpen(key, iv, sealed, aad)).toHaveLength(0);
  });

  it.each([0, 8, 11, 13, 16])('refuses to seal with a %i-byte IV (only 96-bit IVs, SP 800-38D §8.2)', (ivBytes) => {
    expect(() => aesGcmSeal(key, randomBytes(ivBytes), plaintext, aad)).toThrow(RangeError);
  });

  it('refuses to seal with a key that is not 16, 24 or 32 bytes', () => {
    expect(() => aesGcmSeal(randomBytes(20), iv, plaintext, aad)).toThrow(RangeError);
  });

  it('fails to open under a different key', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    expectDecryptionFailed(() => aesGcmOpen(randomBytes(32), iv, sealed, aad));
  });

  it('fails to open with different additional data', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    expectDecryptionFailed(() => aesGcmOpen(key, iv, sealed, Buffer.from('header and contexT')));
  });

  it('fails to open with a different IV', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    expectDecryptionFailed(() => aesGcmOpen(key, randomBytes(GCM_IV_BYTES), sealed, aad));
  });

  it('fails to open when the tag is modified', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    sealed[sealed.length - 1]! ^= 0x01;
    expectDecryptionFailed(() => aesGcmOpen(key, iv, sealed, aad));
  });

  it('fails to open when the ciphertext is modified', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    sealed[0]! ^= 0x80;
    expectDecryptionFailed(() => aesGcmOpen(key, iv, sealed, aad));
  });

  it('fails to open when the tag is truncated', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    expectDecryptionFailed(() => aesGcmOpen(key, iv, sealed.subarray(0, sealed.length - 4), aad));
  });

  it('fails to open input shorter than a tag', () => {
    expectDecryptionFailed(() => aesGcmOpen(key, iv, new Uint8Array(GCM_TAG_BYTES - 1), aad));
  });

  it.each([0, 8, 16])('fails to open with a %i-byte IV, as DecryptionFailedError rather than RangeError', (ivBytes) => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    expectDecryptionFailed(() => aesGcmOpen(key, randomBytes(ivBytes), sealed, aad));
  });

  it('fails to open with a key of an invalid length, as DecryptionFailedError rather than RangeError', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    expectDecryptionFailed(() => aesGcmOpen(randomBytes(20), iv, sealed, aad));
  });

  it('reports every kind of open failure with the same code and message', () => {
    const sealed = aesGcmSeal(key, iv, plaintext, aad);
    const tamperedTag = Buffer.from(sealed);
    tamperedTag[tamperedTag.length - 1]! ^= 0x01;
    const failures = [
      () => aesGcmOpen(randomBytes(32), iv, sealed, aad),
      () => aesGcmOpen(key, iv, sealed, Buffer.from('other')),
      () => aesGcmOpen(key, iv, tamperedTag, aad),
      () => aesGcmOpen(key, randomBytes(8), sealed, aad),
      () => aesGcmOpen(key, iv, new Uint8Array(3), aad),
      () => aesGcmOpen(randomBytes(7), iv, sealed, aad),
    ].map((failure) => {
      const error = thrownBy(failure) as DecryptionFailedError;
      return { name: error.name, code: error.code, message: error.message };
    });
    expect(new Set(failures.map((f) => JSON.stringify(f))).size).toBe(1);
    expect(failures[0]).toEqual({
      name: 'DecryptionFailedError',
      code: 'KH_ERR_DECRYPTION_FAILED',
      message: DECRYPTION_FAILED_MESSAGE,
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Project Wycheproof AES-GCM vectors, read from the pinned shared copy (see its PROVENANCE.md); never copied here.

interface WycheproofAeadTest {
  readonly tcId: number;
  readonly comment: string;
  readonly flags: readonly string[];
  readonly key: string;
  readonly iv: string;
  readonly aad: string;
  readonly msg: string;
  readonly ct: string;
  readonly tag: string;
  readonly result: string;
}

interface WycheproofAeadGroup {
  readonly keySize: number;
  readonly ivSize: number;
  readonly tagSize: number;
  readonly tests: readonly WycheproofAeadTest[];
}

interface WycheproofAeadFile {
  readonly algorithm: string;
  readonly numberOfTests: number;
  readonly testGroups: readonly WycheproofAeadGroup[];
}

interface GcmVector extends WycheproofAeadTest {
  readonly keySize: number;
  readonly ivSize: number;
  readonly tagSize: number;
}

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const VECTORS_PATH = resolve(REPO_ROOT, '../shared/vectors/wycheproof/aes_gcm_test.json');
const vectorsPresent = existsSync(VECTORS_PATH);
if (!vectorsPresent) {
  console.warn(`Skipping the Wycheproof AES-GCM vectors: ${VECTORS_PATH} does not exist (they are not copied into the repo).`);
}

const vectorFile: WycheproofAeadFile | undefined = vectorsPresent
  ? (JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as WycheproofAeadFile)
  : undefined;
const allVectors: GcmVector[] = (vectorFile?.testGroups ?? []).flatMap((group) =>
  group.tests.map((test) => ({ ...test, keySize: group.keySize, ivSize: group.ivSize, tagSize: group.tagSize })),
);

/** Our wrapper's contract: a 96-bit IV and a 128-bit tag, nothing else. */
function inContract(vector: GcmVector): boolean {
  return vector.ivSize === GCM_IV_BYTES * 8 && vector.tagSize === GCM_TAG_BYTES * 8;
}

const inContractVectors = allVectors.filter(inContract);
const outOfContractVectors = allVectors.filter((vector) => !inContract(vector));
const validVectors = inContractVectors.filter((vector) => vector.result === 'valid');
const invalidVectors = inContractVectors.filter((vector) => vector.result === 'invalid');
const outOfContractIvVectors = outOfContractVectors.filter((vector) => vector.ivSize !== GCM_IV_BYTES * 8);

const hex = (text: string): Buffer => Buffer.from(text, 'hex');

describe.skipIf(!vectorsPresent)('Wycheproof AES-GCM vectors', () => {
  it('is the AES-GCM file', () => {
    expect(vectorFile?.algorithm).toBe('AES-GCM');
  });

  it('exercises more than zero in-contract vectors (96-bit IV, 128-bit tag)', () => {
    expect(inContractVectors.length).toBeGreaterThan(0);
    expect(validVectors.length).toBeGreaterThan(0);
    expect(invalidVectors.length).toBeGreaterThan(0);
  });

  it('counts every vector in the file as either in or out of the wrapper contract', () => {
    expect(inContractVectors.length + outOfContractVectors.length).toBe(vectorFile?.numberOfTests);
    expect(outOfContractVectors.length).toBeGreaterThan(0);
  });

  it('has only valid or invalid in-contract vectors (an "acceptable" one would need a decision here)', () => {
    expect(inContractVectors.filter((vector) => vector.result !== 'valid' && vector.result !== 'invalid')).toEqual([]);
  });

  if (validVectors.length > 0) {
    it.each(validVectors)('tcId $tcId (valid, $keySize-bit key): opens to msg and seals back to ct || tag', (vector) => {
      const sealed = Buffer.concat([hex(vector.ct), hex(vector.tag)]);
      expect(aesGcmOpen(hex(vector.key), hex(vector.iv), sealed, hex(vector.aad)).toString('hex')).toBe(vector.msg);
      expect(aesGcmSeal(hex(vector.key), hex(vector.iv), hex(vector.msg), hex(vector.aad)).toString('hex')).toBe(
        vector.ct + vector.tag,
      );
    });
  }

  if (invalidVectors.length > 0) {
    it.each(invalidVectors)('tcId $tcId (invalid, $comment): fails to open with DecryptionFailedError', (vector) => {
      const sealed = Buffer.concat([hex(vector.ct), hex(vector.tag)]);
      expectDecryptionFailed(() => aesGcmOpen(hex(vector.key), hex(vector.iv), sealed, hex(vector.aad)));
    });
  }

  if (outOfContractVectors.length > 0) {
    it.each(outOfContractVectors)(
      'tcId $tcId ($ivSize-bit IV, $tagSize-bit tag, out of contract): open fails with DecryptionFailedError',
      (vector) => {
        const sealed = Buffer.concat([hex(vector.ct), hex(vector.tag)]);
        expectDecryptionFailed(() => aesGcmOpen(hex(vector.key), hex(vector.iv), sealed, hex(vector.aad)));
      },
    );
  }

  if (outOfContractIvVectors.length > 0) {
    it.each(outOfContractIvVectors)(
      'tcId $tcId ($ivSize-bit IV, out of contract): seal refuses the IV with RangeError',
      (vector) => {
        expect(() => aesGcmSeal(hex(vector.key), hex(vector.iv), hex(vector.msg), hex(vector.aad))).toThrow(RangeError);
      },
    );
  }
});
