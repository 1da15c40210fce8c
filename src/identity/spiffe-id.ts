import type { Principal } from '../context/principal.js';
import { isNamespaceName, isSubdomainName } from './kubernetes-names.js';

/** A SPIFFE ID split into its parts. `id` is the text exactly as presented; it is already in canonical form. */
export interface SpiffeId {
  readonly id: string;
  /** The authority component (SPIFFE-ID §2.1). */
  readonly trustDomain: string;
  /** `''` for a trust domain ID, else `/segment/…` (SPIFFE-ID §2.2). */
  readonly path: string;
}

/** SPIFFE-ID §2.3: implementations must support 2048 bytes and should not issue longer; we accept no longer. */
export const MAX_SPIFFE_ID_LENGTH = 2048;
/** SPIFFE-ID §2.3: the host component of a URI is at most 255 bytes (RFC 3986). */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const SCHEME = 'spiffe://';
// SPIFFE-ID §2.1: lowercase letters, digits, dots, dashes and underscores. That one character class also excludes
// userinfo (`@`), a port (`:`), percent-encoding (`%`) and IPv6 literals (`[`).
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
// SPIFFE-ID §2.2: letters, digits, dots, dashes and underscores; no percent-encoding, so `?` and `#` (a query or
// a fragment, §2) cannot appear either.
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * Parses a SPIFFE ID by the rules of the SPIFFE-ID specification §2, or returns undefined. It is strict where the
 * specification lets parsers be lenient (§2.4 calls the scheme and trust domain case-insensitive, but §2.1 requires
 * a lowercase trust domain): `SPIFFE://` and uppercase trust domains are refused, as go-spiffe refuses them, so one
 * workload has exactly one spelling and policies can compare IDs as strings.
 */
export function parseSpiffeId(text: string): SpiffeId | undefined {
  if (text.length > MAX_SPIFFE_ID_LENGTH || !text.startsWith(SCHEME)) return undefined;
  const rest = text.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (trustDomain.length > MAX_TRUST_DOMAIN_LENGTH || !TRUST_DOMAIN.test(trustDomain)) return undefined;
  if (path !== '') {
    // SPIFFE-ID §2.2: no empty segments (which covers `//` and a trailing `/`), no `.` or `..`.
    for (const segment of path.slice(1).split('/')) {
      if (!SEGMENT.test(segment) || segment === '.' || segment === '..') return undefined;
    }
  }
  return Object.freeze({ id: text, trustDomain, path });
}

/** The Kubernetes convention for SPIFFE paths (SPIFFE-ID §2.2), which SPIRE's k8s workload registrar follows. */
const KUBERNETES_PATH = /^\/ns\/([^/]+)\/sa\/([^/]+)$/;

/**
 * The principal a SPIFFE ID names: `trustDomain` and `path`, and `namespace`/`serviceAccount` for a `/ns/X/sa/Y` path
 * of Kubernetes names. Never an admin. The SVID authenticator and AWS access keys bound to a SPIFFE ID both use it,
 * so a policy sees the same attributes either way.
 */
export function spiffePrincipal(id: SpiffeId): Principal {
  const kubernetes = KUBERNETES_PATH.exec(id.path);
  const attributes: Record<string, string> = { trustDomain: id.trustDomain, path: id.path };
  const [, namespace, serviceAccount] = kubernetes ?? [];
  // Only Kubernetes names, as the service-account authenticator gives: a SPIFFE segment may hold `.` and capitals,
  // and a namespace `payments.prod` would fall inside the `payments.*` keys of namespace `payments`.
  if (namespace !== undefined && serviceAccount !== undefined && isNamespaceName(namespace) && isSubdomainName(serviceAccount)) {
    attributes.namespace = namespace;
    attributes.serviceAccount = serviceAccount;
  }
  return Object.freeze({ id: id.id, type: 'spiffe', admin: false, attributes: Object.freeze(attributes) });
}
