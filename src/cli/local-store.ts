import { existsSync } from 'node:fs';
import type { Config } from '../config.js';
import { createDatabase, type Database } from '../storage/database.js';
import { CliError, EXIT } from './exit-codes.js';

/**
 * Opens the store a local command (`audit verify`, `root rotate`) works on. Only the server creates a store: opening
 * SQLite creates its file, so a command run without `KEYHOLD_DATA_DIR` would otherwise leave an empty
 * `./data/keyhold.sqlite` behind and then report that it is not migrated. A missing file is refused first.
 */
export function openExistingStore(config: Config): Database {
  const { database } = config;
  if (database.client === 'sqlite' && database.filename !== ':memory:' && !existsSync(database.filename)) {
    throw new CliError(
      'KH_CLI_NO_STORE',
      `no store at ${database.filename}: set KEYHOLD_DATA_DIR or KEYHOLD_DATABASE_URL as for the server`,
      EXIT.failure,
    );
  }
  return createDatabase(database, { acquireTimeoutMs: config.databaseTimeoutMs });
}
