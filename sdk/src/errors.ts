/**
 * Every error the SDK throws on purpose, by stable code. Callers branch on `code` (or `instanceof`), never on
 * `message`. No message ever holds plaintext, key material or a credential.
 */
export const SDK_ERROR_CODES = {
  /** Any failure to decrypt a message: tampered, truncated, wrong context, wrong or unknown key. */
  KH_SDK_DECRYPTION_FAILED: 'The message could not be decrypted',
  /** The caller passed an argument the SDK refuses (an unknown key name shape, a non-string context value…). */
  KH_SDK_INVALID_ARGUMENT: 'An argument is not valid',
  /** The client options, or the environment they were read from, are not valid. */
  KH_SDK_CONFIGURATION: 'The client configuration is not valid',
  /** A credential (token file, certificate, key) could not be read. */
  KH_SDK_CREDENTIALS: 'The workload credential could not be read',
  /** The service refused the caller's credential (401). */
  KH_SDK_UNAUTHENTICATED: 'The service did not accept the credential',
  /** The service's policies do not let this workload do this (403). */
  KH_SDK_ACCESS_DENIED: 'The service denied the request',
  /** The key, or the key version, is disabled, pending deletion or destroyed (409). */
  KH_SDK_KEY_STATE: 'The key does not allow this operation in its current state',
  /** The key does not exist (404). */
  KH_SDK_KEY_NOT_FOUND: 'The key does not exist',
  /** Any other answer from the service that retrying will not change (4xx). */
  KH_SDK_SERVICE_ERROR: 'The service refused the request',
  /** The service stayed unavailable (5xx, 429 or network errors) through every retry. */
  KH_SDK_SERVICE_UNAVAILABLE: 'The service is unavailable',
  /** The call's deadline passed. */
  KH_SDK_DEADLINE_EXCEEDED: 'The call did not finish before its deadline',
  /** The client was closed. */
  KH_SDK_CLIENT_CLOSED: 'The client is closed',
} as const;

/** A stable error code of the SDK. */
export type SdkErrorCode = keyof typeof SDK_ERROR_CODES;

/** The base of every error the SDK throws on purpose. */
export class KeyholdSdkError extends Error {
  /** The stable code of this error. */
  readonly code: SdkErrorCode;

  constructor(code: SdkErrorCode, message: string = SDK_ERROR_CODES[code], options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeyholdSdkError';
    this.code = code;
  }
}

/**
 * The one error for every decryption failure, with one fixed message, so that no caller (and no log an attacker
 * can read) learns which check failed (RFC 7516 §11.5). It never carries a cause.
 */
export class DecryptionError extends KeyholdSdkError {
  constructor() {
    super('KH_SDK_DECRYPTION_FAILED');
    this.name = 'DecryptionError';
  }
}

/** An argument the SDK refuses. The message names the argument, never its value. */
export class InvalidArgumentError extends KeyholdSdkError {
  constructor(message: string) {
    super('KH_SDK_INVALID_ARGUMENT', message);
    this.name = 'InvalidArgumentError';
  }
}

/** The client options or the environment are not valid. */
export class ConfigurationError extends KeyholdSdkError {
  constructor(message: string, options?: ErrorOptions) {
    super('KH_SDK_CONFIGURATION', message, options);
    this.name = 'ConfigurationError';
  }
}

/** A credential file could not be read. The message names the path, never the content. */
export class CredentialsError extends KeyholdSdkError {
  constructor(message: string, options?: ErrorOptions) {
    super('KH_SDK_CREDENTIALS', message, options);
    this.name = 'CredentialsError';
  }
}

/** What the service said, as far as it is safe to repeat. */
export interface ServiceErrorDetails {
  /** The HTTP status. */
  readonly status: number;
  /** The service's stable code (`KH_ERR_…`), when the answer was problem+json. */
  readonly serviceCode?: string;
  /** The service's request id, to find the request in its logs and audit trail. */
  readonly requestId?: string;
  /** The problem document's `detail`, which says why (the action and key a 403 refused, the field a 400 names). */
  readonly detail?: string;
}

/**
 * The service answered with an error. `status`, `serviceCode` and `requestId` say which, and `detail` (also at the
 * end of the message) why.
 */
export class ServiceError extends KeyholdSdkError {
  /** The HTTP status. */
  readonly status: number;
  /** The service's stable code (`KH_ERR_…`), when the answer was problem+json. */
  readonly serviceCode: string | undefined;
  /** The service's request id. */
  readonly requestId: string | undefined;
  /** The service's own explanation (the problem document's `detail`), when the answer was one of its problems. */
  readonly detail: string | undefined;

  constructor(code: SdkErrorCode, details: ServiceErrorDetails, message?: string, options?: ErrorOptions) {
    super(code, message ?? defaultServiceMessage(code, details), options);
    this.name = 'ServiceError';
    this.status = details.status;
    this.serviceCode = details.serviceCode;
    this.requestId = details.requestId;
    this.detail = details.detail;
  }
}

function defaultServiceMessage(code: SdkErrorCode, details: ServiceErrorDetails): string {
  const summary = `${SDK_ERROR_CODES[code]} (HTTP ${details.status}${details.serviceCode ? ` ${details.serviceCode}` : ''})`;
  return details.detail === undefined ? summary : `${summary}: ${details.detail}`;
}

/** The service stayed unavailable through every retry; `cause` holds the last failure. */
export class ServiceUnavailableError extends KeyholdSdkError {
  /** How many attempts were made. */
  readonly attempts: number;

  constructor(attempts: number, options?: ErrorOptions) {
    super('KH_SDK_SERVICE_UNAVAILABLE', `The service is unavailable (${attempts} attempt${attempts === 1 ? '' : 's'})`, options);
    this.name = 'ServiceUnavailableError';
    this.attempts = attempts;
  }
}

/** The call's deadline passed; `cause` holds the last failure, if any. */
export class DeadlineExceededError extends KeyholdSdkError {
  constructor(timeoutMs: number, options?: ErrorOptions) {
    super('KH_SDK_DEADLINE_EXCEEDED', `The call did not finish within ${timeoutMs} ms`, options);
    this.name = 'DeadlineExceededError';
  }
}

/** The client was closed before or during the call. */
export class ClientClosedError extends KeyholdSdkError {
  constructor() {
    super('KH_SDK_CLIENT_CLOSED');
    this.name = 'ClientClosedError';
  }
}

/** Maps a service error status and code to the SDK code callers branch on. */
export function sdkCodeForService(status: number, serviceCode: string | undefined): SdkErrorCode {
  if (status === 401) return 'KH_SDK_UNAUTHENTICATED';
  if (status === 403) return 'KH_SDK_ACCESS_DENIED';
  if (serviceCode === 'KH_ERR_KEY_NOT_FOUND') return 'KH_SDK_KEY_NOT_FOUND';
  if (status === 409 && serviceCode !== undefined && /^KH_ERR_KEY_(VERSION_)?(DISABLED|DESTROYED|PENDING_DELETION|BELOW_MINIMUM)$/.test(serviceCode)) {
    return 'KH_SDK_KEY_STATE';
  }
  return 'KH_SDK_SERVICE_ERROR';
}
