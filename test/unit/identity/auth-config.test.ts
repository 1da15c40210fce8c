import { describe, expect, it } from 'vitest';
import { StartupError } from '../../../src/errors.js';
import { EMPTY_AUTH_CONFIG, parseAuthConfig, readAuthConfig } from '../../../src/identity/auth-config.js';

function problemOf(text: string): string {
  try {
    parseAuthConfig(text, '/etc/keyhold');
  } catch (error) {
    expect(error).toBeInstanceOf(StartupError);
    return (error as Error).message;
  }
  throw new Error('expected a StartupError');
}

describe('auth config', () => {
  it('is empty without a file', () => {
    expect(readAuthConfig(undefined)).toBe(EMPTY_AUTH_CONFIG);
  });

  it('reads issuers and trust domains from YAML, resolving file paths against its folder', () => {
    const config = parseAuthConfig(
      [
        'kubernetes:',
        '  issuers:',
        '    - issuer: https://kubernetes.default.svc',
        '      audiences: [keyhold]',
        '      jwksFile: jwks.json',
        '      caFile: /var/run/ca.crt',
        'spiffe:',
        '  trustDomains: [example.org]',
      ].join('\n'),
      '/etc/keyhold',
    );
    expect(config).toEqual({
      kubernetesIssuers: [
        {
          issuer: 'https://kubernetes.default.svc',
          audiences: ['keyhold'],
          algorithms: ['RS256'],
          jwks: { kind: 'file', path: '/etc/keyhold/jwks.json' },
          caFile: '/var/run/ca.crt',
          bearerTokenFile: undefined,
        },
      ],
      spiffeTrustDomains: ['example.org'],
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reads JSON too', () => {
    const config = parseAuthConfig(
      JSON.stringify({ kubernetes: { issuers: [{ issuer: 'https://a', audiences: ['k'], discovery: true, algorithms: ['ES256'] }] } }),
      '/',
    );
    expect(config.kubernetesIssuers[0]?.jwks).toEqual({ kind: 'discovery' });
    expect(config.kubernetesIssuers[0]?.algorithms).toEqual(['ES256']);
  });

  it.each([
    ['an unknown field', 'kubernetes:\n  issuers: []\n  extra: 1\n', '/kubernetes'],
    ['HS256 as an algorithm', 'kubernetes:\n  issuers:\n    - {issuer: a, audiences: [k], jwksFile: j, algorithms: [HS256]}\n', '/kubernetes/issuers/0/algorithms/0'],
    ['no audience', 'kubernetes:\n  issuers:\n    - {issuer: a, audiences: [], jwksFile: j}\n', '/kubernetes/issuers/0/audiences'],
    ['two key sources', 'kubernetes:\n  issuers:\n    - {issuer: a, audiences: [k], jwksFile: j, discovery: true}\n', 'exactly one of jwksFile, jwksUri and discovery'],
    ['no key source', 'kubernetes:\n  issuers:\n    - {issuer: a, audiences: [k]}\n', 'exactly one of jwksFile, jwksUri and discovery'],
    ['an issuer twice', 'kubernetes:\n  issuers:\n    - {issuer: a, audiences: [k], jwksFile: j}\n    - {issuer: a, audiences: [k], jwksFile: j}\n', 'configured twice'],
    ['an upper-case trust domain', 'spiffe:\n  trustDomains: [Example.org]\n', '/spiffe/trustDomains/0'],
    ['YAML aliases', 'a: &x [1]\nb: *x\n', 'not valid YAML'],
    ['malformed YAML', 'kubernetes: [\n', 'not valid YAML'],
  ])('refuses %s, naming the place', (_label, text, place) => {
    expect(problemOf(text)).toContain(place);
  });

  it('names an unreadable file without echoing its content', () => {
    expect(() => readAuthConfig('/nonexistent/keyhold-auth.yaml')).toThrow(/Cannot read KEYHOLD_AUTH_CONFIG .*ENOENT/);
  });
});
