import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { DatabaseConfig } from '../config.js';
import { migrationSource } from '../../migrations/index.js';

export type Database = Knex;

export interface DatabaseOptions {
  /** How long a query waits for a pooled connection before it fails. */
  readonly acquireTimeoutMs: number;
  /** PostgreSQL only: the schema to use, which must exist. Tests isolate themselves with it. */
  readonly searchPath?: string;
}

/** An arbitrary, fixed advisory-lock id for migrations ("khmigr" in ASCII). */
const MIGRATION_LOCK_ID = 0x6b686d696772;
const PG_INT8 = 20;
const PG_NUMERIC = 1700;

/**
 * Timestamps are stored as epoch milliseconds in BIGINT columns, the one representation both databases share. pg
 * returns INT8 as a string; this parser is scoped to our pool, not installed globally.
 */
const pgTypes = {
  getTypeParser(oid: number, format?: string): (value: string) => unknown {
    if (oid === PG_INT8 || oid === PG_NUMERIC) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/**
 * Creates the SQLite database file, and its directory, readable by the service's user only, as the root key is: the
 * store holds the wrapped keys and the audit trail. SQLite gives the `-wal` and `-shm` files it creates the mode of
 * the database file, so creating that one 0600 covers all three. Existing files and directories are left as they are.
 */
function createPrivateSqliteFile(filename: string): void {
  mkdirSync(dirname(filename), { recursive: true, mode: 0o700 });
  closeSync(openSync(filename, 'a', 0o600));
}

/** The part of a better-sqlite3 connection set up here. */
interface SqliteConnection {
  pragma(sql: string): unknown;
  prepare(sql: string): unknown;
}

/**
 * Makes every transaction `BEGIN IMMEDIATE`, which takes the write lock at its start, where `busy_timeout` waits for
 * it. knex begins with a plain (deferred) `BEGIN`: with several processes on one file (the workers of one server), a
 * transaction that reads, then writes after another process committed, fails at once with `SQLITE_BUSY_SNAPSHOT`,
 * which no busy timeout can wait out (https://sqlite.org/rescode.html#busy_snapshot). One process holds one
 * connection, so its own transactions were serialised already.
 */
function beginImmediately(connection: SqliteConnection): void {
  const prepare = connection.prepare.bind(connection);
  connection.prepare = (sql: string) => prepare(sql === 'BEGIN;' ? 'BEGIN IMMEDIATE;' : sql);
}

export function createDatabase(config: DatabaseConfig, options: DatabaseOptions): Database {
  if (config.client === 'sqlite') {
    if (config.filename !== ':memory:') createPrivateSqliteFile(config.filename);
    return knexFactory({
      client: 'better-sqlite3',
      connection: { filename: config.filename },
      useNullAsDefault: true,
      compileSqlOnError: false,
      acquireConnectionTimeout: options.acquireTimeoutMs,
      // better-sqlite3 is synchronous and serialises writes; one connection avoids SQLITE_BUSY between our own.
      pool: {
        min: 1,
        max: 1,
        afterCreate(connection: SqliteConnection, done: (err: Error | null, conn: unknown) => void) {
          try {
            beginImmediately(connection);
            connection.pragma('journal_mode = WAL');
            connection.pragma('synchronous = NORMAL');
            connection.pragma('foreign_keys = ON');
            connection.pragma('busy_timeout = 5000');
            done(null, connection);
          } catch (error) {
            done(error as Error, connection);
          }
        },
      },
      migrations: { migrationSource },
    });
  }
  const generations = connectionGenerations();
  const db = knexFactory({
    client: 'pg',
    connection: {
      connectionString: config.url,
      types: pgTypes,
      connectionTimeoutMillis: options.acquireTimeoutMs,
      // The client gives up on a server that stopped answering altogether (503).
      query_timeout: options.acquireTimeoutMs + 1000,
      application_name: 'keyhold',
    } as Knex.PgConnectionConfig,
    // knex otherwise puts the statement, with its bound values, into error messages, and so into logs.
    compileSqlOnError: false,
    searchPath: options.searchPath === undefined ? undefined : [options.searchPath],
    acquireConnectionTimeout: options.acquireTimeoutMs,
    pool: {
      min: 0,
      max: 10,
      // Set per session rather than as startup parameters, which connection poolers such as PgBouncer refuse. No
      // statement may hang a request: the server cancels slow statements and lock waits (503), and a transaction
      // left open by a stuck process cannot hold key rows locked for ever.
      afterCreate(connection: pg.Client, done: (err: Error | null, conn: pg.Client) => void) {
        generations.track(connection);
        const ms = Math.trunc(options.acquireTimeoutMs);
        connection.query(
          `SET statement_timeout = ${ms}; SET lock_timeout = ${ms}; SET idle_in_transaction_session_timeout = 60000`,
          (err: Error | null) => done(err, connection),
        );
      },
      validate: (connection: pg.Client) => generations.trusted(connection),
    },
    migrations: { migrationSource },
  });
  db.on('query-error', (error: unknown) => generations.condemnOnReadTimeout(error));
  return db;
}

/**
 * pg's `query_timeout` rejects a query the server does not answer, but leaves it active on its connection: every
 * later query on that connection queues behind it. After a silent network failure (a failover, a dropped NAT entry:
 * no reset ever arrives) such a connection never answers again, and the pool would keep handing it out, failing
 * every request that drew it until TCP gave up many minutes later. So one read timeout condemns every connection
 * opened before it: whatever killed one path most likely killed the others, and reconnecting costs milliseconds.
 * The pool's validation refuses a condemned connection the next time it is drawn; destroying it makes pg cut the
 * socket when a query is still active on it, and a fresh connection takes its place.
 */
function connectionGenerations() {
  const generations = new WeakMap<pg.Client, number>();
  let next = 0;
  let oldestTrusted = 0;
  return {
    track(connection: pg.Client): void {
      generations.set(connection, next);
      next += 1;
    },
    condemnOnReadTimeout(error: unknown): void {
      if (error instanceof Error && error.message.endsWith('Query read timeout')) oldestTrusted = next;
    },
    trusted(connection: pg.Client): boolean {
      return (generations.get(connection) ?? -1) >= oldestTrusted;
    },
  };
}

/**
 * Runs pending migrations under knex's migration lock, so concurrent replicas start safely. On PostgreSQL they run
 * over a connection of their own without the request timeouts: a migration may rightly take longer than a request.
 */
export async function migrateToLatest(db: Database): Promise<void> {
  if (!isPostgres(db)) {
    await db.migrate.latest();
    return;
  }
  const config = db.client.config as Knex.Config;
  const connection = config.connection as Knex.PgConnectionConfig;
  const migrator = knexFactory({
    ...config,
    connection: { ...connection, query_timeout: undefined } as Knex.PgConnectionConfig,
    pool: { min: 0, max: 2 },
  });
  // knex's own lock table cannot protect its creation: replicas that boot together on an empty database race to
  // create it. A session advisory lock, held on one connection while the other migrates, serialises them.
  const lockConnection = (await migrator.client.acquireConnection()) as pg.Client;
  try {
    await lockConnection.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    try {
      await migrator.migrate.latest();
    } finally {
      await lockConnection.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]);
    }
  } finally {
    await migrator.client.releaseConnection(lockConnection);
    await migrator.destroy();
  }
}

/** True when every known migration has run. */
export async function migrationsAreCurrent(db: Database): Promise<boolean> {
  const [, pending] = (await db.migrate.list()) as [unknown[], unknown[]];
  return pending.length === 0;
}

export function isPostgres(db: Database): boolean {
  return db.client.config.client === 'pg';
}

/** The connection pool now: lent to queries, idle, requests waiting for a connection, and its size. For the metrics. */
export function poolUsage(db: Database): { used: number; free: number; pending: number; max: number } {
  const pool = (db.client as { pool?: { numUsed(): number; numFree(): number; numPendingAcquires(): number; max: number } }).pool;
  if (pool === undefined) return { used: 0, free: 0, pending: 0, max: 0 };
  return { used: pool.numUsed(), free: pool.numFree(), pending: pool.numPendingAcquires(), max: pool.max };
}
