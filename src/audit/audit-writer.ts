import { appendFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.js';
import { UnavailableError } from '../errors.js';
import { withTimeout } from '../lib/timeout.js';
import type { AuditKeyMaterial } from './audit-key.js';
import { toJsonLine, type AuditEvent, type AuditRecord } from './audit-record.js';
import { MAX_AUDIT_BATCH, type AuditRepository } from './audit-repository.js';
import { createCheckpoint, genesisHead, linkAuditEvent, type AuditCheckpoint, type ChainedAuditRecord, type ChainHead } from './chain.js';
import { createHeadStatement, headStatementJson, headStatementLine, type HeadStatement } from './head-statement.js';
import { isSeal, sealEvent } from './seal.js';

/** How often a running writer states its chain's head (heartbeat and witness): at least once a minute. */
export const HEAD_STATEMENT_INTERVAL_MS = 60_000;

export interface AuditWriterOptions {
  readonly repository: AuditRepository;
  readonly auditKey: AuditKeyMaterial;
  /** This process's chain. A new one per process start, so a restart never has to trust the stored tail. */
  readonly replicaId: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How long a group commit may take before its requests are failed with 503. */
  readonly timeoutMs: number;
  /** `KEYHOLD_AUDIT_FILE`: JSON lines appended after each commit, for SIEM pipelines. */
  readonly filePath?: string | undefined;
  /** Told of every group commit; the metrics module implements it (`src/metrics/`). */
  readonly observer?: AuditCommitObserver | undefined;
}

/** What a group commit reports, for latency and batch-size histograms. */
export interface AuditCommitObserver {
  /** A commit ended: `records` in the batch, `seconds` from its start, and whether it landed. */
  commitEnded(records: number, seconds: number, committed: boolean): void;
}

interface Pending {
  readonly event: AuditEvent;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  /** The record chained for the event (when it arrived, or again at a commit), and the hash it was chained onto. */
  link: ChainedAuditRecord | undefined;
  previousHash: string | undefined;
}

/** Whether every pending event is chained, the first onto `head` and each one after onto the one before it. */
function chainsFrom(batch: readonly Pending[], head: ChainHead): boolean {
  let previous = head;
  for (const pending of batch) {
    const record = pending.link?.record;
    if (record === undefined || pending.previousHash !== previous.hash || record.sequence !== previous.sequence + 1) return false;
    previous = record;
  }
  return true;
}

/** Running totals since the writer started; the metrics module reads them at each scrape. */
export interface AuditMetrics {
  records: number;
  commits: number;
  commitFailures: number;
  fileFailures: number;
}

/**
 * Group commit of audit records. A request's answer waits for its record to be committed; records that arrive
 * while a commit runs go together into the next one: a single statement that inserts them and moves the chain's
 * head checkpoint, applied only if the head is where the writer left it. One commit runs at a time, so the chain is
 * extended strictly in order. When a commit fails or times out, its requests fail with 503 and the head is read back
 * from the database before the next commit: a commit that timed out but landed is continued from, not overwritten.
 *
 * A record is chained (normalised, encoded and MAC'd) as its event arrives, onto the last record queued, so that a
 * commit only has to send what is ready and the next one goes out as soon as the one before it has answered its
 * requests. Records queued behind a commit that fails were chained onto records that never landed; they are chained
 * again from the head read back.
 */
export class AuditWriter {
  readonly replicaId: string;
  readonly metrics: AuditMetrics = { records: 0, commits: 0, commitFailures: 0, fileFailures: 0 };
  readonly #repository: AuditRepository;
  readonly #auditKey: AuditKeyMaterial;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #filePath: string | undefined;
  readonly #observer: AuditCommitObserver | undefined;
  #head: ChainHead;
  /**
   * The last record chained, committed or queued: where the next event's record goes. Undefined while the stored
   * head is unknown (at start and after a failure), and while a queue too long to chain again at once drains: events
   * that arrive then are chained by the commit that finds them unchained.
   */
  #tail: ChainHead | ChainedAuditRecord | undefined;
  #queue: Pending[] = [];
  #committing: Promise<void> | undefined;
  /** Whether the stored head must be read back (and recorded) before the next commit: at start and after a failure. */
  #headUnknown = true;
  /**
   * Numbers commit attempts. One that failed or timed out is over: if its work resumes later (a timeout does not
   * cancel it), it finds the number moved on and leaves the writer's state alone.
   */
  #attempt = 0;
  #fileWrites: Promise<void> = Promise.resolve();
  #heartbeat: NodeJS.Timeout | undefined;
  /** Set once `seal()` starts: from then on no request is recorded, and the chain ends with the seal. */
  #sealing = false;
  /** Whether the seal record is committed. */
  #sealed = false;

  constructor(options: AuditWriterOptions) {
    this.replicaId = options.replicaId;
    this.#repository = options.repository;
    this.#auditKey = options.auditKey;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#timeoutMs = options.timeoutMs;
    this.#filePath = options.filePath;
    this.#observer = options.observer;
    this.#head = genesisHead(options.auditKey, options.replicaId);
  }

  /** Records waiting for a commit, the one running excluded. */
  get queueDepth(): number {
    return this.#queue.length;
  }

  /** The chain's last committed record. */
  get head(): ChainHead {
    return this.#head;
  }

  /**
   * Resolves once the event's record is committed; rejects with 503 when it could not be, or once the chain is being
   * sealed. An event that claims to be a seal is refused (`TypeError`): only {@link seal} writes one.
   */
  append(event: AuditEvent): Promise<void> {
    if (isSeal(event)) return Promise.reject(new TypeError('A request cannot write a seal record'));
    if (this.#sealing) return Promise.reject(new UnavailableError('The audit chain is sealed: this server is shutting down'));
    return this.#enqueue(event);
  }

  #enqueue(event: AuditEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { event, resolve, reject, link: undefined, previousHash: undefined };
      if (this.#tail !== undefined) {
        try {
          this.#chain(pending, this.#tail);
        } catch (error) {
          // An event that cannot be chained is a bug in its caller: its request fails, the queue goes on.
          reject(error as Error);
          return;
        }
      }
      this.#queue.push(pending);
      // Records of the same tick go into one commit.
      this.#committing ??= new Promise<void>((started) => setImmediate(started)).then(() => this.#drain());
    });
  }

  /**
   * States the head now, then every {@link HEAD_STATEMENT_INTERVAL_MS} until {@link seal}. The timer does not hold
   * the process open, and costs requests nothing.
   */
  async startHeartbeat(): Promise<void> {
    if (this.#heartbeat !== undefined || this.#sealing) return;
    this.#heartbeat = setInterval(() => void this.stateHead(), HEAD_STATEMENT_INTERVAL_MS);
    this.#heartbeat.unref();
    await this.stateHead();
  }

  /**
   * Makes a MAC'd statement of the committed head, at the clock's time, and sends it to the database (the chain's
   * liveness heartbeat), to the log and to the JSON-lines file. Never throws: a statement that cannot be stored is
   * logged, and the next one tries again.
   */
  async stateHead(): Promise<HeadStatement> {
    const statement = createHeadStatement(this.#auditKey, {
      replicaId: this.replicaId,
      sequence: this.#head.sequence,
      hash: this.#head.hash,
      time: this.#clock.now(),
      sealed: this.#sealed,
    });
    this.#logger.info({ auditHead: headStatementJson(statement) }, 'audit chain head');
    if (this.#filePath !== undefined) this.#appendFile(this.#filePath, headStatementLine(statement));
    try {
      await this.#withTimeout(() => this.#repository.recordHead(statement, this.#clock.now()));
    } catch (error) {
      this.#logger.warn({ err: error, replicaId: this.replicaId }, 'audit chain head statement could not be stored');
    }
    return statement;
  }

  /**
   * Ends the chain at shutdown: refuses new records, commits what is queued, then the seal record, and states the
   * sealed head. Each commit is bounded by the audit timeout, so this cannot hang a shutdown; a seal that fails is
   * logged, not thrown, and the chain then reads as ended without a seal, as after a crash.
   */
  async seal(): Promise<void> {
    if (this.#sealing) return;
    this.#sealing = true;
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    await this.flush();
    try {
      await this.#enqueue(sealEvent(this.replicaId, this.#clock.now()));
      this.#sealed = true;
    } catch (error) {
      this.#logger.error({ err: error, replicaId: this.replicaId }, 'audit chain could not be sealed; it will read as ended without a seal');
    }
    await this.stateHead();
    await this.flush();
  }

  /** Waits for every queued record to be committed or failed, and for the file sink to catch up. */
  async flush(): Promise<void> {
    while (this.#committing !== undefined) await this.#committing;
    await this.#fileWrites;
  }

  /** Chains the pending event onto `previous`, and makes it the tail. */
  #chain(pending: Pending, previous: ChainHead | ChainedAuditRecord): void {
    const link = linkAuditEvent(this.#auditKey, pending.event, previous);
    pending.link = link;
    pending.previousHash = 'record' in previous ? previous.record.hash : previous.hash;
    this.#tail = link;
  }

  /**
   * Chains `pendings` in order from `head`, and makes the last of them the tail. One whose event cannot be chained
   * (a bug in its caller) is answered with the error and left out. Returns those that were chained.
   */
  #chainAll(pendings: readonly Pending[], head: ChainHead | ChainedAuditRecord): Pending[] {
    this.#tail = head;
    return pendings.filter((pending) => {
      try {
        this.#chain(pending, this.#tail!);
        return true;
      } catch (error) {
        pending.reject(error as Error);
        return false;
      }
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) await this.#commit(this.#queue.splice(0, MAX_AUDIT_BATCH));
    } finally {
      this.#committing = undefined;
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    let records: AuditRecord[] = [];
    const started = performance.now();
    const attempt = ++this.#attempt;
    const over = (): boolean => attempt !== this.#attempt;
    try {
      await this.#withTimeout(async () => {
        if (this.#headUnknown) {
          // A new chain starts at its genesis; after a failure, it goes on from what the database holds.
          // Only ever forwards: a commit that timed out but landed is continued from, while a stored tail shorter than
          // what this writer committed (deleted rows) must not become the head, or a truncation would verify.
          const stored = await this.#repository.lastRecord(this.replicaId);
          if (over()) return;
          if (stored !== undefined && stored.sequence > this.#head.sequence) this.#head = stored;
          await this.#repository.startChain(this.#checkpoint(this.#head), this.#clock.now());
          if (over()) return;
          this.#headUnknown = false;
        }
        const previous = this.#head;
        let chained = batch;
        if (!chainsFrom(batch, previous)) {
          // Queued while the head was unknown, or chained onto records that did not land: chain them again from the
          // head, and the queue behind them too unless it is long (after an outage), which is then chained a batch at a
          // time by the commits that send it.
          chained = this.#chainAll(batch, previous);
          if (this.#queue.length <= MAX_AUDIT_BATCH) this.#queue = this.#chainAll(this.#queue, this.#tail!);
          else this.#forgetQueuedLinks();
        }
        const links = chained.map((pending) => pending.link!);
        const head = links.at(-1)?.record;
        if (head === undefined) return;
        records = links.map((link) => link.record);
        const applied = await this.#repository.append(links, this.#checkpoint(head), previous.sequence, this.#clock.now());
        if (!applied) throw new Error('the stored chain head moved: another writer, or a commit that timed out, landed');
      });
    } catch (error) {
      this.#attempt += 1;
      this.#headUnknown = true;
      // What is queued was chained onto this batch: it is chained again once the head has been read back.
      this.#forgetQueuedLinks();
      this.metrics.commitFailures += 1;
      this.#observer?.commitEnded(batch.length, (performance.now() - started) / 1000, false);
      this.#logger.error({ err: error, records: batch.length }, 'audit records could not be committed; failing their requests');
      const failure = new UnavailableError('The audit log cannot be written; retry later', { cause: error });
      for (const pending of batch) pending.reject(failure);
      return;
    }
    const last = records.at(-1);
    if (last === undefined) return;
    this.#head = { sequence: last.sequence, hash: last.hash };
    this.metrics.records += records.length;
    this.metrics.commits += 1;
    this.#observer?.commitEnded(records.length, (performance.now() - started) / 1000, true);
    for (const pending of batch) pending.resolve();
    if (this.#filePath !== undefined) this.#writeFile(this.#filePath, records);
  }

  /** Until the queue is chained again, new events are not chained on arrival: there is no tail to chain them onto. */
  #forgetQueuedLinks(): void {
    this.#tail = undefined;
    for (const pending of this.#queue) pending.link = undefined;
  }

  #checkpoint(head: ChainHead): AuditCheckpoint {
    return createCheckpoint(this.#auditKey, { replicaId: this.replicaId, kind: 'head', sequence: head.sequence, hash: head.hash });
  }

  /** The second sink: best effort, in commit order. A failure is logged and counted; requests are not failed. */
  #writeFile(path: string, records: readonly AuditRecord[]): void {
    this.#appendFile(path, records.map(toJsonLine).join(''));
  }

  #appendFile(path: string, lines: string): void {
    this.#fileWrites = this.#fileWrites.then(() =>
      appendFile(path, lines, { mode: 0o600 }).catch((error: unknown) => {
        this.metrics.fileFailures += 1;
        this.#logger.error({ err: error, path }, 'audit file sink failed');
      }),
    );
  }

  #withTimeout<T>(work: () => Promise<T>): Promise<T> {
    return withTimeout(work(), this.#timeoutMs, `audit commit timed out after ${this.#timeoutMs} ms`);
  }
}
