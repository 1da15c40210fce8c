import { ValidationError } from '../errors.js';
import type { Principal } from '../context/principal.js';
import { isNamespaceName, isSubdomainName } from '../identity/kubernetes-names.js';
import { parseSpiffeId, spiffePrincipal } from '../identity/spiffe-id.js';
import type { BoundPrincipal } from './aws-credential-repository.js';

/**
 * Attributes a key does not inherit from its caller: those of one pod, which do not outlive it as the key does, and
 * the credential the caller presented (an API token's id, the access key a SigV4 caller signed with), which names
 * that credential and not the new key: records and policies must never take the key for a token that may be revoked.
 */
const NOT_BOUND_ATTRIBUTES: ReadonlySet<string> = new Set(['podName', 'podUid', 'tokenId', 'accessKeyId']);

/** As API token names are (http/schemas/tokens.ts): the `NAME` of a `token:NAME` principal. */
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The caller's own principal as an access key binds it: everything it was vouched for but the per-pod attributes. */
export function boundToCaller(principal: Principal): BoundPrincipal {
  const attributes = Object.fromEntries(Object.entries(principal.attributes).filter(([name]) => !NOT_BOUND_ATTRIBUTES.has(name)));
  return Object.freeze({ id: principal.id, type: principal.type, attributes: Object.freeze(attributes) });
}

/**
 * The principal an id names, with the attributes its authenticator would vouch for that the id alone can tell:
 * `k8s:NAMESPACE:SERVICEACCOUNT` (namespace, serviceAccount), a SPIFFE ID (as the SVID authenticator derives them),
 * `token:NAME` (tokenName). Anything else is a 400.
 */
export function parsePrincipalId(id: string): BoundPrincipal {
  if (id.startsWith('k8s:')) {
    const [namespace, serviceAccount, ...rest] = id.slice('k8s:'.length).split(':');
    if (namespace !== undefined && serviceAccount !== undefined && rest.length === 0 && isNamespaceName(namespace) && isSubdomainName(serviceAccount)) {
      return Object.freeze({ id, type: 'kubernetes', attributes: Object.freeze({ namespace, serviceAccount }) });
    }
    throw new ValidationError('principal: k8s:NAMESPACE:SERVICEACCOUNT needs Kubernetes names');
  }
  if (id.startsWith('spiffe://')) {
    const spiffeId = parseSpiffeId(id);
    if (spiffeId === undefined) throw new ValidationError('principal: not a valid SPIFFE ID');
    const { type, attributes } = spiffePrincipal(spiffeId);
    return Object.freeze({ id, type, attributes });
  }
  if (id.startsWith('token:')) {
    const tokenName = id.slice('token:'.length);
    if (TOKEN_NAME.test(tokenName)) return Object.freeze({ id, type: 'token', attributes: Object.freeze({ tokenName }) });
    throw new ValidationError('principal: token:NAME needs a token name');
  }
  throw new ValidationError('principal must be k8s:NAMESPACE:SERVICEACCOUNT, a SPIFFE ID or token:NAME');
}
