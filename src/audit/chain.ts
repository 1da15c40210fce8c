import { auditHmac, auditMacEquals, isAuditHash, type AuditKeyMaterial } from './audit-key.js';
import {
  canonicalAuditText,
  isReplicaId,
  normalizeAuditEvent,
  strictCanonicalAuditRecord,
  type AuditEvent,
  type AuditRecord,
} from './audit-record.js';
import { verifyHeadStatement, type HeadStatement } from './head-statement.js';
import { isSeal } from './seal.js';

const GENESIS_LABEL = 'keyhold-audit-genesis/v1';
const CHECKPOINT_LABEL = 'keyhold-audit-checkpoint/v1';

/** The end of a chain: the sequence number and hash of its last record (0 and the genesis hash when empty). */
export interface ChainHead {
  readonly sequence: number;
  readonly hash: string;
}

function assertReplicaId(replicaId: string): void {
  if (!isReplicaId(replicaId)) {
    throw new RangeError('A replica id is a non-empty string of printable characters, at most 512 long');
  }
}

function assertHash(hash: string, what: string): void {
  if (!isAuditHash(hash)) {
    throw new RangeError(`${what} is 64 lower-case hex characters`);
  }
}

/**
 * The "previous hash" of a replica's first record: HMAC(auditKey, `["keyhold-audit-genesis/v1", replicaId]`).
 *
 * Not 32 zero bytes. Each record already names its replica inside the hashed bytes, so a record moved between
 * chains fails anyway; the keyed genesis also binds the chain itself to its replica at the root, so that binding
 * does not rest on one field of the record format, no chain's first link can be made without the audit key, and
 * even an empty chain has a head that only the key holder can compute (a head checkpoint at sequence 0 means
 * something). Defence in depth, and it costs nothing: it is computed, never stored.
 */
export function genesisHash(auditKey: AuditKeyMaterial, replicaId: string): string {
  assertReplicaId(replicaId);
  return auditHmac(auditKey, [JSON.stringify([GENESIS_LABEL, replicaId])]).toString('hex');
}

/** The head of a replica's empty chain: sequence 0 and the {@link genesisHash}. */
export function genesisHead(auditKey: AuditKeyMaterial, replicaId: string): ChainHead {
  return Object.freeze({ sequence: 0, hash: genesisHash(auditKey, replicaId) });
}

function linkMac(auditKey: AuditKeyMaterial, prevHash: string, canonical: Buffer | string): Buffer {
  assertHash(prevHash, 'A previous hash');
  return linkMacOfBytes(auditKey, Buffer.from(prevHash, 'hex'), canonical);
}

function linkMacOfBytes(auditKey: AuditKeyMaterial, prevHash: Buffer, canonical: Buffer | string): Buffer {
  // The previous hash has a fixed length, so `prevHash || canonical` splits one way only.
  return auditHmac(auditKey, [prevHash, canonical]);
}

/** One link of the chain: hex HMAC-SHA256(auditKey, prevHashBytes || canonical). */
export function linkHash(auditKey: AuditKeyMaterial, prevHash: string, canonical: Buffer | string): string {
  return linkMac(auditKey, prevHash, canonical).toString('hex');
}

/** A record as the writer chained it, with the canonical text its hash covers (see `canonicalAuditText`). */
export interface ChainedAuditRecord {
  readonly record: AuditRecord;
  readonly canonical: string;
  /** The record's hash as bytes, which the next link covers: chaining onto it needs no hex decoding. */
  readonly mac: Buffer;
}

/**
 * Appends an event to a chain whose head is `previous`: the record the writer stores, normalised (see
 * `normalizeAuditEvent`), at `previous.sequence + 1`, with its link hash. Storing exactly this record is what lets
 * the verifier recompute the hash. The link keeps the canonical text, from which PostgreSQL stores the record, and
 * the hash as bytes, for the next link.
 */
