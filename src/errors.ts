/**
 * Every error the service can answer with, by stable code. The HTTP status lives in the same table, so a code
 * without a status does not compile, and `openapi.yaml` lists exactly these codes.
 */
export const ERROR_CODES = {
  KH_ERR_VALIDATION: { status: 400, title: 'The request is not valid' },
  KH_ERR_DECRYPTION_FAILED: { status: 400, title: 'Decryption failed' },
  KH_ERR_UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  KH_ERR_FORBIDDEN: { status: 403, title: 'Not allowed' },
  KH_ERR_ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  KH_ERR_KEY_NOT_FOUND: { status: 404, title: 'No such key' },
  KH_ERR_KEY_VERSION_NOT_FOUND: { status: 404, title: 'No such key version' },
  KH_ERR_TOKEN_NOT_FOUND: { status: 404, title: 'No such token' },
  KH_ERR_POLICY_NOT_FOUND: { status: 404, title: 'No such policy' },
  KH_ERR_AWS_CREDENTIAL_NOT_FOUND: { status: 404, title: 'No such AWS access key' },
  KH_ERR_KEY_EXISTS: { status: 409, title: 'A key with this name already exists' },
  KH_ERR_TOKEN_EXISTS: { status: 409, title: 'An active token with this name already exists' },
  KH_ERR_AWS_CREDENTIAL_EXISTS: { status: 409, title: 'An active AWS access key with this name already exists' },
  KH_ERR_KEY_DISABLED: { status: 409, title: 'The key is disabled' },
  KH_ERR_KEY_PENDING_DELETION: { status: 409, title: 'The key is pending deletion' },
  KH_ERR_KEY_DESTROYED: { status: 409, title: 'The key is destroyed' },
  KH_ERR_KEY_VERSION_DISABLED: { status: 409, title: 'The key version is disabled' },
  KH_ERR_KEY_VERSION_DESTROYED: { status: 409, title: 'The key version is destroyed' },
  KH_ERR_KEY_VERSION_BELOW_MINIMUM: {
    status: 409,
    title: 'The key version is below the minimum decryption version',
  },
  KH_ERR_POLICY_REVISION_MISMATCH: {
    status: 412,
    title: 'The policy is not at the revision given in If-Match',
  },
  KH_ERR_ILLEGAL_TRANSITION: { status: 409, title: 'The state does not allow this transition' },
  KH_ERR_PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  KH_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The request body must be application/json' },
  KH_ERR_THROTTLED: { status: 429, title: 'Too many requests; retry later' },
  KH_ERR_INTERNAL: { status: 500, title: 'Internal error' },
  KH_ERR_UNAVAILABLE: { status: 503, title: 'The service is temporarily unavailable' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export const ERROR_CODE_LIST = Object.keys(ERROR_CODES) as ErrorCode[];

/** The base of every error the service raises on purpose. Its `message` is safe to show to the caller. */
export class KeyholdError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, detail?: string, options?: ErrorOptions) {
    super(detail ?? ERROR_CODES[code].title, options);
    this.name = 'KeyholdError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
  }
}

/**
 * The one error for every decryption failure: tampering, truncation, a wrong context, an unknown or wrong key.
 * One code and one message, so that the answer is no oracle (RFC 7516 §11.5).
 */
export class DecryptionFailedError extends KeyholdError {
  constructor() {
    super('KH_ERR_DECRYPTION_FAILED', 'The ciphertext could not be decrypted');
    this.name = 'DecryptionFailedError';
  }
}

export class ValidationError extends KeyholdError {
  constructor(detail: string) {
    super('KH_ERR_VALIDATION', detail);
    this.name = 'ValidationError';
  }
}

/** The store cannot be reached. Answered as 503 with `Retry-After`. */
export class UnavailableError extends KeyholdError {
  constructor(detail = 'The database is unavailable; retry later', options?: ErrorOptions) {
    super('KH_ERR_UNAVAILABLE', detail, options);
    this.name = 'UnavailableError';
  }
}

/** A configuration or start-up problem. The process refuses to start and prints the message. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}
