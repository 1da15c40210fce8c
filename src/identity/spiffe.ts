import type { X509Certificate } from 'node:crypto';
import { systemClock, type Clock } from '../lib/clock.js';
import {
  AuthenticationFailedError,
  type AuthenticationFailure,
  type Authenticator,
  type Credentials,
} from './authenticator.js';
import type { Principal } from '../context/principal.js';
import { parseSpiffeId, spiffePrincipal, type SpiffeId } from './spiffe-id.js';
import { readCertificateExtensions, type CertificateExtensions } from './x509-extensions.js';

export interface SpiffeAuthenticatorOptions {
  /** SVIDs are accepted only from these trust domains; with none, every SVID is refused. */
  readonly trustDomains: readonly string[];
  /** Decides whether a certificate has expired since its connection was opened. Defaults to the system clock. */
  readonly clock?: Clock;
}

/** What a leaf certificate is found to be, once per certificate. */
type Verdict =
  | { readonly principal: Principal; readonly notAfter: number }
  | { readonly failure: AuthenticationFailure };

const BAD_SVID: Verdict = Object.freeze({ failure: 'bad-svid' });

/**
 * The leaf rules of X509-SVID §5.2 and §2 that the TLS stack does not check. Returns the SPIFFE ID, or undefined
 * when the certificate is not a leaf SVID. The subject (its CN in particular) is never read: an identity comes only
 * from the URI SAN.
 */
function leafSpiffeId(leaf: X509Certificate, extensions: CertificateExtensions): SpiffeId | undefined {
  // X509-SVID §2 and §5.2: exactly one URI SAN; validators must reject an SVID with more than one.
  const [uri, ...others] = extensions.uris;
  if (uri === undefined || others.length > 0) return undefined;
  // X509-SVID §5.2: the scheme is `spiffe`; SPIFFE-ID §2: the rest is a well-formed ID.
  const id = parseSpiffeId(uri);
  // X509-SVID §3.1 and §5.2: a leaf SVID has a non-root path; a bare trust domain ID names a signing authority.
  if (id === undefined || id.path === '') return undefined;
  // X509-SVID §4.1 and §5.2: a leaf has cA false. OpenSSL's reading (`leaf.ca`) counts too: either parser calling
  // the certificate a CA is enough to refuse it.
  if (extensions.ca || leaf.ca) return undefined;
  // X509-SVID §4.3 and §5.2: a leaf must not set keyCertSign or cRLSign.
  const usage = extensions.keyUsage;
  if (usage !== undefined && (usage.has('keyCertSign') || usage.has('cRLSign'))) return undefined;
  // OpenSSL, which verified the chain, must read the same single URI from the SAN as forge did, so a difference
  // between the two DER parsers cannot lend a certificate an identity. Node quotes names that contain separators,
  // so a split that finds more than one URI entry means something odd and is refused.
  const uriEntries = (leaf.subjectAltName ?? '').split(', ').filter((entry) => entry.startsWith('URI:'));
  if (uriEntries.length !== 1 || uriEntries[0] !== `URI:${id.id}`) return undefined;
  return id;
}

/**
 * X.509 SVIDs (SPIFFE X509-SVID) presented as TLS client certificates. Path validation (X509-SVID §5.1) is Node's:
 * the TLS stack verifies the chain against `KEYHOLD_TLS_CLIENT_CA_FILE`, for RSA and ECDSA alike, and this
 * authenticator refuses anything it did not verify. It then applies the leaf rules of §5.2, which no TLS stack
 * knows, and accepts only the configured trust domains. Workload principals are never admins.
 *
 * The verdict is kept per certificate object, which the HTTP layer reuses for every request on a connection, so
 * keep-alive requests are answered synchronously from memory. Only expiry is checked again on each request: SVIDs
 * are short-lived in place of revocation, and a connection may outlive the certificate it was opened with.
 */
export class SpiffeAuthenticator implements Authenticator {
  readonly #trustDomains: ReadonlySet<string>;
  readonly #clock: Clock;
  readonly #verdicts = new WeakMap<X509Certificate, Verdict>();

  constructor(options: SpiffeAuthenticatorOptions) {
    this.#trustDomains = new Set(options.trustDomains);
    this.#clock = options.clock ?? systemClock;
  }

  /** A client certificate was presented, trusted or not; a connection without one is left to bearer credentials. */
  applies(credentials: Credentials): boolean {
    return credentials.peerCertificate !== undefined;
  }

  authenticate(credentials: Credentials): Principal {
    const peer = credentials.peerCertificate;
    if (peer === undefined) throw new AuthenticationFailedError('missing');
    // An unknown CA, an expired or not yet valid certificate, a bad signature: Node's reason goes to the cause only.
    if (!peer.chainVerified) throw new AuthenticationFailedError('untrusted-certificate', { cause: peer.verifyError });
    let verdict = this.#verdicts.get(peer.leaf);
    if (verdict === undefined) {
      verdict = this.#judge(peer.leaf);
      this.#verdicts.set(peer.leaf, verdict);
    }
    if ('failure' in verdict) throw new AuthenticationFailedError(verdict.failure);
    if (this.#clock.now().getTime() > verdict.notAfter) throw new AuthenticationFailedError('expired');
    return verdict.principal;
  }

  #judge(leaf: X509Certificate): Verdict {
    let extensions: CertificateExtensions;
    try {
      extensions = readCertificateExtensions(leaf.raw);
    } catch {
      return BAD_SVID;
    }
    const id = leafSpiffeId(leaf, extensions);
    if (id === undefined) return BAD_SVID;
    // X509-SVID §5.1 leaves the bundle to the deployment: the client CA file may hold several trust domains' roots,
    // and only the configured ones are accepted.
    if (!this.#trustDomains.has(id.trustDomain)) return Object.freeze({ failure: 'foreign-trust-domain' });
    const notAfter = Date.parse(leaf.validTo);
    if (Number.isNaN(notAfter)) return Object.freeze({ failure: 'untrusted-certificate' });
    return Object.freeze({ principal: spiffePrincipal(id), notAfter });
  }
}