export function linkAuditEvent(
  auditKey: AuditKeyMaterial,
  event: AuditEvent,
  previous: ChainHead | ChainedAuditRecord,
): ChainedAuditRecord {
  const head = 'record' in previous ? previous.record : previous;
  if (!Number.isSafeInteger(head.sequence) || head.sequence < 0) {
    throw new RangeError('A chain head sequence is a non-negative integer');
  }
  const sequence = head.sequence + 1;
  const n = normalizeAuditEvent(event);
  const canonical = canonicalAuditText(n, sequence);
  const mac = 'record' in previous ? linkMacOfBytes(auditKey, previous.mac, canonical) : linkMac(auditKey, head.hash, canonical);
  const hash = mac.toString('hex');
  // Written out rather than spread: this runs once per request, and a spread copy is V8's slow generic path.
  const record: AuditRecord = Object.freeze({
    time: n.time,
    requestId: n.requestId,
    replicaId: n.replicaId,
    principalId: n.principalId,
    principalType: n.principalType,
    tokenId: n.tokenId,
    sourceAddress: n.sourceAddress,
    method: n.method,
    route: n.route,
    action: n.action,
    keyName: n.keyName,
    keyId: n.keyId,
    keyVersion: n.keyVersion,
    contextKeys: n.contextKeys,
    decision: n.decision,
    decisionReason: n.decisionReason,
    policy: n.policy,
    statement: n.statement,
    outcome: n.outcome,
    status: n.status,
    latencyMs: n.latencyMs,
    batch: n.batch,
    sequence,
    hash,
  });
  return { record, canonical, mac };
}

/**
 * `head`: a high-water mark written as the chain grows, against which a truncated tail is detected. `purge`: the
 * cut of a retention purge, after which the chain resumes; only a purge checkpoint may start a verification.
 */
export type CheckpointKind = 'head' | 'purge';

export interface CheckpointFields {
  readonly replicaId: string;
  /** The sequence number of the last record covered (for a purge: the last record deleted). */
  readonly sequence: number;
  /** That record's hash. */
  readonly hash: string;
  readonly kind: CheckpointKind;
}

/** A checkpoint as stored: its fields and their MAC. */
export interface AuditCheckpoint extends CheckpointFields {
  readonly mac: string;
}

function isCheckpointFields(fields: CheckpointFields): boolean {
  return (
    typeof fields === 'object' &&
    fields !== null &&
    isReplicaId(fields.replicaId) &&
    Number.isSafeInteger(fields.sequence) &&
    fields.sequence >= 0 &&
    isAuditHash(fields.hash) &&
    (fields.kind === 'head' || fields.kind === 'purge')
  );
}

function checkpointMacBytes(auditKey: AuditKeyMaterial, fields: CheckpointFields): Buffer {
  if (!isCheckpointFields(fields)) {
    throw new RangeError('A checkpoint has a replica id, a non-negative sequence, a hex hash and a kind (head or purge)');
  }
  const message = JSON.stringify([CHECKPOINT_LABEL, fields.kind, fields.replicaId, fields.sequence, fields.hash]);
  return auditHmac(auditKey, [message]);
}

/**
 * The MAC that authenticates a checkpoint row: hex HMAC(auditKey, `["keyhold-audit-checkpoint/v1", kind,
 * replicaId, sequence, hash]`). Without it, whoever can write the database could lower the last checkpoint to hide
 * a truncated tail, or turn a head checkpoint into a purge cut to hide the deletion of everything before it. The
 * kind is in the MAC for that second reason.
 */
export function checkpointMac(auditKey: AuditKeyMaterial, fields: CheckpointFields): string {
  return checkpointMacBytes(auditKey, fields).toString('hex');
}

/** A checkpoint ready to store. */
export function createCheckpoint(auditKey: AuditKeyMaterial, fields: CheckpointFields): AuditCheckpoint {
  const { replicaId, sequence, hash, kind } = fields;
  return Object.freeze({ replicaId, sequence, hash, kind, mac: checkpointMac(auditKey, fields) });
}

/**
 * Whether a stored checkpoint is well formed and its MAC is right. A malformed checkpoint is simply not valid; a
 * wrong audit key (not 32 bytes) still throws, since that is a configuration error and not a forged row.
 */
export function verifyCheckpoint(auditKey: AuditKeyMaterial, checkpoint: AuditCheckpoint): boolean {
  if (!isCheckpointFields(checkpoint)) return false;
  return auditMacEquals(checkpointMacBytes(auditKey, checkpoint), checkpoint.mac);
}

/**
 * What can be wrong with a chain, at the first sequence number it affects:
 * - `hash-mismatch`: the record at this sequence is not the one that was chained (edited, swapped or forged).
 * - `missing`: no record has this sequence, but a later one exists (a row was deleted).
 * - `out-of-order`: the records do not come in sequence order (the rows were given in another order), or a
 *   record from before the purge cut is still present.
 * - `duplicate`: a second record claims a sequence already verified.
 * - `truncated`: the chain ends before the last checkpoint or a head statement; `firstBadSequence` is the first
 *   record lost.
 * - `checkpoint-mismatch`: the record at a checkpoint's (or a head statement's) sequence has another hash.
 * - `checkpoint-invalid`: a checkpoint's or head statement's MAC is wrong, it names another replica, or a head
 *   checkpoint was given as a purge cut; `firstBadSequence` is its sequence.
 * - `after-seal`: a record follows the chain's seal, which only ever ends a chain.
 * - `malformed`: the record is not a record of this chain: a field of the wrong type, a string that is not in
 *   the sanitised form the writer stores, another replica's id.
 */
