import type { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AuthenticationFailedError,
  type AuthenticationFailure,
  type Credentials,
} from '../../../src/identity/authenticator.js';
import { SpiffeAuthenticator } from '../../../src/identity/spiffe.js';
import { ManualClock } from '../../helpers/clock.js';
import {
  createCertificateAuthority,
  x509,
  type CertificateAuthority,
  type CertificateProfile,
} from '../../helpers/pki.js';

const WORKLOAD = 'spiffe://example.org/ns/payments/sa/api';
const TRUST_DOMAINS = ['example.org', 'prod.example.com'];
const NODE_VERIFY_ERROR = 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY';

function presenting(leaf: X509Certificate, chainVerified = true): Credentials {
  return {
    bearer: undefined,
    peerCertificate: { leaf, chainVerified, verifyError: chainVerified ? undefined : NODE_VERIFY_ERROR },
  };
}

function failureOf(action: () => unknown): AuthenticationFailure | undefined {
  try {
    action();
  } catch (error) {
    if (error instanceof AuthenticationFailedError) return error.reason;
    throw error;
  }
  return undefined;
}

describe('SpiffeAuthenticator', () => {
  let ca: CertificateAuthority;
  let rsaCa: CertificateAuthority;
  const spiffe = new SpiffeAuthenticator({ trustDomains: TRUST_DOMAINS });
  const issue = (profile: CertificateProfile) => ca.issue(profile).then((issued) => issued.certificate);

  beforeAll(async () => {
    [ca, rsaCa] = await Promise.all([createCertificateAuthority('EC CA'), createCertificateAuthority('RSA CA', 'rsa')]);
  });

  describe('applies', () => {
    it('to credentials with a client certificate, trusted or not', async () => {
      const leaf = await issue({ uris: [WORKLOAD] });
      expect(spiffe.applies(presenting(leaf))).toBe(true);
      expect(spiffe.applies(presenting(leaf, false))).toBe(true);
    });

    it('not to credentials without one, so bearer credentials still work on a TLS connection', () => {
      expect(spiffe.applies({ bearer: 'kh_token', peerCertificate: undefined })).toBe(false);
    });
  });

  describe('accepts', () => {
    it('an EC P-256 SVID, as SPIRE issues by default, as a frozen non-admin principal', async () => {
      const principal = spiffe.authenticate(presenting(await issue({ uris: [WORKLOAD] })));
      expect(principal).toEqual({
        id: WORKLOAD,
        type: 'spiffe',
        admin: false,
        attributes: {
          trustDomain: 'example.org',
          path: '/ns/payments/sa/api',
          namespace: 'payments',
          serviceAccount: 'api',
        },
      });
      expect(Object.isFrozen(principal)).toBe(true);
      expect(Object.isFrozen(principal.attributes)).toBe(true);
    });

    it('an RSA SVID', async () => {
      const leaf = (await rsaCa.issue({ key: 'rsa', uris: ['spiffe://prod.example.com/billing'] })).certificate;
      expect(spiffe.authenticate(presenting(leaf))).toEqual({
        id: 'spiffe://prod.example.com/billing',
        type: 'spiffe',
        admin: false,
        attributes: { trustDomain: 'prod.example.com', path: '/billing' },
      });
    });

    it.each([
      ['/ns/payments/sa/api', { namespace: 'payments', serviceAccount: 'api' }],
      ['/ns/payments/sa/api/extra', {}],
      ['/ns/payments', {}],
      ['/cluster/ns/payments/sa/api', {}],
      ['/NS/payments/SA/api', {}],
      // Kubernetes names only (DNS-1123), as from a service-account token: a namespace never holds `.` or capitals.
      ['/ns/payments.prod/sa/api', {}],
      ['/ns/Payments/sa/api', {}],
      ['/ns/payments_prod/sa/api', {}],
      ['/ns/payments/sa/Api', {}],
      ['/ns/payments/sa/api.v2', { namespace: 'payments', serviceAccount: 'api.v2' }],
    ])('path %s gives namespace and service account only for exactly /ns/X/sa/Y, of Kubernetes names', async (path, extra) => {
      const principal = spiffe.authenticate(presenting(await issue({ uris: [`spiffe://example.org${path}`] })));
      expect(principal.attributes).toEqual({ trustDomain: 'example.org', path, ...extra });
    });

    it('an SVID with DNS and IP SANs beside its one URI (X509-SVID §2)', async () => {
      const leaf = await issue({ uris: [WORKLOAD], dnsNames: ['api.payments.svc'], ips: ['10.0.0.7'] });
      expect(spiffe.authenticate(presenting(leaf)).id).toBe(WORKLOAD);
    });

    it('keyEncipherment and keyAgreement beside digitalSignature (X509-SVID §4.3)', async () => {
      const leaf = await issue({ uris: [WORKLOAD], keyUsage: ['digitalSignature', 'keyEncipherment', 'keyAgreement'] });
      expect(spiffe.authenticate(presenting(leaf)).id).toBe(WORKLOAD);
    });

    it('a leaf without a key usage extension: validation checks only the forbidden bits (X509-SVID §5.2)', async () => {
      expect(spiffe.authenticate(presenting(await issue({ uris: [WORKLOAD], keyUsage: null }))).id).toBe(WORKLOAD);
    });
  });

  describe('refuses', () => {
    it('a certificate whose chain Node did not verify, keeping Node\'s reason as the cause', async () => {
      const leaf = await issue({ uris: [WORKLOAD] });
      const error = (() => {
        try {
          spiffe.authenticate(presenting(leaf, false));
        } catch (caught) {
          return caught as AuthenticationFailedError;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(AuthenticationFailedError);
      expect(error?.reason).toBe('untrusted-certificate');
      expect(error?.cause).toBe(NODE_VERIFY_ERROR);
    });

    it.each<[string, CertificateProfile, AuthenticationFailure]>([
      ['no URI SAN, with a CN that looks like a SPIFFE ID', { subject: `CN=${WORKLOAD}` }, 'bad-svid'],
      ['only DNS SANs', { dnsNames: ['api.payments.svc'] }, 'bad-svid'],
      ['two SPIFFE URI SANs (X509-SVID §2)', { uris: [WORKLOAD, 'spiffe://example.org/other'] }, 'bad-svid'],
      ['a SPIFFE URI SAN and another URI SAN', { uris: [WORKLOAD, 'https://example.org/'] }, 'bad-svid'],
      ['a non-spiffe URI (X509-SVID §5.2)', { uris: ['https://example.org/ns/payments/sa/api'] }, 'bad-svid'],
      ['an uppercase scheme', { uris: ['SPIFFE://example.org/ns/payments/sa/api'] }, 'bad-svid'],
      ['an uppercase trust domain', { uris: ['spiffe://Example.org/ns/payments/sa/api'] }, 'bad-svid'],
      ['a trailing slash', { uris: ['spiffe://example.org/ns/payments/'] }, 'bad-svid'],
      ['a dot-dot segment', { uris: ['spiffe://example.org/ns/../sa/api'] }, 'bad-svid'],
      ['a query', { uris: ['spiffe://example.org/api?admin=true'] }, 'bad-svid'],
      ['a port', { uris: ['spiffe://example.org:443/api'] }, 'bad-svid'],
      ['userinfo', { uris: ['spiffe://admin@example.org/api'] }, 'bad-svid'],
      ['a trust domain ID without a path (X509-SVID §3.1)', { uris: ['spiffe://example.org'] }, 'bad-svid'],
      ['a CA leaf, basicConstraints cA true (X509-SVID §4.1)', { uris: [WORKLOAD], ca: true }, 'bad-svid'],
      ['keyCertSign (X509-SVID §4.3)', { uris: [WORKLOAD], keyUsage: ['digitalSignature', 'keyCertSign'] }, 'bad-svid'],
      ['keyCertSign without digitalSignature', { uris: [WORKLOAD], keyUsage: ['keyCertSign'] }, 'bad-svid'],
      ['cRLSign (X509-SVID §4.3)', { uris: [WORKLOAD], keyUsage: ['digitalSignature', 'cRLSign'] }, 'bad-svid'],
      ['a foreign trust domain', { uris: ['spiffe://other.org/ns/payments/sa/api'] }, 'foreign-trust-domain'],
      ['a subdomain of a trusted domain', { uris: ['spiffe://evil.example.org/api'] }, 'foreign-trust-domain'],
      ['a suffix of a trusted domain', { uris: ['spiffe://example.org.evil/api'] }, 'foreign-trust-domain'],
      ['a foreign CA leaf as a bad SVID first', { uris: ['spiffe://other.org/api'], ca: true }, 'bad-svid'],
      [
        'a duplicate SAN extension',
        {
          uris: [WORKLOAD],
          extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://example.org/b' }])],
        },
        'bad-svid',
      ],
    ])('%s', async (_rule, profile, reason) => {
      const leaf = await issue(profile);
      expect(failureOf(() => spiffe.authenticate(presenting(leaf)))).toBe(reason);
    });

    it('every SVID when no trust domain is configured', async () => {
      const none = new SpiffeAuthenticator({ trustDomains: [] });
      const leaf = await issue({ uris: [WORKLOAD] });
      expect(failureOf(() => none.authenticate(presenting(leaf)))).toBe('foreign-trust-domain');
    });

    it('a certificate that expired after its connection was opened', async () => {
      const leaf = await issue({ uris: [WORKLOAD] });
      const notAfter = Date.parse(leaf.validTo);
      const clock = new ManualClock(notAfter - 60_000);
      const authenticator = new SpiffeAuthenticator({ trustDomains: TRUST_DOMAINS, clock });
      expect(authenticator.authenticate(presenting(leaf)).id).toBe(WORKLOAD);
      clock.advance(120_000);
      expect(failureOf(() => authenticator.authenticate(presenting(leaf)))).toBe('expired');
    });
  });

  describe('per certificate', () => {
    it('answers every request on a connection with the same principal object, synchronously', async () => {
      const authenticator = new SpiffeAuthenticator({ trustDomains: TRUST_DOMAINS });
      const leaf = await issue({ uris: [WORKLOAD] });
      const first = authenticator.authenticate(presenting(leaf));
      expect(first).not.toBeInstanceOf(Promise);
      expect(authenticator.authenticate(presenting(leaf))).toBe(first);
    });

    it('still checks the chain verdict on every request', async () => {
      const authenticator = new SpiffeAuthenticator({ trustDomains: TRUST_DOMAINS });
      const leaf = await issue({ uris: [WORKLOAD] });
      authenticator.authenticate(presenting(leaf));
      expect(failureOf(() => authenticator.authenticate(presenting(leaf, false)))).toBe('untrusted-certificate');
    });

    it('refuses a bad SVID again on the next request', async () => {
      const authenticator = new SpiffeAuthenticator({ trustDomains: TRUST_DOMAINS });
      const leaf = await issue({ uris: [WORKLOAD], ca: true });
      expect(failureOf(() => authenticator.authenticate(presenting(leaf)))).toBe('bad-svid');
      expect(failureOf(() => authenticator.authenticate(presenting(leaf)))).toBe('bad-svid');
    });
  });
});
