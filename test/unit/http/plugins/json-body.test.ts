import { describe, expect, it } from 'vitest';
import { jsonNestingDepth, MAX_JSON_DEPTH } from '../../../../src/http/plugins/json-body.js';

const LIMIT = MAX_JSON_DEPTH;

describe('jsonNestingDepth', () => {
  it.each([
    ['an empty text', '', 0],
    ['a number', '42', 0],
    ['a string', '"text"', 0],
    ['null', 'null', 0],
    ['an empty object', '{}', 1],
    ['an empty array', '[]', 1],
    ['an object holding an array', '{"a":[1,2]}', 2],
    ['alternating objects and arrays', '{"a":[{"b":[{}]}]}', 5],
  ])('counts %s as depth %i', (_description, text, depth) => {
    expect(jsonNestingDepth(text, LIMIT)).toBe(depth);
  });

  it('reports the deepest point, not the depth at the end', () => {
    expect(jsonNestingDepth('[[[[]]],[]]', LIMIT)).toBe(4);
  });

  it('does not add up siblings', () => {
    expect(jsonNestingDepth('[[],[],[],{},{}]', LIMIT)).toBe(2);
  });

  it('ignores brackets and braces inside strings', () => {
    expect(jsonNestingDepth('{"[[[[": "{{{{]]]]"}', LIMIT)).toBe(1);
  });

  it('ignores brackets after an escaped quote inside a string', () => {
    // The value is the string  "[[[[{{{{  : the \" does not end it.
    expect(jsonNestingDepth('{"k":"\\"[[[[{{{{"}', LIMIT)).toBe(1);
  });

  it('ends a string at a quote that follows an escaped backslash', () => {
    // ["\\", [[ ]] ]: the string is one backslash; the brackets after it count.
    expect(jsonNestingDepth('["\\\\",[[]]]', LIMIT)).toBe(3);
  });

  it('treats other escapes, such as \\u005b, as string content', () => {
    expect(jsonNestingDepth('["\\u005b\\n\\t[", []]', LIMIT)).toBe(2);
  });

  it('returns a depth equal to the limit unchanged', () => {
    const text = '['.repeat(LIMIT) + ']'.repeat(LIMIT);
    expect(jsonNestingDepth(text, LIMIT)).toBe(LIMIT);
  });

  it('reports a depth past the limit as limit + 1', () => {
    const text = '['.repeat(LIMIT + 1) + ']'.repeat(LIMIT + 1);
    expect(jsonNestingDepth(text, LIMIT)).toBe(LIMIT + 1);
  });

  it('stops scanning as soon as the depth passes the limit', () => {
    // A full scan would report 100 000; stopping early reports the first depth past the limit.
    expect(jsonNestingDepth('['.repeat(100_000), 10)).toBe(11);
  });

  it('stops early even when the excess depth comes after a long valid prefix', () => {
    const text = '[' + '"x",'.repeat(10_000) + '['.repeat(50_000);
    expect(jsonNestingDepth(text, 3)).toBe(4);
  });

  it('counts depth against the limit it is given', () => {
    expect(jsonNestingDepth('[[[]]]', 2)).toBe(3);
    expect(jsonNestingDepth('[[[]]]', 3)).toBe(3);
  });
});
