export { createClient } from './client.js';
export type {
  ClientCache,
  ClientEvents,
  ClientOptions,
  DecryptOptions,
  EncryptOptions,
  KeyholdClient,
  Principal,
  RewrapOptions,
} from './client.js';
export { inspectMessage } from './envelope/inspect.js';
export type { MessageInfo } from './envelope/inspect.js';
export { apiToken, kubernetesServiceAccount, spiffeMtls } from './auth/index.js';
export type { AuthProvider, Credentials, TlsIdentity } from './auth/index.js';
export { clientOptionsFromEnv } from './env.js';
export type { CacheOptions, CacheStats } from './cache/data-key-cache.js';
export type { EventsOptions, SubscriptionState, SubscriptionStatus } from './events/subscription.js';
export type { EncryptionContext } from './format/encryption-context.js';
export {
  ClientClosedError,
  ConfigurationError,
  CredentialsError,
  DeadlineExceededError,
  DecryptionError,
  InvalidArgumentError,
  KeyholdSdkError,
  SDK_ERROR_CODES,
  ServiceError,
  ServiceUnavailableError,
} from './errors.js';
export type { SdkErrorCode, ServiceErrorDetails } from './errors.js';
