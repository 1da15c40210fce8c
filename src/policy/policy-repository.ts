import type { PolicyDocument } from './policy.js';

export interface StoredPolicy {
  readonly name: string;
  readonly document: PolicyDocument;
  /** 1 when created, +1 on every replacement; the ETag of the policy. */
  readonly revision: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export type PutOutcome = { readonly kind: 'created' | 'replaced'; readonly policy: StoredPolicy } | { readonly kind: 'revision-mismatch' };

/** Persistence of policies. Every write records its change in the change feed, in the same commit. */
export interface PolicyRepository {
  /** Every live policy, by name. */
  all(): Promise<StoredPolicy[]>;
  find(name: string): Promise<StoredPolicy | undefined>;
  /** Live policies in byte-wise name order, those starting with `prefix`, after `after`, at most `limit`. */
  list(query: { prefix?: string | undefined; after?: string | undefined; limit: number }): Promise<StoredPolicy[]>;
  /**
   * Creates or replaces a policy. With `expectedRevision`, only that revision is replaced (0: only create), so two
   * writers editing the same policy cannot silently overwrite each other. A revision is never reused for a name,
   * not even after a deletion.
   */
  put(name: string, document: PolicyDocument, now: Date, expectedRevision: number | undefined): Promise<PutOutcome>;
  /** Deletes a policy, keeping its revision count; with `expectedRevision`, only that revision. */
  delete(name: string, expectedRevision: number | undefined, now: Date): Promise<'deleted' | 'not-found' | 'revision-mismatch'>;
}
