import { describe, expect, it } from 'vitest';
import { BoundedLabel, OTHER } from '../../../src/metrics/bounded-label.js';

describe('BoundedLabel', () => {
  it('keeps the first max distinct values and reports every later one as other', () => {
    const label = new BoundedLabel(2);
    expect(['a', 'b', 'c', 'd'].map((value) => label.of(value))).toEqual(['a', 'b', OTHER, OTHER]);
  });

  it('keeps a value it kept once, however many others came since', () => {
    const label = new BoundedLabel(2);
    label.of('a');
    label.of('b');
    label.of('c');
    expect(label.of('a')).toBe('a');
    expect(label.of('b')).toBe('b');
  });
});
