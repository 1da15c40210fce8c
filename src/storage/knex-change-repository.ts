import type { Knex } from 'knex';
import type pg from 'pg';
import { isPostgres, type Database } from './database.js';
import type { Change, ChangeAction, ChangeKind } from '../changes/change.js';
import type { ChangeNotifications, ChangeRepository } from '../changes/change-repository.js';

/** The PostgreSQL channel every replica LISTENs on. The payload is the sequence; readers re-read the table. */
export const CHANGE_CHANNEL = 'keyhold_changes';

export interface NewChange {
  readonly kind: ChangeKind;
  readonly action: ChangeAction;
  readonly subject: string;
  readonly keyName?: string | null;
  readonly at: Date;
}

interface ChangeRow {
  seq: number;
  kind: string;
  action: string;
  subject: string;
  key_name: string | null;
  at: number;
}

function toChange(row: ChangeRow): Change {
  return {
    seq: Number(row.seq),
    kind: row.kind as ChangeKind,
    action: row.action as ChangeAction,
    subject: row.subject,
    keyName: row.key_name,
    at: new Date(Number(row.at)),
  };
}

/**
 * SQLite has no NOTIFY. A store on it serves one process (a single node), so a commit that recorded a change wakes
 * that process's feeds on the same file directly, and they need not wait for their next poll.
 */
const sqliteCommitListeners = new Map<string, Set<() => void>>();

function sqliteFileOf(client: Knex.Client): string {
  const connection = client.config.connection as { filename?: string } | undefined;
  return connection?.filename ?? '';
}

/**
 * Records a change inside the writer's transaction. Call it as the transaction's last statement: it locks the one
 * sequence row until commit, which is what makes sequence order commit order. The NOTIFY is delivered at commit,
 * and not at all on rollback.
 */
export async function recordChange(trx: Knex.Transaction, change: NewChange): Promise<number> {
  const postgres = trx.client.config.client === 'pg';
  let seq: number;
  if (postgres) {
    const rows = (await trx('change_sequence').where({ id: 1 }).increment('value', 1).returning('value')) as Array<{ value: number | string }>;
    seq = Number(rows[0]!.value);
  } else {
    await trx('change_sequence').where({ id: 1 }).increment('value', 1);
    const row = (await trx('change_sequence').where({ id: 1 }).first('value')) as { value: number };
    seq = Number(row.value);
  }
  await trx('changes').insert({
    seq,
    kind: change.kind,
    action: change.action,
    subject: change.subject,
    key_name: change.keyName ?? null,
    at: change.at.getTime(),
  });
  if (postgres) {
    await trx.raw('SELECT pg_notify(?, ?)', [CHANGE_CHANNEL, String(seq)]);
  } else {
    const listeners = sqliteCommitListeners.get(sqliteFileOf(trx.client));
    if (listeners !== undefined) {
      void trx.executionPromise.then(
        () => {
          for (const listener of listeners) listener();
        },
        () => undefined,
      );
    }
  }
  return seq;
}

/** Reads the change feed from the `changes` table. Writers record through {@link recordChange}, in their own transactions. */
export class KnexChangeRepository implements ChangeRepository {
  constructor(private readonly db: Database) {}

  get postgres(): boolean {
    return isPostgres(this.db);
  }

  async latestSeq(): Promise<number> {
    const row = (await this.db('change_sequence').where({ id: 1 }).first('value')) as { value: number | string } | undefined;
    return Number(row?.value ?? 0);
  }

  /**
   * On SQLite, calls `listener` after each commit in this process that recorded a change in this store; on PostgreSQL
   * LISTEN does that. Returns the unsubscribe.
   */
  onLocalCommit(listener: () => void): () => void {
    if (this.postgres) return () => undefined;
    const file = sqliteFileOf(this.db.client as Knex.Client);
    let listeners = sqliteCommitListeners.get(file);
    if (listeners === undefined) {
      listeners = new Set();
      sqliteCommitListeners.set(file, listeners);
    }
    const added = listeners;
    const entry = () => listener();
    added.add(entry);
    return () => {
      added.delete(entry);
      if (added.size === 0 && sqliteCommitListeners.get(file) === added) sqliteCommitListeners.delete(file);
    };
  }

  /**
   * On PostgreSQL, a connection of its own that LISTENs on {@link CHANGE_CHANNEL}, lost with that connection; on
   * SQLite, {@link onLocalCommit}, which is never lost.
   */
  async notifications(onCommit: () => void, onLost: (error?: Error) => void): Promise<ChangeNotifications> {
    if (!this.postgres) {
      const stop = this.onLocalCommit(onCommit);
      return { close: async () => stop() };
    }
    let connection: pg.Client | undefined;
    try {
      connection = (await this.db.client.acquireRawConnection()) as pg.Client;
      const opened = connection;
      let live = false;
      opened.on('notification', (message) => {
        if (message.channel === CHANGE_CHANNEL) onCommit();
      });
      const lost = (error?: Error) => {
        if (!live) return;
        live = false;
        opened.removeAllListeners('notification');
        void this.db.client.destroyRawConnection(opened).catch(() => undefined);
        onLost(error);
      };
      opened.on('error', lost);
      opened.on('end', () => lost());
      await opened.query(`LISTEN ${CHANGE_CHANNEL}`);
      live = true;
      return {
        close: async () => {
          live = false;
          await this.db.client.destroyRawConnection(opened).catch(() => undefined);
        },
      };
    } catch (error) {
      if (connection !== undefined) await this.db.client.destroyRawConnection(connection).catch(() => undefined);
      throw error;
    }
  }

  /** The changes after `seq`, oldest first. */
  async since(seq: number, limit: number): Promise<Change[]> {
    const rows = (await this.db<ChangeRow>('changes').where('seq', '>', seq).orderBy('seq').limit(limit)) as ChangeRow[];
    return rows.map(toChange);
  }

  /** Deletes changes recorded before `before`. The sequence keeps counting, so a reader behind them sees a gap. */
  async pruneBefore(before: Date): Promise<number> {
    return this.db('changes').where('at', '<', before.getTime()).delete();
  }
}