export type ChainProblem =
  | 'hash-mismatch'
  | 'missing'
  | 'out-of-order'
  | 'duplicate'
  | 'truncated'
  | 'checkpoint-mismatch'
  | 'checkpoint-invalid'
  | 'after-seal'
  | 'malformed';

export type ChainVerification =
  | {
      readonly ok: true;
      readonly count: number;
      readonly lastSequence: number;
      readonly lastHash: string;
      /** Whether the last record is the chain's seal (see `sealEvent`). */
      readonly sealed: boolean;
    }
  | { readonly ok: false; readonly firstBadSequence: number; readonly problem: ChainProblem };

export interface VerifyChainOptions {
  readonly auditKey: AuditKeyMaterial;
  /** The replica whose chain this is; its genesis hash starts the chain unless `start` is given. */
  readonly replicaId: string;
  /** The last purge checkpoint: the records up to it were deleted on purpose, and the chain resumes after it. */
  readonly start?: AuditCheckpoint | undefined;
  /** The last checkpoint of any kind: the chain must reach it, and agree with it. */
  readonly checkpoint?: AuditCheckpoint | undefined;
  /**
   * Head statements of this chain (the database's heartbeat, a witness file's latest): each must be genuine, and
   * the chain must reach its sequence and agree with its hash. One at or before the purge cut is not checked.
   */
  readonly statements?: readonly HeadStatement[] | undefined;
}

