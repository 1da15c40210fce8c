// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A test PKI, generated at test time and never committed. ECDSA P-256 is what SPIRE issues by default; RSA is there
 * because other issuers (cert-manager's csi-driver-spiffe, hand-made CAs) use it. Certificates are made with
 * @peculiar/x509 over Node's WebCrypto: pure JavaScript, no openssl binary, and unlike node-forge it does EC.
 */
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** Re-exported so that tests load it through this module, after the polyfill. */
export { x509 };

export type KeyAlgorithm = 'ec' | 'rsa';

const ALGORITHMS = {
  ec: { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
  rsa: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
} as const;

export type KeyUsageName = keyof typeof x509.KeyUsageFlags;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** A certificate with its private key, as PEM for TLS options and as Node's parsed certificate. */
export interface IssuedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly certificate: X509Certificate;
}

/** What goes into a certificate. Each test states only what differs from a well-formed leaf SVID. */
export interface CertificateProfile {
  /** A distinguished name such as `CN=payments`; default `O=Keyhold tests`. */
  readonly subject?: string;
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  /** The basic constraints `cA` flag; default false. */
  readonly ca?: boolean;
  /** Key usage bits; `null` leaves the extension out. Default `digitalSignature`. */
  readonly keyUsage?: readonly KeyUsageName[] | null;
  /** Default: clientAuth and serverAuth, as X509-SVID §4.4 asks of leaf SVIDs. */
  readonly extendedKeyUsage?: readonly string[];
  /** Default: an hour ago. */
  readonly notBefore?: Date;
  /** Default: a day from now. */
  readonly notAfter?: Date;
  readonly key?: KeyAlgorithm;
  /** Added after the usual ones, as given: for duplicate or malformed extensions. */
  readonly extensions?: readonly x509.Extension[];
}

/** A certificate authority that issues test certificates. */
export interface CertificateAuthority extends IssuedCertificate {
  issue(profile?: CertificateProfile): Promise<IssuedCertificate>;
}

async function generateKeys(algorithm: KeyAlgorithm): Promise<webcrypto.CryptoKeyPair> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHMS[algorithm], true, ['sign', 'verify']);
  return keys as webcrypto.CryptoKeyPair;
}

function keyPem(keys: webcrypto.CryptoKeyPair): string {
  return KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
}

function keyUsageFlags(names: readonly KeyUsageName[]): number {
  return names.reduce((flags, name) => flags | x509.KeyUsageFlags[name], 0);
}

function issued(certificate: x509.X509Certificate, keys: webcrypto.CryptoKeyPair): IssuedCertificate {
  const certPem = certificate.toString('pem');
  return { certPem, keyPem: keyPem(keys), certificate: new X509Certificate(certPem) };
}

function serialNumber(): string {
  // Positive (top bit clear) and never zero, as RFC 5280 §4.1.2.2 asks.
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] as number) & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** A self-signed root: cA true, keyCertSign and cRLSign, as X509-SVID §4.1 and §4.3 ask of signing certificates. */
export async function createCertificateAuthority(
  name = 'Keyhold test CA',
  key: KeyAlgorithm = 'ec',
  trustDomain?: string,
): Promise<CertificateAuthority> {
  const keys = await generateKeys(key);
  const now = Date.now();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  // X509-SVID §3.2: a signing certificate's own SPIFFE ID, if any, has no path.
  if (trustDomain !== undefined) {
    extensions.push(new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]));
  }
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${name}`,
    notBefore: new Date(now - HOUR_MS),
    notAfter: new Date(now + 30 * DAY_MS),
    keys,
    signingAlgorithm: ALGORITHMS[key],
    extensions,
  });
  const authority = issued(root, keys);
  return {
    ...authority,
    async issue(profile: CertificateProfile = {}): Promise<IssuedCertificate> {
      const leafKeys = await generateKeys(profile.key ?? 'ec');
      const names: x509.JsonGeneralName[] = [
        ...(profile.uris ?? []).map((value) => ({ type: 'url' as const, value })),
        ...(profile.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
        ...(profile.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
      ];
      const leafExtensions: x509.Extension[] = [
        new x509.BasicConstraintsExtension(profile.ca ?? false, undefined, true),
        new x509.ExtendedKeyUsageExtension([
          ...(profile.extendedKeyUsage ?? [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth]),
        ]),
        await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(root),
      ];
      const keyUsage = profile.keyUsage === undefined ? ['digitalSignature' as const] : profile.keyUsage;
      if (keyUsage !== null) leafExtensions.push(new x509.KeyUsagesExtension(keyUsageFlags(keyUsage), true));
      // RFC 5280 §4.1.2.6: with an empty subject the SAN must be critical; SPIRE's SVIDs carry a subject anyway.
      const critical = profile.subject === '';
      if (names.length > 0) leafExtensions.push(new x509.SubjectAlternativeNameExtension(names, critical));
      leafExtensions.push(...(profile.extensions ?? []));
      const now = Date.now();
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serialNumber(),
        subject: profile.subject ?? 'O=Keyhold tests',
        issuer: root.subject,
        notBefore: profile.notBefore ?? new Date(now - HOUR_MS),
        notAfter: profile.notAfter ?? new Date(now + DAY_MS),
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: ALGORITHMS[key],
        extensions: leafExtensions,
      });
      return issued(leaf, leafKeys);
    },
  };
}

/** Validity that ended yesterday, for expired certificates. */
export function expiredValidity(): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - 2 * DAY_MS), notAfter: new Date(now - DAY_MS) };
}

/** A temporary folder for PEM files and config documents; `remove()` deletes it. */
export class PemDirectory {
  readonly path = mkdtempSync(join(tmpdir(), 'keyhold-pki-'));

  /** Writes `content` (PEM blocks are joined with newlines, so a CA bundle is a list) and returns the file path. */
  write(name: string, ...content: string[]): string {
    const file = join(this.path, name);
    writeFileSync(file, content.join('\n'), { mode: 0o600 });
    return file;
  }

  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}
