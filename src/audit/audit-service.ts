import type { Caller } from '../context/caller.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { AuditLog, VerificationReport } from './audit-log.js';
import type { AuditRecord } from './audit-record.js';
import type { AuditQuery } from './audit-repository.js';

/** The audit log as callers of the API read it: each use is authorised as `audit:read` first. */
export class AuditService {
  constructor(
    readonly log: AuditLog,
    readonly authorizer: Authorizer,
  ) {}

  async query(caller: Caller, query: AuditQuery): Promise<{ records: AuditRecord[]; hasMore: boolean }> {
    this.authorizer.authorize(caller, 'audit:read', {});
    return this.log.read(query);
  }

  async verify(caller: Caller): Promise<VerificationReport> {
    this.authorizer.authorize(caller, 'audit:read', {});
    return this.log.verify();
  }
}
