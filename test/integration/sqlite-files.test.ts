import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import Sqlite from 'better-sqlite3';
import { createDatabase, migrateToLatest } from '../../src/storage/database.js';

const modeOf = (path: string): number => statSync(path).mode & 0o777;

describe('the SQLite store on disk', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('creates the data dir 0700 and the database, its -wal and its -shm 0600, under a umask that lets others read', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'keyhold-files-'));
    dirs.push(parent);
    const dataDir = join(parent, 'data');
    const filename = join(dataDir, 'keyhold.sqlite');
    // The common umask, which lets group and others read what a process creates without a mode of its own.
    const previousUmask = process.umask(0o022);
    try {
      const db = createDatabase({ client: 'sqlite', filename }, { acquireTimeoutMs: 5_000 });
      try {
        await migrateToLatest(db);
        // The -wal and -shm files exist while a connection is open in WAL mode.
        expect(existsSync(`${filename}-wal`)).toBe(true);
        expect(existsSync(`${filename}-shm`)).toBe(true);
        expect(modeOf(dataDir)).toBe(0o700);
        expect(modeOf(filename)).toBe(0o600);
        expect(modeOf(`${filename}-wal`)).toBe(0o600);
        expect(modeOf(`${filename}-shm`)).toBe(0o600);
      } finally {
        await db.destroy();
      }
    } finally {
      process.umask(previousUmask);
    }
  });

  it('begins every transaction IMMEDIATE: it holds the write lock before its first write, so another process waits for it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyhold-files-'));
    dirs.push(dir);
    const filename = join(dir, 'keyhold.sqlite');
    const db = createDatabase({ client: 'sqlite', filename }, { acquireTimeoutMs: 5_000 });
    // Another process's connection, which does not wait for a lock.
    const other = new Sqlite(filename, { timeout: 0 });
    try {
      await migrateToLatest(db);
      await db.transaction(async (trx) => {
        // Only a read so far: a deferred BEGIN would hold no write lock yet, and the other writer would get in.
        await trx.raw('select count(*) from keys');
        expect(() => other.exec('BEGIN IMMEDIATE')).toThrow(/database is locked/);
      });
      other.exec('BEGIN IMMEDIATE');
      other.exec('ROLLBACK');
    } finally {
      other.close();
      await db.destroy();
    }
  });
});
