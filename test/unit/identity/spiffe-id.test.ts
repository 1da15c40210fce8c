import { describe, expect, it } from 'vitest';
import { MAX_SPIFFE_ID_LENGTH, parseSpiffeId } from '../../../src/identity/spiffe-id.js';

describe('parseSpiffeId (SPIFFE-ID §2)', () => {
  it.each([
    ['spiffe://example.org/ns/payments/sa/api', 'example.org', '/ns/payments/sa/api'],
    ['spiffe://example.org/service', 'example.org', '/service'],
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://a_b-c.9/Mixed.Case_path-1/x', 'a_b-c.9', '/Mixed.Case_path-1/x'],
    ['spiffe://10.0.0.1/dotted-quad-is-just-a-name', '10.0.0.1', '/dotted-quad-is-just-a-name'],
    ['spiffe://example.org/.hidden/..x/...', 'example.org', '/.hidden/..x/...'],
  ])('%s is valid', (text, trustDomain, path) => {
    expect(parseSpiffeId(text)).toEqual({ id: text, trustDomain, path });
  });

  it.each([
    ['another scheme', 'https://example.org/ns/a/sa/b'],
    ['an uppercase scheme', 'SPIFFE://example.org/a'],
    ['no authority', 'spiffe:/example.org/a'],
    ['an empty trust domain', 'spiffe:///a'],
    ['an uppercase trust domain', 'spiffe://Example.org/a'],
    ['a port', 'spiffe://example.org:8443/a'],
    ['userinfo', 'spiffe://user@example.org/a'],
    ['a percent-encoded trust domain', 'spiffe://ex%61mple.org/a'],
    ['an IPv6 literal', 'spiffe://[::1]/a'],
    ['a query', 'spiffe://example.org/a?b=c'],
    ['a fragment', 'spiffe://example.org/a#b'],
    ['an empty query', 'spiffe://example.org?'],
    ['a trailing slash', 'spiffe://example.org/a/'],
    ['a lone slash', 'spiffe://example.org/'],
    ['an empty segment', 'spiffe://example.org/a//b'],
    ['a dot segment', 'spiffe://example.org/a/./b'],
    ['a dot-dot segment', 'spiffe://example.org/a/../b'],
    ['a percent-encoded path', 'spiffe://example.org/a%2Fb'],
    ['a space', 'spiffe://example.org/a b'],
    ['a non-ASCII letter', 'spiffe://example.org/caf\u00e9'],
    ['a colon in the path', 'spiffe://example.org/a:b'],
    ['a trust domain over 255 bytes', `spiffe://${'a'.repeat(256)}/x`],
    ['an ID over 2048 bytes', `spiffe://example.org/${'a'.repeat(MAX_SPIFFE_ID_LENGTH)}`],
  ])('%s is refused (%s)', (_rule, text) => {
    expect(parseSpiffeId(text)).toBeUndefined();
  });

  it('an ID of exactly 2048 bytes is accepted (SPIFFE-ID §2.3)', () => {
    const prefix = 'spiffe://example.org/';
    const text = prefix + 'a'.repeat(MAX_SPIFFE_ID_LENGTH - prefix.length);
    expect(parseSpiffeId(text)?.id).toBe(text);
  });

  it('the parsed ID is frozen', () => {
    expect(Object.isFrozen(parseSpiffeId('spiffe://example.org/a'))).toBe(true);
  });
});
