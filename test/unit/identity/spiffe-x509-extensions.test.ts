import { beforeAll, describe, expect, it } from 'vitest';
import { MalformedCertificateError, readCertificateExtensions } from '../../../src/identity/x509-extensions.js';
import { createCertificateAuthority, x509, type CertificateAuthority } from '../../helpers/pki.js';

const SAN = '2.5.29.17';

describe('readCertificateExtensions (RFC 5280 §4.2, read from the DER)', () => {
  let ec: CertificateAuthority;
  let rsa: CertificateAuthority;
  beforeAll(async () => {
    [ec, rsa] = await Promise.all([createCertificateAuthority('EC CA'), createCertificateAuthority('RSA CA', 'rsa')]);
  });

  it('reads the URIs of an EC certificate in order, skipping other name forms', async () => {
    const leaf = await ec.issue({
      uris: ['spiffe://example.org/a', 'https://example.org/b'],
      dnsNames: ['api.example.org'],
      ips: ['10.0.0.1'],
    });
    const { uris } = readCertificateExtensions(leaf.certificate.raw);
    expect(uris).toEqual(['spiffe://example.org/a', 'https://example.org/b']);
  });

  it('reads an RSA certificate the same way', async () => {
    const leaf = await rsa.issue({ key: 'rsa', uris: ['spiffe://example.org/a'] });
    expect(readCertificateExtensions(leaf.certificate.raw)).toEqual({
      uris: ['spiffe://example.org/a'],
      ca: false,
      keyUsage: new Set(['digitalSignature']),
    });
  });

  it('a certificate without a SAN has no URIs, and a CN is not one', async () => {
    const leaf = await ec.issue({ subject: 'CN=spiffe://example.org/a' });
    expect(readCertificateExtensions(leaf.certificate.raw).uris).toEqual([]);
  });

  it('reads the cA flag of the basic constraints', async () => {
    expect(readCertificateExtensions(ec.certificate.raw).ca).toBe(true);
    expect(readCertificateExtensions((await ec.issue({ ca: true })).certificate.raw).ca).toBe(true);
    expect(readCertificateExtensions((await ec.issue({ ca: false })).certificate.raw).ca).toBe(false);
  });

  it('reads every key usage bit, including the ninth (decipherOnly) in the second octet', async () => {
    const all = ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement',
      'keyCertSign', 'cRLSign', 'encipherOnly', 'decipherOnly'] as const;
    for (const usage of all) {
      const leaf = await ec.issue({ keyUsage: [usage] });
      expect(readCertificateExtensions(leaf.certificate.raw).keyUsage).toEqual(new Set([usage]));
    }
  });

  it('reads a key usage whose bits fill the first octet (BIT STRING content is never parsed as ASN.1)', async () => {
    const leaf = await ec.issue({ keyUsage: ['digitalSignature', 'keyCertSign', 'cRLSign', 'encipherOnly'] });
    expect(readCertificateExtensions(leaf.certificate.raw).keyUsage).toEqual(
      new Set(['digitalSignature', 'keyCertSign', 'cRLSign', 'encipherOnly']),
    );
  });

  it('an absent key usage extension reads as undefined, not as an empty set', async () => {
    const leaf = await ec.issue({ keyUsage: null });
    expect(readCertificateExtensions(leaf.certificate.raw).keyUsage).toBeUndefined();
  });

  it('refuses an extension that appears twice (RFC 5280 §4.2)', async () => {
    const leaf = await ec.issue({
      uris: ['spiffe://example.org/a'],
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://example.org/b' }])],
    });
    expect(() => readCertificateExtensions(leaf.certificate.raw)).toThrow(MalformedCertificateError);
  });

  it('refuses a SAN whose value is not DER', async () => {
    const leaf = await ec.issue({ extensions: [new x509.Extension(SAN, false, new Uint8Array([0x30, 0x05, 0x86]))] });
    expect(() => readCertificateExtensions(leaf.certificate.raw)).toThrow(MalformedCertificateError);
  });

  it('refuses an empty SAN (GeneralNames is SIZE (1..MAX))', async () => {
    const leaf = await ec.issue({ extensions: [new x509.Extension(SAN, false, new Uint8Array([0x30, 0x00]))] });
    expect(() => readCertificateExtensions(leaf.certificate.raw)).toThrow(MalformedCertificateError);
  });

  it('refuses a URI name that is not seven-bit IA5String', async () => {
    const uri = Buffer.from('spiffe://example.org/caf\u00e9', 'latin1');
    const value = Buffer.concat([Buffer.from([0x30, uri.length + 2, 0x86, uri.length]), uri]);
    const leaf = await ec.issue({ extensions: [new x509.Extension(SAN, false, value)] });
    expect(() => readCertificateExtensions(leaf.certificate.raw)).toThrow(MalformedCertificateError);
  });

  it('refuses truncated DER and trailing bytes', async () => {
    const raw = (await ec.issue({ uris: ['spiffe://example.org/a'] })).certificate.raw;
    expect(() => readCertificateExtensions(raw.subarray(0, raw.length - 1))).toThrow(MalformedCertificateError);
    expect(() => readCertificateExtensions(Buffer.concat([raw, Buffer.from([0])]))).toThrow(MalformedCertificateError);
  });

  it('refuses DER that is not a certificate', () => {
    expect(() => readCertificateExtensions(Buffer.from([0x02, 0x01, 0x00]))).toThrow(MalformedCertificateError);
    expect(() => readCertificateExtensions(Buffer.from([0x30, 0x00]))).toThrow(MalformedCertificateError);
  });
});
