import type { AuditLog } from './audit/audit-log.js';
import type { AwsKmsService } from './aws-kms/aws-kms-service.js';
import type { AuditService } from './audit/audit-service.js';
import type { AuditWriter } from './audit/audit-writer.js';
import type { KeyUsageService } from './audit/key-usage.js';
import type { DatabaseChangeFeed } from './changes/change-feed.js';
import type { AuthenticatorChain } from './identity/authenticator.js';
import type { BatchService } from './keys/batch-service.js';
import type { EnvelopeService } from './keys/envelope-service.js';
import type { KeyService } from './keys/key-service.js';
import type { PolicyService } from './policy/policy-service.js';
import type { PolicyStore } from './policy/policy-store.js';
import type { TokenService } from './tokens/token-service.js';
import type { AwsCredentialService } from './aws-kms/aws-credential-service.js';

export interface ReadinessChecks {
  readonly database: boolean;
  readonly rootKey: boolean;
  readonly migrations: boolean;
}

/**
 * The use cases the HTTP layer calls, built by the composition root (`compose.ts`). Each route family takes only the
 * ones it uses.
 */
export interface Services {
  readonly keys: KeyService;
  /** Data keys, encrypt, decrypt, rewrap. */
  readonly envelope: EnvelopeService;
  readonly batch: BatchService;
  readonly tokens: TokenService;
  /** AWS access keys bound to principals: issued, listed and revoked here, looked up by SigV4 verification. */
  readonly awsCredentials: AwsCredentialService;
  /** Kubernetes service-account tokens, then SPIFFE client certificates, then API tokens. */
  readonly authenticators: AuthenticatorChain;
  readonly policies: PolicyService;
  /** The compiled policy set; requests bring it up to date before they are handled. */
  readonly policyStore: PolicyStore;
  /** The audit log as the API reads it, authorised. */
  readonly audit: AuditService;
  /** The fleet inventory: a key's uses by principal, version and action, from the audit log's rollup. */
  readonly keyUsage: KeyUsageService;
  /** The audit log itself: verify and purge, for the sweeper and operators. */
  readonly auditLog: AuditLog;
  /** Commits each request's audit record before it is answered; undefined only with `KEYHOLD_AUDIT=off`. */
  readonly auditWriter: AuditWriter | undefined;
  /** Writes on every replica, in commit order; this replica's caches have applied each event it delivers. */
  readonly changes: DatabaseChangeFeed;
  /** The AWS KMS operations, SigV4 verification and request quotas; undefined with `KEYHOLD_AWS_KMS=off`. */
  readonly awsKms: AwsKmsService | undefined;
  readiness(): Promise<ReadinessChecks>;
}
