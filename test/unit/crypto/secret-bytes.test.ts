import { format, inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';

const BYTES_HEX = '00112233445566778899aabbccddeeff';

function secret(): { readonly secret: SecretBytes; readonly adopted: Buffer } {
  const adopted = Buffer.from(BYTES_HEX, 'hex');
  return { secret: SecretBytes.adopt(adopted), adopted };
}

/** Every rendering of the bytes a careless log line could produce. */
function expectNoBytesIn(text: string): void {
  const bytes = Buffer.from(BYTES_HEX, 'hex');
  expect(text).not.toContain(BYTES_HEX);
  expect(text.toLowerCase()).not.toContain('00 11 22 33');
  expect(text).not.toContain(bytes.toString('base64').slice(0, 16));
  expect(text).not.toContain(bytes.toString('base64url').slice(0, 16));
  expect(text).not.toMatch(/\b0, 17, 34\b/);
  expect(text).not.toContain('"0":0');
}

describe('SecretBytes', () => {
  it('serialises to "[REDACTED]" through JSON.stringify', () => {
    const { secret: s } = secret();
    expect(JSON.stringify(s)).toBe('"[REDACTED]"');
    expect(JSON.stringify({ key: s })).toBe('{"key":"[REDACTED]"}');
  });

  it('prints as SecretBytes([REDACTED]) through util.inspect, also when nested', () => {
    const { secret: s } = secret();
    expect(inspect(s)).toBe('SecretBytes([REDACTED])');
    expect(inspect({ key: s }, { depth: 10, showHidden: true })).toContain('SecretBytes([REDACTED])');
    expectNoBytesIn(inspect({ key: s }, { depth: 10, showHidden: true }));
  });

  it('shows no bytes through util.inspect even with customInspect turned off', () => {
    const { secret: s } = secret();
    expectNoBytesIn(inspect(s, { customInspect: false, showHidden: true, depth: 10 }));
  });

  it('converts to "[REDACTED]" through String() and template literals', () => {
    const { secret: s } = secret();
    expect(String(s)).toBe('[REDACTED]');
    expect(`${s}`).toBe('[REDACTED]');
    expect('' + s).toBe('[REDACTED]');
  });

  it('shows no bytes through util.format with %s, %o, %O and %j', () => {
    const { secret: s } = secret();
    expectNoBytesIn(format('%s %o %O %j', s, s, s, s));
  });

  it('has no enumerable properties that spread or Object.entries could copy', () => {
    const { secret: s } = secret();
    expect(Object.keys(s)).toEqual([]);
    expect({ ...s }).toEqual({});
  });

  it('reports its length in bytes', () => {
    expect(secret().secret.length).toBe(16);
  });

  it('lends the bytes to use() and returns its result', () => {
    const { secret: s } = secret();
    expect(s.use((bytes) => bytes.toString('hex'))).toBe(BYTES_HEX);
  });

  it('adopts the buffer it is given without copying it', () => {
    const { secret: s, adopted } = secret();
    expect(s.use((bytes) => bytes === adopted)).toBe(true);
  });

  it('zero() overwrites the bytes with zeros', () => {
    const { secret: s, adopted } = secret();
    s.zero();
    expect(adopted.equals(Buffer.alloc(16))).toBe(true);
    expect(s.isZeroed).toBe(true);
  });

  it('is not zeroed until zero() is called', () => {
    expect(secret().secret.isZeroed).toBe(false);
  });

  it('refuses use() after zero()', () => {
    const { secret: s } = secret();
    s.zero();
    expect(() => s.use(() => undefined)).toThrow(/zeroed/);
  });

  it('refuses copyInsecure() after zero()', () => {
    const { secret: s } = secret();
    s.zero();
    expect(() => s.copyInsecure()).toThrow(/zeroed/);
  });

  it('copyInsecure() returns the same bytes', () => {
    expect(secret().secret.copyInsecure().toString('hex')).toBe(BYTES_HEX);
  });

  it('copyInsecure() returns a copy that later changes to the secret do not reach', () => {
    const { secret: s } = secret();
    const copy = s.copyInsecure();
    s.zero();
    expect(copy.toString('hex')).toBe(BYTES_HEX);
  });

  it('copyInsecure() returns a copy whose changes do not reach the secret', () => {
    const { secret: s } = secret();
    const copy = s.copyInsecure();
    copy.fill(0xff);
    expect(s.use((bytes) => bytes.toString('hex'))).toBe(BYTES_HEX);
  });

  it('random() makes a secret of the requested length', () => {
    expect(SecretBytes.random(32).length).toBe(32);
  });

  it('random() makes different secrets each time', () => {
    const a = SecretBytes.random(32).copyInsecure();
    const b = SecretBytes.random(32).copyInsecure();
    expect(a.equals(b)).toBe(false);
  });
});
