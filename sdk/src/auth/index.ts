/**
 * How a workload proves its identity to Keyhold: an API token, a Kubernetes projected service-account token, or a
 * SPIFFE X509-SVID over mutual TLS. Each provider re-reads rotated credentials on its own.
 */
export type { AuthProvider, Credentials, TlsIdentity } from './auth-provider.js';
export { apiToken } from './api-token.js';
export { DEFAULT_KUBERNETES_TOKEN_PATH, kubernetesServiceAccount, type KubernetesServiceAccountOptions } from './kubernetes.js';
export { spiffeMtls, type SpiffeMtlsOptions } from './spiffe.js';
