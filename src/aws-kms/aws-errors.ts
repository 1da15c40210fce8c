import { KeyholdError, type ErrorCode } from '../errors.js';

/**
 * The exception names of the AWS KMS model that the endpoint answers with, so that AWS SDKs raise their typed errors
 * and retry as they would against AWS. All are HTTP 400 but the last two, as in AWS's model.
 */
export const AWS_EXCEPTIONS = {
  AccessDeniedException: 400,
  AlreadyExistsException: 400,
  DisabledException: 400,
  IncorrectKeyException: 400,
  IncompleteSignatureException: 400,
  InvalidCiphertextException: 400,
  InvalidMarkerException: 400,
  InvalidSignatureException: 400,
  KMSInvalidStateException: 400,
  MissingAuthenticationTokenException: 400,
  NotFoundException: 400,
  SerializationException: 400,
  ThrottlingException: 400,
  UnknownOperationException: 400,
  UnrecognizedClientException: 400,
  UnsupportedOperationException: 400,
  ValidationException: 400,
  KMSInternalException: 500,
  DependencyTimeoutException: 503,
} as const satisfies Record<string, number>;

export type AwsExceptionName = keyof typeof AWS_EXCEPTIONS;

/**
 * An error the endpoint raises in AWS's terms: its exception name for the caller, and the Keyhold code its audit
 * record and metrics carry, so an AWS-style denial is found with the native ones (`KH_ERR_FORBIDDEN`).
 */
export class AwsKmsError extends KeyholdError {
  readonly awsType: AwsExceptionName;

  constructor(awsType: AwsExceptionName, code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'AwsKmsError';
    this.awsType = awsType;
  }
}

/** A refused signature or access key: `reason` goes to the audit record's decision reason, never to the caller. */
export class AwsAuthenticationError extends AwsKmsError {
  readonly reason: string;

  constructor(awsType: AwsExceptionName, reason: string, message: string) {
    super(awsType, 'KH_ERR_UNAUTHENTICATED', message);
    this.name = 'AwsAuthenticationError';
    this.reason = reason;
  }
}

/** The AWS exception for each Keyhold error the key services raise. */
const BY_CODE: Partial<Record<ErrorCode, AwsExceptionName>> = {
  KH_ERR_VALIDATION: 'ValidationException',
  KH_ERR_DECRYPTION_FAILED: 'InvalidCiphertextException',
  KH_ERR_UNAUTHENTICATED: 'UnrecognizedClientException',
  KH_ERR_FORBIDDEN: 'AccessDeniedException',
  KH_ERR_KEY_NOT_FOUND: 'NotFoundException',
  KH_ERR_KEY_VERSION_NOT_FOUND: 'NotFoundException',
  KH_ERR_KEY_EXISTS: 'AlreadyExistsException',
  KH_ERR_KEY_DISABLED: 'DisabledException',
  // AWS has no disabled or destroyed key version; a ciphertext under one fails as an unusable key would.
  KH_ERR_KEY_VERSION_DISABLED: 'KMSInvalidStateException',
  KH_ERR_KEY_VERSION_DESTROYED: 'KMSInvalidStateException',
  KH_ERR_KEY_VERSION_BELOW_MINIMUM: 'KMSInvalidStateException',
  KH_ERR_KEY_PENDING_DELETION: 'KMSInvalidStateException',
  KH_ERR_KEY_DESTROYED: 'NotFoundException',
  KH_ERR_ILLEGAL_TRANSITION: 'KMSInvalidStateException',
  KH_ERR_PAYLOAD_TOO_LARGE: 'ValidationException',
  KH_ERR_UNSUPPORTED_MEDIA_TYPE: 'SerializationException',
  KH_ERR_ROUTE_NOT_FOUND: 'UnknownOperationException',
  KH_ERR_THROTTLED: 'ThrottlingException',
  // The store or the audit log did not answer in time: AWS's word for a dependency that timed out, which SDKs retry.
  KH_ERR_UNAVAILABLE: 'DependencyTimeoutException',
  KH_ERR_INTERNAL: 'KMSInternalException',
};

export function awsExceptionOf(code: ErrorCode): AwsExceptionName {
  return BY_CODE[code] ?? 'KMSInternalException';
}
