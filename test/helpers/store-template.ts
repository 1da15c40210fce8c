import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { migrationSource } from '../../migrations/index.js';
import { createDatabase, migrateToLatest } from '../../src/storage/database.js';

/**
 * Migrated templates that test stores are cloned from, so that no test pays for the migrations (STYLE.md: "a store
 * cloned from a migrated template, never a migration per test"). Opening an app over a clone still runs the migrator,
 * which finds nothing to do: start-up behaves as in production. The migrations from an empty store are still run by
 * every test that starts a real server process on a store of its own (test/integration/replicas.test.ts, the
 * multi-replica clusters, server-process) and by test/integration/sqlite-files.test.ts.
 *
 * - SQLite: one migrated file per test process, copied into each store's data dir.
 * - PostgreSQL: one migrated schema per migration set, `kh_template_<hash>`, built by whichever process needs it first
 *   (under an advisory lock, and published by renaming it into place, so no one sees it half built). Each process
 *   takes its `pg_dump` once; a store is that script run into a schema of the store's own, in one transaction.
 *   (`CREATE DATABASE … TEMPLATE` was measured too: it copies the system catalogues as well, about 7 MB of WAL per
 *   store, and with the drop cost about three times as much.)
 */

/** Names and code of every migration: a template built from another migration set is never used. */
async function migrationSetHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const migration of await migrationSource.getMigrations([])) {
    hash.update(migrationSource.getMigrationName(migration)).update('\0').update(String(migration.up)).update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

let sqliteTemplate: Promise<string> | undefined;

/** Copies a migrated SQLite file to `filename`; the copy keeps the template's mode, 0600, as the service creates it. */
export async function cloneSqliteTemplate(filename: string): Promise<void> {
  sqliteTemplate ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyhold-template-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'template.sqlite');
    const db = createDatabase({ client: 'sqlite', filename: file }, { acquireTimeoutMs: 30_000 });
    try {
      await migrateToLatest(db);
    } finally {
      // The last connection to close checkpoints the WAL into the file and removes it, so the file alone is whole.
      await db.destroy();
    }
    return file;
  })();
  copyFileSync(await sqliteTemplate, filename);
}

/** Admin connections for creating and dropping schemas; idle ones close, so they never hold a worker open. */
const adminPools = new Map<string, pg.Pool>();

function admin(url: string): pg.Pool {
  let pool = adminPools.get(url);
  if (pool === undefined) {
    pool = new pg.Pool({ connectionString: url, max: 2, idleTimeoutMillis: 1000, allowExitOnIdle: true });
    adminPools.set(url, pool);
  }
  return pool;
}

/** An arbitrary, fixed advisory-lock id for building templates ("khtmpl"). */
const TEMPLATE_LOCK_ID = 0x6b68746d706c;

interface PostgresTemplate {
  readonly schema: string;
  /** `pg_dump` of the template schema, without psql's meta-commands. */
  readonly script: string;
}

const postgresTemplates = new Map<string, Promise<PostgresTemplate>>();

async function buildPostgresTemplate(url: string): Promise<string> {
  const name = `kh_template_${await migrationSetHash()}`;
  const client = await admin(url).connect();
  try {
    const exists = async () => (await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name])).rowCount === 1;
    if (await exists()) return name;
    await client.query('SELECT pg_advisory_lock($1)', [TEMPLATE_LOCK_ID]);
    try {
      if (await exists()) return name;
      const building = `${name}_${randomBytes(4).toString('hex')}`;
      await client.query(`CREATE SCHEMA ${building}`);
      try {
        const db = createDatabase({ client: 'postgres', url }, { acquireTimeoutMs: 30_000, searchPath: building });
        try {
          await migrateToLatest(db);
        } finally {
          await db.destroy();
        }
        await client.query(`ALTER SCHEMA ${building} RENAME TO ${name}`);
      } catch (error) {
        await client.query(`DROP SCHEMA IF EXISTS ${building} CASCADE`).catch(() => undefined);
        throw error;
      }
      return name;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [TEMPLATE_LOCK_ID]);
    }
  } finally {
    client.release();
  }
}

function postgresTemplate(url: string): Promise<PostgresTemplate> {
  let template = postgresTemplates.get(url);
  if (template === undefined) {
    template = (async () => {
      const schema = await buildPostgresTemplate(url);
      const { stdout } = await promisify(execFile)('pg_dump', ['--schema', schema, '--inserts', '--no-owner', '--no-privileges', url], {
        maxBuffer: 16 * 1024 * 1024,
      }).catch((error: unknown) => {
        throw new Error(`pg_dump (PostgreSQL's client tools) is needed to clone the test template: ${String(error)}`);
      });
      // pg_dump 15.14 and later fence a plain dump with \restrict … \unrestrict, which only psql understands.
      const script = stdout
        .split('\n')
        .filter((line) => !line.startsWith('\\'))
        .join('\n');
      return { schema, script };
    })();
    postgresTemplates.set(url, template);
  }
  return template;
}

/** Creates `schema` as a copy of the migrated template schema: its tables, indexes, sequences and rows. */
export async function clonePostgresTemplate(url: string, schema: string): Promise<void> {
  const template = await postgresTemplate(url);
  // The template's name is a unique, lower-case identifier, so it stands only for itself in the script.
  const script = template.script.replaceAll(template.schema, schema);
  const client = await admin(url).connect();
  let reusable = false;
  try {
    await client.query(`BEGIN;\n${script}\nCOMMIT;`);
    // The script sets the session's search_path and timeouts; put them back before the connection is reused.
    await client.query('RESET ALL');
    reusable = true;
  } finally {
    client.release(!reusable);
  }
}

/** Drops a store's schema. */
export async function dropPostgresSchema(url: string, schema: string): Promise<void> {
  await admin(url).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
}
