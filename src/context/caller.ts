import type { Decision } from './decision.js';
import type { Principal } from './principal.js';
import type { Action } from './actions.js';

/** The operations a request can run on a key, each with its row in the key-state table (`keys/lifecycle.ts`). */
export type KeyOperation =
  | 'read'
  | 'update'
  | 'rotate'
  | 'disable'
  | 'enable'
  | 'schedule-deletion'
  | 'cancel-deletion'
  | 'disable-version'
  | 'enable-version'
  | 'encrypt'
  | 'decrypt'
  | 'rewrap-revoked';

/** One line of a batch summary: how many of the batch's items did `action` on this key version with this outcome. */
export interface AuditBatchEntry {
  readonly action: string;
  /** `null` when the item named no key and its ciphertext named none that exists. */
  readonly keyName: string | null;
  readonly keyId: string | null;
  readonly keyVersion: number | null;
  /** `ok`, or the error code the item answered. */
  readonly outcome: string;
  readonly count: number;
}

/**
 * What the items of a batch request did, aggregated. A batch whose summary has more than
 * {@link MAX_AUDIT_BATCH_ENTRIES} lines writes one record per part, each with the same request id, so no record is
 * large and no key a batch used is left out of the log.
 */
export interface AuditBatch {
  /** Items in the whole request, in every part. */
  readonly items: number;
  /** This record's part, from 1, of `parts`. */
  readonly part: number;
  readonly parts: number;
  /** In the order the items first did each, 1 to {@link MAX_AUDIT_BATCH_ENTRIES} lines. */
  readonly entries: readonly AuditBatchEntry[];
}

/** The most lines one record's batch summary holds; a longer summary is split over several records. */
export const MAX_AUDIT_BATCH_ENTRIES = 64;

/**
 * What a record's action names when the operation is more precise than the policy action that authorised it:
 * `keys:disable` authorises both a key's disable and a version's, recorded as `keys:disable` and
 * `keys:disable-version`. The decision fields still say how the policy action was decided.
 */
export type AuditOperation =
  | `keys:${KeyOperation}`
  | 'policies:put'
  | 'policies:delete'
  | 'tokens:create'
  | 'tokens:revoke'
  | 'aws-credentials:create'
  | 'aws-credentials:revoke';

/** A batch summary line as it is counted, before it is frozen into a record. */
type Tally = { -readonly [K in keyof AuditBatchEntry]: AuditBatchEntry[K] };

/**
 * What a request did, noted as it runs, for its audit record: the authorisation decisions it received and the key
 * (and version) it used. Services write it; the HTTP layer turns it into the record when the answer is ready.
 */
export class AuditTrail {
  /** The action and key of the decision that counts: the first denial, else the last allowance. */
  action: Action | 'batch' | undefined;
  keyName: string | undefined;
  decision: Decision | undefined;
  keyId: string | undefined;
  keyVersion: number | undefined;
  /** Named by the service before it authorises, so a refusal is recorded under the operation's name too. */
  operation: AuditOperation | undefined;
  /** A batch's items, by (action, key name, key id, version, outcome), in the order they first occurred. */
  #batch: Map<string, Tally> | undefined;
  #batchItems = 0;

  decided(action: Action, keyName: string | undefined, decision: Decision): void {
    if (this.decision !== undefined && !this.decision.allowed) return;
    if (keyName !== this.keyName) {
      // A key used before belongs to another decision; the record must not pair this key's name with its id.
      this.keyId = undefined;
      this.keyVersion = undefined;
    }
    this.action = action;
    this.keyName = keyName;
    this.decision = decision;
  }

  usedKey(keyId: string, keyName: string, keyVersion: number): void {
    if (this.decision !== undefined && !this.decision.allowed) return;
    this.keyId = keyId;
    this.keyName ??= keyName;
    this.keyVersion = keyVersion;
  }

  /** Names the operation about to run, when its policy action does not say it exactly. */
  runs(operation: AuditOperation): void {
    this.operation = operation;
  }

  /** The record's action: the operation when one was named, else the action decided. */
  get recordedAction(): AuditOperation | Action | 'batch' | undefined {
    return this.operation ?? this.action;
  }

  /**
   * Counts one item of a batch, which ran on its own trail (`item`) as it would have alone, and answered `outcome`.
   * The batch's record is action `batch` with no key of its own; its decision is the first item refused, else the
   * last allowed; the summary lists every key, version and outcome, refusals included. `op` and `keyName` are what
   * the item asked for, recorded when it failed before naming an action or finding a key.
   */
  batchItem(item: AuditTrail, outcome: string, op: Action, keyName: string | undefined): void {
    if (item.decision !== undefined && (this.decision === undefined || this.decision.allowed)) this.decision = item.decision;
    this.action = 'batch';
    this.keyName = undefined;
    this.keyId = undefined;
    this.keyVersion = undefined;
    const entry: Tally = {
      action: item.recordedAction ?? op,
      keyName: item.keyName ?? keyName ?? null,
      keyId: item.keyId ?? null,
      keyVersion: item.keyVersion ?? null,
      outcome,
      count: 1,
    };
    const id = JSON.stringify([entry.action, entry.keyName, entry.keyId, entry.keyVersion, entry.outcome]);
    this.#batch ??= new Map();
    const counted = this.#batch.get(id);
    if (counted === undefined) this.#batch.set(id, entry);
    else counted.count += 1;
    this.#batchItems += 1;
  }

  /**
   * The batch summary, one part per {@link MAX_AUDIT_BATCH_ENTRIES} lines, each for a record of its own; undefined
   * when the request ran no batch.
   */
  batchParts(): AuditBatch[] | undefined {
    if (this.#batch === undefined) return undefined;
    const entries = [...this.#batch.values()];
    const parts = Math.ceil(entries.length / MAX_AUDIT_BATCH_ENTRIES);
    return Array.from({ length: parts }, (_, i) => ({
      items: this.#batchItems,
      part: i + 1,
      parts,
      entries: entries.slice(i * MAX_AUDIT_BATCH_ENTRIES, (i + 1) * MAX_AUDIT_BATCH_ENTRIES),
    }));
  }
}

/** The authenticated caller of one request: who it is, and the trail its audit record is made from. */
export interface Caller {
  readonly principal: Principal;
  readonly trail: AuditTrail;
}

export function callerOf(principal: Principal): Caller {
  return { principal, trail: new AuditTrail() };
}
