/**
 * Kubernetes object names: a namespace is a DNS-1123 label (lower-case alphanumerics and `-`, at most 63), a
 * service account a DNS-1123 subdomain (labels joined by `.`, at most 253). Both authenticators hold the
 * `namespace` and `serviceAccount` attributes to these rules, so a namespace never contains `.`, and policies may
 * use `.` to end one in a key glob (`${principal.namespace}.*`).
 */
export const DNS_LABEL = '[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?';
export const MAX_SUBDOMAIN_LENGTH = 253;

const NAMESPACE = new RegExp(`^${DNS_LABEL}$`);
const SUBDOMAIN = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*$`);

export function isNamespaceName(name: string): boolean {
  return NAMESPACE.test(name);
}

/** A DNS-1123 subdomain: a service account or pod name. */
export function isSubdomainName(name: string): boolean {
  return name.length <= MAX_SUBDOMAIN_LENGTH && SUBDOMAIN.test(name);
}
