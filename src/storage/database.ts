import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { DatabaseConfig } from '../config.js';
import { migrationSource } from '../../migrations/index.js';

export type Database = Knex;

export interface DatabaseOptions {
  /** How long a query waits for a pooled connection before it fails. */
  readonly acquireTimeoutMs: number;
  /** PostgreSQL only: the schema to use, created if missing. Tests isolate themselves with it. */
  readonly searchPath?: string;
}

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

export function createDatabase(config: DatabaseConfig, options: DatabaseOptions): Database {
  if (config.client === 'sqlite') {
    if (config.filename !== ':memory:') mkdirSync(dirname(config.filename), { recursive: true });
    return knexFactory({
      client: 'better-sqlite3',
      connection: { filename: config.filename },
      useNullAsDefault: true,
      acquireConnectionTimeout: options.acquireTimeoutMs,
      // better-sqlite3 is synchronous and serialises writes; one connection avoids SQLITE_BUSY between our own.
      pool: {
        min: 1,
        max: 1,
        afterCreate(connection: { pragma(sql: string): unknown }, done: (err: Error | null, conn: unknown) => void) {
          try {
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
  return knexFactory({
    client: 'pg',
    connection: {
      connectionString: config.url,
      types: pgTypes,
      connectionTimeoutMillis: options.acquireTimeoutMs,
      application_name: 'keyhold',
    } as Knex.PgConnectionConfig,
    searchPath: options.searchPath === undefined ? undefined : [options.searchPath],
    acquireConnectionTimeout: options.acquireTimeoutMs,
    pool: { min: 0, max: 10 },
    migrations: { migrationSource },
  });
}

/** Runs pending migrations under knex's migration lock, so concurrent replicas start safely. */
export async function migrateToLatest(db: Database, searchPath?: string): Promise<void> {
  if (searchPath !== undefined && db.client.config.client === 'pg') {
    await db.raw('CREATE SCHEMA IF NOT EXISTS ??', [searchPath]);
  }
  await db.migrate.latest();
}

/** True when every known migration has run. */
export async function migrationsAreCurrent(db: Database): Promise<boolean> {
  const [, pending] = (await db.migrate.list()) as [unknown[], unknown[]];
  return pending.length === 0;
}

export function isPostgres(db: Database): boolean {
  return db.client.config.client === 'pg';
}
