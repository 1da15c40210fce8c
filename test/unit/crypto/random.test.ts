import { describe, expect, it } from 'vitest';
import { randomBytesPooled } from '../../../src/crypto/random.js';

describe('randomBytesPooled', () => {
  it('returns the requested number of bytes, small and large', () => {
    for (const length of [0, 1, 32, 76, 2048, 2049, 100_000]) expect(randomBytesPooled(length)).toHaveLength(length);
  });

  it('never hands out the same bytes twice, across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i += 1) seen.add(randomBytesPooled(32).toString('hex'));
    expect(seen.size).toBe(2000);
  });

  it('returns independent buffers that callers may zero', () => {
    const a = randomBytesPooled(32);
    const copy = Buffer.from(a);
    a.fill(0);
    const b = randomBytesPooled(32);
    expect(b.equals(Buffer.alloc(32))).toBe(false);
    expect(copy.equals(Buffer.alloc(32))).toBe(false);
  });
});