function safeSequence(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

/**
 * Walks one replica's chain a record at a time, in O(1) memory, so storage can feed it millions of rows from a
 * cursor or page by page. Give it the records in sequence order with {@link ChainVerifier.push}, which returns
 * false once a problem is found (stop reading then), and ask {@link ChainVerifier.finish} for the verdict.
 */
export class ChainVerifier {
  readonly #auditKey: AuditKeyMaterial;
  readonly #replicaId: string;
  readonly #startSequence: number;
  readonly #checkpoint: AuditCheckpoint | undefined;
  /** The hash each head statement vouches for, by sequence. */
  readonly #stated = new Map<number, string>();
  /** The furthest sequence a checkpoint or a statement says the chain reached. */
  #reach = 0;
  #sealed = false;
  #expected: number;
  #prevHash: string;
  #count = 0;
  #lastSeen = 0;
  /** A sequence number that was skipped: the next record says whether it is missing or merely late. */
  #gap: number | undefined;
  #failure: ChainVerification | undefined;

  constructor(options: VerifyChainOptions) {
    const { auditKey, replicaId, start, checkpoint, statements = [] } = options;
    this.#auditKey = auditKey;
    this.#replicaId = replicaId;
    this.#checkpoint = checkpoint;
    const genesis = genesisHash(auditKey, replicaId);
    const startValid = start === undefined || (start.kind === 'purge' && this.#isOwnCheckpoint(start));
    this.#startSequence = startValid && start !== undefined ? start.sequence : 0;
    this.#prevHash = startValid && start !== undefined ? start.hash : genesis;
    this.#expected = this.#startSequence + 1;
    this.#lastSeen = this.#startSequence;
    if (!startValid) {
      this.#fail(safeSequence(start?.sequence), 'checkpoint-invalid');
    } else if (checkpoint !== undefined && !this.#isOwnCheckpoint(checkpoint)) {
      this.#fail(safeSequence(checkpoint.sequence), 'checkpoint-invalid');
    } else if (checkpoint !== undefined && checkpoint.sequence === this.#startSequence && checkpoint.hash !== this.#prevHash) {
      this.#fail(checkpoint.sequence, 'checkpoint-mismatch');
    }
    this.#reach = Math.max(this.#startSequence, checkpoint?.sequence ?? 0);
    for (const statement of statements) {
      if (this.#failure !== undefined) break;
      this.#state(statement);
    }
  }

  #state(statement: HeadStatement): void {
    const genuine =
      typeof statement === 'object' &&
      statement !== null &&
      statement.replicaId === this.#replicaId &&
      verifyHeadStatement(this.#auditKey, statement);
    if (!genuine) {
      this.#fail(safeSequence(statement?.sequence), 'checkpoint-invalid');
    } else if (statement.sequence === this.#startSequence) {
      if (statement.hash !== this.#prevHash) this.#fail(statement.sequence, 'checkpoint-mismatch');
    } else if (statement.sequence > this.#startSequence) {
      const stated = this.#stated.get(statement.sequence);
      if (stated !== undefined && stated !== statement.hash) this.#fail(statement.sequence, 'checkpoint-mismatch');
      this.#stated.set(statement.sequence, statement.hash);
      this.#reach = Math.max(this.#reach, statement.sequence);
    }
  }

  #isOwnCheckpoint(checkpoint: AuditCheckpoint): boolean {
    return (
      typeof checkpoint === 'object' &&
      checkpoint !== null &&
      checkpoint.replicaId === this.#replicaId &&
      verifyCheckpoint(this.#auditKey, checkpoint)
    );
  }

  #fail(firstBadSequence: number, problem: ChainProblem): false {
    this.#failure = Object.freeze({ ok: false, firstBadSequence, problem });
    return false;
  }

  /** Checks the next record. Returns false once the chain is known to be broken; later records are ignored. */
  push(record: AuditRecord): boolean {
    if (this.#failure !== undefined) return false;
    const sequence: unknown = typeof record === 'object' && record !== null ? record.sequence : undefined;
    if (typeof sequence !== 'number' || !Number.isSafeInteger(sequence) || sequence < 1) {
      return this.#fail(this.#gap ?? this.#expected, 'malformed');
    }
    if (this.#gap !== undefined) {
      // The record after a gap decides: going back means the rows came out of order, going on means a hole.
      return this.#fail(this.#gap, sequence < this.#lastSeen ? 'out-of-order' : 'missing');
    }
    if (sequence > this.#expected) {
      this.#gap = this.#expected;
      this.#lastSeen = sequence;
      return true;
    }
    if (sequence < this.#expected) {
      return this.#fail(sequence, sequence > this.#startSequence ? 'duplicate' : 'out-of-order');
    }
    if (this.#sealed) return this.#fail(sequence, 'after-seal');
    if (record.replicaId !== this.#replicaId) return this.#fail(sequence, 'malformed');
    let canonical: Buffer;
    try {
      canonical = strictCanonicalAuditRecord(record);
    } catch (error) {
      if (error instanceof TypeError) return this.#fail(sequence, 'malformed');
      throw error;
    }
    if (!auditMacEquals(linkMac(this.#auditKey, this.#prevHash, canonical), record.hash)) {
      return this.#fail(sequence, 'hash-mismatch');
    }
    if (this.#checkpoint !== undefined && sequence === this.#checkpoint.sequence && record.hash !== this.#checkpoint.hash) {
      return this.#fail(sequence, 'checkpoint-mismatch');
    }
    const stated = this.#stated.get(sequence);
    if (stated !== undefined && record.hash !== stated) return this.#fail(sequence, 'checkpoint-mismatch');
    this.#sealed = isSeal(record);
    this.#prevHash = record.hash;
    this.#expected = sequence + 1;
    this.#lastSeen = sequence;
    this.#count += 1;
    return true;
  }

  /** The verdict on the records pushed so far. */
  finish(): ChainVerification {
    if (this.#failure !== undefined) return this.#failure;
    if (this.#gap !== undefined) return Object.freeze({ ok: false, firstBadSequence: this.#gap, problem: 'missing' });
    const lastSequence = this.#expected - 1;
    if (lastSequence < this.#reach) {
      return Object.freeze({ ok: false, firstBadSequence: lastSequence + 1, problem: 'truncated' });
    }
    return Object.freeze({ ok: true, count: this.#count, lastSequence, lastHash: this.#prevHash, sealed: this.#sealed });
  }
}

/**
 * Verifies one replica's chain: `records` in sequence order, from the first record (or the first after the purge
 * cut `options.start`) to the last. Reports the first broken or missing sequence number. Streams: it holds one
 * record at a time and stops reading at the first problem.
 */
export function verifyChain(records: Iterable<AuditRecord>, options: VerifyChainOptions): ChainVerification {
  const verifier = new ChainVerifier(options);
  for (const record of records) {
    if (!verifier.push(record)) break;
  }
  return verifier.finish();
}

/** {@link verifyChain} over an async source, such as a database cursor; it is closed at the first problem. */
export async function verifyChainAsync(
  records: AsyncIterable<AuditRecord> | Iterable<AuditRecord>,
  options: VerifyChainOptions,
): Promise<ChainVerification> {
  const verifier = new ChainVerifier(options);
  for await (const record of records) {
    if (!verifier.push(record)) break;
  }
  return verifier.finish();
}
