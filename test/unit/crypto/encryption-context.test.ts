import { describe, expect, it } from 'vitest';
import {
  assertNoReservedContextKeys,
  encodeEncryptionContext,
  MAX_CONTEXT_BYTES,
  MAX_CONTEXT_PAIRS,
  type EncryptionContext,
} from '../../../src/crypto/encryption-context.js';
import { ValidationError } from '../../../src/errors.js';

function hex(context: EncryptionContext | undefined): string {
  return encodeEncryptionContext(context).toString('hex');
}

function expectValidationError(action: () => unknown): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ValidationError);
  expect(caught).toMatchObject({ code: 'KH_ERR_VALIDATION', status: 400 });
}

/** `count` pairs with distinct keys k00, k01, … and empty values. */
function contextWithPairs(count: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${String(i).padStart(2, '0')}`, '']));
}

describe('encodeEncryptionContext', () => {
  it('encodes an absent context as 00 00', () => {
    expect(hex(undefined)).toBe('0000');
  });

  it('encodes an empty context as 00 00', () => {
    expect(hex({})).toBe('0000');
  });

  it('encodes a pair count, then sorted length-prefixed keys and values (worked example)', () => {
    // { tenant: 'acme', app: 'web' } sorts to app, tenant:
    //   00 02                      two pairs
    //   00 03 61 70 70             "app"
    //   00 03 77 65 62             "web"
    //   00 06 74 65 6e 61 6e 74    "tenant"
    //   00 04 61 63 6d 65          "acme"
    expect(hex({ tenant: 'acme', app: 'web' })).toBe(
      '0002' + '0003617070' + '0003776562' + '000674656e616e74' + '000461636d65',
    );
  });

  it('encodes an empty value as a zero length', () => {
    expect(hex({ k: '' })).toBe('0001' + '00016b' + '0000');
  });

  it('counts lengths in UTF-8 bytes, not in characters', () => {
    // "é" is c3 a9; "€" is e2 82 ac.
    expect(hex({ é: '€' })).toBe('0001' + '0002c3a9' + '0003e282ac');
  });

  it('encodes the same context to the same bytes whatever the property order', () => {
    const forward = encodeEncryptionContext({ a: '1', b: '2', c: '3' });
    const backward = encodeEncryptionContext({ c: '3', b: '2', a: '1' });
    expect(forward).toEqual(backward);
  });

  it('sorts keys by bytes: upper case before lower case, a prefix before its extensions', () => {
    expect(hex({ aa: '', a: '', B: '' })).toBe('0003' + '000142' + '0000' + '000161' + '0000' + '00026161' + '0000');
  });

  it('sorts keys by their UTF-8 bytes, not by UTF-16 code units', () => {
    // UTF-16 puts U+1F600 (d83d de00) before U+FF61; UTF-8 puts U+FF61 (ef bd a1) before U+1F600 (f0 9f 98 80).
    expect(hex({ '\u{1F600}': 'b', '\uFF61': 'a' })).toBe(
      '0002' + '0003efbda1' + '000161' + '0004f09f9880' + '000162',
    );
  });

  it('encodes random contexts exactly as encoding each string and sorting by Buffer.compare would', () => {
    // Code units from every range whose order differs between UTF-16 and UTF-8: ASCII, U+0080..07FF,
    // U+0800..D7FF, U+E000..FFFF and surrogate pairs (code points above U+FFFF).
    const alphabet = ['a', 'Z', '0', '\u00e9', '\u07ff', '\u4e2d', '\ud7ff', '\ue000', '\uff61', '\uffff', '\u{10000}', '\u{1f600}', '\u{10ffff}'];
    let seed = 7;
    const next = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const text = (): string => Array.from({ length: 1 + next(4) }, () => alphabet[next(alphabet.length)]!).join('');
    for (let round = 0; round < 500; round += 1) {
      const context: Record<string, string> = {};
      for (let pair = 0; pair < 1 + next(6); pair += 1) context[text()] = next(3) === 0 ? '' : text();
      const pairs = Object.entries(context).map(([key, value]) => [Buffer.from(key, 'utf8'), Buffer.from(value, 'utf8')] as const);
      pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
      const reference = Buffer.concat([
        Buffer.from([0, pairs.length]),
        ...pairs.flatMap(([key, value]) => [Buffer.from([0, key.length]), key, Buffer.from([0, value.length]), value]),
      ]);
      expect(encodeEncryptionContext(context).toString('hex')).toBe(reference.toString('hex'));
    }
  });

  it('sorts integer-like keys by bytes, not in the numeric order JavaScript enumerates them', () => {
    // Object.keys yields "2", "10"; bytewise "10" < "2".
    expect(hex({ 2: 'x', 10: 'y' })).toBe('0002' + '00023130' + '000179' + '000132' + '000178');
  });

  it(`accepts ${MAX_CONTEXT_PAIRS} pairs`, () => {
    expect(encodeEncryptionContext(contextWithPairs(MAX_CONTEXT_PAIRS)).readUInt16BE(0)).toBe(MAX_CONTEXT_PAIRS);
  });

  it(`refuses ${MAX_CONTEXT_PAIRS + 1} pairs with ValidationError`, () => {
    expectValidationError(() => encodeEncryptionContext(contextWithPairs(MAX_CONTEXT_PAIRS + 1)));
  });

  it(`accepts an encoding of exactly ${MAX_CONTEXT_BYTES} bytes`, () => {
    // 2 (count) + 2 + 1 (key "k") + 2 + value = 8192
    const value = 'v'.repeat(MAX_CONTEXT_BYTES - 7);
    expect(encodeEncryptionContext({ k: value })).toHaveLength(MAX_CONTEXT_BYTES);
  });

  it(`refuses an encoding of ${MAX_CONTEXT_BYTES + 1} bytes with ValidationError`, () => {
    expectValidationError(() => encodeEncryptionContext({ k: 'v'.repeat(MAX_CONTEXT_BYTES - 6) }));
  });

  it('measures the size limit in UTF-8 bytes, not in characters', () => {
    // 2729 × "€" is 2729 characters but 8187 bytes, so the encoding is 2 + 2 + 1 + 2 + 8187 = 8194 bytes.
    expectValidationError(() => encodeEncryptionContext({ k: '€'.repeat(2729) }));
  });

  it('counts the size across all pairs', () => {
    // 2 (count) + 2 × (2 + 1 + 2) + 4090 + 4090 = 8192
    const value = 'v'.repeat(4090);
    expect(encodeEncryptionContext({ a: value, b: value })).toHaveLength(MAX_CONTEXT_BYTES);
    expectValidationError(() => encodeEncryptionContext({ a: value, b: value + 'v' }));
  });

  it('refuses an empty key with ValidationError', () => {
    expectValidationError(() => encodeEncryptionContext({ '': 'value' }));
  });

  it('refuses a value that is not a string with ValidationError', () => {
    expectValidationError(() => encodeEncryptionContext({ k: 1 } as unknown as EncryptionContext));
  });

  // Lone surrogates have no UTF-8 encoding: Buffer.from(…, 'utf8') turns each into U+FFFD (ef bf bd). Unless they
  // are refused, distinct contexts share one encoding (one AAD), and the order independence above breaks.
  it('refuses a key that is not well-formed Unicode (a lone surrogate) with ValidationError', () => {
    expectValidationError(() => encodeEncryptionContext({ '\uD800': 'x' }));
  });

  it('refuses a value that is not well-formed Unicode (a lone surrogate) with ValidationError', () => {
    expectValidationError(() => encodeEncryptionContext({ k: '\uDC00' }));
  });

  it('never gives two distinct contexts the same encoding (a refused context counts as distinct)', () => {
    const distinct: EncryptionContext[] = [
      { a: 'bc' },
      { ab: 'c' },
      { a: 'b', c: '' },
      { a: 'b\u0000\u0001c\u0000\u0000' },
      { '\uFFFD': 'x' },
      { '\uD800': 'x' },
      { '\uDC00': 'x' },
      { k: '\uFFFD' },
      { k: '\uD800' },
    ];
    const encodings = distinct.map((context, index) => {
      try {
        return hex(context);
      } catch (error) {
        if (error instanceof ValidationError) return `refused #${index}`;
        throw error;
      }
    });
    expect(new Set(encodings).size).toBe(distinct.length);
  });
});

describe('assertNoReservedContextKeys', () => {
  it.each(['kh.', 'kh.identity', 'kh.spiffe.id'])('refuses the reserved key %j with ValidationError', (key) => {
    expectValidationError(() => assertNoReservedContextKeys({ tenant: 'a', [key]: 'x' }));
  });

  it.each(['kh', 'khx', 'kh-identity', 'x.kh.identity', 'tenant'])('accepts the unreserved key %j', (key) => {
    expect(() => assertNoReservedContextKeys({ [key]: 'x' })).not.toThrow();
  });

  it('accepts an absent context', () => {
    expect(() => assertNoReservedContextKeys(undefined)).not.toThrow();
  });

  it('accepts a reserved prefix in a value', () => {
    expect(() => assertNoReservedContextKeys({ tenant: 'kh.identity' })).not.toThrow();
  });
});
