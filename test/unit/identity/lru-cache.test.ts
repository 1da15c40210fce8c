import { describe, expect, it } from 'vitest';
import { LruCache } from '../../../src/identity/lru-cache.js';

describe('LruCache', () => {
  it('returns what was stored', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    expect(cache.get('a')).toBe(1);
    expect(cache.get('b')).toBeUndefined();
  });

  it('never holds more than its bound', () => {
    const cache = new LruCache<number, number>(3);
    for (let i = 0; i < 10; i += 1) cache.set(i, i);
    expect(cache.size).toBe(3);
    expect([7, 8, 9].map((i) => cache.get(i))).toEqual([7, 8, 9]);
  });

  it('drops the least recently used entry, not the oldest stored', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.get('a');
    cache.set('c', 3);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBe(1);
    expect(cache.get('c')).toBe(3);
  });

  it('replacing a key evicts nothing else', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('a', 10);
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBe(10);
    expect(cache.get('b')).toBe(2);
  });

  it('forgets deleted and cleared entries', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.delete('a');
    expect(cache.get('a')).toBeUndefined();
    cache.clear();
    expect(cache.size).toBe(0);
  });

  it.each([0, -1, 1.5, Number.NaN])('refuses a bound of %s', (bound) => {
    expect(() => new LruCache(bound)).toThrow(RangeError);
  });
});
