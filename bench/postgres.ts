/**
 * The PostgreSQL side shared by the benchmarks: which server to use, and scratch databases of their own on it that
 * are dropped before and after a run, so a run never sees or leaves another run's rows.
 */
import pg from 'pg';

const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

/**
 * `KEYHOLD_BENCH_DATABASE_URL`, else `KEYHOLD_TEST_DATABASE_URL`, else a local default. Only its server and
 * credentials are used: the benchmarks connect to its database just to create and drop their own.
 */
export function benchDatabaseUrl(): string {
  return process.env.KEYHOLD_BENCH_DATABASE_URL || process.env.KEYHOLD_TEST_DATABASE_URL || DEFAULT_DATABASE_URL;
}

/** Hides credentials in a database URL before it is printed or saved. */
export function redactUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}

/** One plain connection (no pool, no statement timeout) for the duration of `work`. */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * Drops and creates `name` on the server of `adminUrl` and returns the new database's URL. `WITH (FORCE)`
 * (PostgreSQL 13+) ends the sessions a crashed run left behind. Refuses to drop the database it connects through.
 */
export async function recreateDatabase(adminUrl: string, name: string): Promise<string> {
  const url = new URL(adminUrl);
  if (decodeURIComponent(url.pathname.slice(1)) === name) {
    throw new Error(`Point KEYHOLD_BENCH_DATABASE_URL at another database than ${name}: it is dropped`);
  }
  await withClient(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${name}`);
  });
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
}
