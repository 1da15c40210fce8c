import type { Knex } from 'knex';
import type { ChangeAction } from '../changes/change.js';
import { recordChange } from './knex-change-repository.js';
import type { Database } from './database.js';
import { isPostgres } from './database.js';
import { KeyholdError } from '../errors.js';
import type { BoundAttribute, KeyRecord, KeyState, KeySummary, KeyVersionRecord, KeyVersionState, WrappedKeyVersion } from '../keys/key-record.js';
import type { KeyChanges, KeyListQuery, KeyRepository, LockedKeyWriter, NewVersion, RevisedKey } from '../keys/key-repository.js';
import { isUniqueViolation } from '../lib/database-errors.js';

interface KeyRow {
  id: string;
  name: string;
  description: string;
  labels: string;
  bound_context: string;
  state: string;
  primary_version: number;
  min_decryption_version: number;
  rotation_period_seconds: number | null;
  retain_versions: number | null;
  next_rotation_at: number | null;
  deletion_date: number | null;
  created_at: number;
  updated_at: number;
  destroyed_at: number | null;
  revision: number;
}

interface VersionRow {
  key_id: string;
  version: number;
  state: string;
  root_key_id: string;
  created_at: number;
  updated_at: number;
  destroyed_at: number | null;
}

const VERSION_COLUMNS = ['key_id', 'version', 'state', 'root_key_id', 'created_at', 'updated_at', 'destroyed_at'];

const date = (ms: number | null): Date | null => (ms === null ? null : new Date(Number(ms)));
const ms = (value: Date | null): number | null => (value === null ? null : value.getTime());

function toVersion(row: VersionRow): KeyVersionRecord {
  return {
    version: Number(row.version),
    state: row.state as KeyVersionState,
    rootKeyId: row.root_key_id,
    createdAt: new Date(Number(row.created_at)),
    updatedAt: new Date(Number(row.updated_at)),
    destroyedAt: date(row.destroyed_at),
  };
}

function toKey(row: KeyRow, versions: VersionRow[]): KeyRecord {
  return { ...toKeyFields(row), versions: versions.map(toVersion) };
}

function toKeyFields(row: KeyRow): Omit<KeyRecord, 'versions'> {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    labels: JSON.parse(row.labels) as Record<string, string>,
    boundContext: JSON.parse(row.bound_context) as BoundAttribute[],
    state: row.state as KeyState,
    primaryVersion: Number(row.primary_version),
    minDecryptionVersion: Number(row.min_decryption_version),
    rotationPeriodSeconds: row.rotation_period_seconds === null ? null : Number(row.rotation_period_seconds),
    retainVersions: row.retain_versions === null ? null : Number(row.retain_versions),
    nextRotationAt: date(row.next_rotation_at),
    deletionDate: date(row.deletion_date),
    createdAt: new Date(Number(row.created_at)),
    updatedAt: new Date(Number(row.updated_at)),
    destroyedAt: date(row.destroyed_at),
  };
}

/** Per key of a listing: its versions counted, and when its primary version was created. */
interface VersionCountRow {
  version_count: number;
  enabled_count: number;
  primary_created_at: number | null;
}

function keyColumns(changes: KeyChanges): Record<string, unknown> {
  const row: Record<string, unknown> = { updated_at: changes.updatedAt.getTime() };
  if (changes.description !== undefined) row.description = changes.description;
  if (changes.labels !== undefined) row.labels = JSON.stringify(changes.labels);
  if (changes.state !== undefined) row.state = changes.state;
  if (changes.primaryVersion !== undefined) row.primary_version = changes.primaryVersion;
  if (changes.minDecryptionVersion !== undefined) row.min_decryption_version = changes.minDecryptionVersion;
  if (changes.rotationPeriodSeconds !== undefined) row.rotation_period_seconds = changes.rotationPeriodSeconds;
  if (changes.retainVersions !== undefined) row.retain_versions = changes.retainVersions;
  if (changes.nextRotationAt !== undefined) row.next_rotation_at = ms(changes.nextRotationAt);
  if (changes.deletionDate !== undefined) row.deletion_date = ms(changes.deletionDate);
  if (changes.destroyedAt !== undefined) row.destroyed_at = ms(changes.destroyedAt);
  return row;
}

/** Keys and their wrapped versions in the `keys` and `key_versions` tables. No other module writes SQL for them. */
export class KnexKeyRepository implements KeyRepository {
  constructor(private readonly db: Database) {}

  async create(key: KeyRecord, firstVersion: NewVersion): Promise<void> {
    try {
      await this.#insert(key, firstVersion);
    } catch (error) {
      if (isUniqueViolation(error)) throw new KeyholdError('KH_ERR_KEY_EXISTS');
      throw error;
    }
  }

  async #insert(key: KeyRecord, firstVersion: NewVersion): Promise<void> {
    await this.db.transaction(async (trx) => {
      await trx('keys').insert({
        id: key.id,
        name: key.name,
        description: key.description,
        labels: JSON.stringify(key.labels),
        bound_context: JSON.stringify(key.boundContext),
        state: key.state,
        primary_version: key.primaryVersion,
        min_decryption_version: key.minDecryptionVersion,
        rotation_period_seconds: key.rotationPeriodSeconds,
        retain_versions: key.retainVersions,
        next_rotation_at: ms(key.nextRotationAt),
        deletion_date: ms(key.deletionDate),
        created_at: key.createdAt.getTime(),
        updated_at: key.updatedAt.getTime(),
        destroyed_at: ms(key.destroyedAt),
      });
      await insertVersion(trx, key.id, firstVersion);
      await recordChange(trx, { kind: 'key', action: 'create', subject: key.id, keyName: key.name, at: key.createdAt });
    });
  }

  async findByName(name: string): Promise<KeyRecord | undefined> {
    return (await this.findOne(this.db, { name }, false))?.key;
  }

  async findRevised(where: { readonly id: string } | { readonly name: string }): Promise<RevisedKey | undefined> {
    return this.findOne(this.db, 'id' in where ? { id: where.id } : { name: where.name }, false);
  }

  async findRevision(id: string): Promise<number | undefined> {
    const row = (await this.db<KeyRow>('keys').select('revision').where({ id }).first()) as Pick<KeyRow, 'revision'> | undefined;
    return row?.revision;
  }

  async findNameById(id: string): Promise<string | undefined> {
    const row = (await this.db<KeyRow>('keys').select('name').where({ id }).first()) as Pick<KeyRow, 'name'> | undefined;
    return row?.name;
  }

  async list(query: KeyListQuery): Promise<KeySummary[]> {
    // One statement, so each summary is of one state of its key: the counts and the primary version's time are
    // correlated subqueries on the (key_id, version) primary key, and no version row leaves the database.
    const versionsOf = () => this.db('key_versions as v').whereRaw('v.key_id = keys.id');
    const builder = this.db<KeyRow>('keys')
      .select(
        'keys.*',
        versionsOf().count('*').as('version_count'),
        versionsOf().where('v.state', 'enabled').count('*').as('enabled_count'),
        versionsOf().whereRaw('v.version = keys.primary_version').select('v.created_at').as('primary_created_at'),
      )
      .orderBy('name', 'asc')
      .limit(query.limit);
    if (query.prefix) {
      // Every character a name may hold sorts below '~', so [prefix, prefix + '~') is exactly the names that start
      // with it, under byte-wise collation, and the range uses the name index.
      builder.where('name', '>=', query.prefix).andWhere('name', '<', `${query.prefix}~`);
    }
    if (query.after !== undefined) builder.andWhere('name', '>', query.after);
    const rows = (await builder) as Array<KeyRow & VersionCountRow>;
    return rows.map((row): KeySummary => ({
      ...toKeyFields(row),
      versionCount: Number(row.version_count),
      enabledVersionCount: Number(row.enabled_count),
      primaryVersionCreatedAt: new Date(Number(row.primary_created_at ?? row.created_at)),
    }));
  }

  /** Every version that still has material, or only those of `versions`, wrapped. */
  async findWrappedVersions(keyId: string, versions?: readonly number[]): Promise<WrappedKeyVersion[]> {
    const query = this.db('key_versions')
      .select('version', 'root_key_id', 'material')
      .where({ key_id: keyId })
      .whereNotNull('material')
      .orderBy('version');
    if (versions !== undefined) query.whereIn('version', [...versions]);
    const rows = await query;
    return rows.map((row: { version: number; root_key_id: string; material: Buffer }) => ({
      version: Number(row.version),
      rootKeyId: row.root_key_id,
      material: Buffer.from(row.material),
    }));
  }

  async findDueForDestruction(now: Date, limit: number): Promise<string[]> {
    const rows = await this.db('keys')
      .select('name')
      .where({ state: 'pending_deletion' })
      .andWhere('deletion_date', '<=', now.getTime())
      .orderBy('deletion_date')
      .limit(limit);
    return rows.map((row: { name: string }) => row.name);
  }

  async findDueForRotation(now: Date, limit: number): Promise<string[]> {
    const rows = await this.db('keys')
      .select('name')
      .where({ state: 'enabled' })
      .whereNotNull('next_rotation_at')
      .andWhere('next_rotation_at', '<=', now.getTime())
      .orderBy('next_rotation_at')
      .limit(limit);
    return rows.map((row: { name: string }) => row.name);
  }

  /**
   * Runs `fn` in a transaction that holds the key's row lock (`SELECT … FOR UPDATE` on PostgreSQL; SQLite
   * serialises writers), so concurrent rotations and state changes apply one after another. If `fn` wrote, the
   * same transaction records `action` (or `destroy`, when it destroyed the key) in the change feed. Returns
   * undefined when no key has this name, or, with `skipLocked`, when another transaction holds its lock (`SKIP
   * LOCKED` on PostgreSQL).
   */
  async mutate<T>(
    name: string,
    action: ChangeAction,
    fn: (key: KeyRecord, writer: LockedKeyWriter) => Promise<T>,
    options: { readonly skipLocked?: boolean } = {},
  ): Promise<{ result: T; key: KeyRecord } | undefined> {
    return this.db.transaction(async (trx) => {
      const key = (await this.findOne(trx, { name }, options.skipLocked === true ? 'skip-locked' : true))?.key;
      if (key === undefined) return undefined;
      let recorded: { action: ChangeAction; at: Date } | undefined;
      const wrote = (at: Date, destroyed = false) => {
        recorded = { action: destroyed ? 'destroy' : (recorded?.action ?? action), at };
      };
      const writer: LockedKeyWriter = {
        updateKey: async (changes) => {
          await trx('keys').where({ id: key.id }).update(keyColumns(changes));
          wrote(changes.updatedAt);
        },
        insertVersion: async (version) => {
          await insertVersion(trx, key.id, version);
          wrote(version.createdAt);
        },
        setVersionState: async (version, state, at) => {
          await trx('key_versions')
            .where({ key_id: key.id, version })
            .update({ state, updated_at: at.getTime() });
          wrote(at);
        },
        destroyAllVersions: async (at) => {
          await trx('key_versions').where({ key_id: key.id }).update({
            state: 'destroyed',
            material: null,
            updated_at: at.getTime(),
            destroyed_at: at.getTime(),
          });
          wrote(at, true);
        },
      };
      const result = await fn(key, writer);
      if (recorded !== undefined) {
        await trx('keys').where({ id: key.id }).increment('revision', 1);
        await recordChange(trx, { kind: 'key', action: recorded.action, subject: key.id, keyName: key.name, at: recorded.at });
      }
      const updated = await this.findOne(trx, { id: key.id }, false);
      return { result, key: updated?.key ?? key };
    });
  }

  private async findOne(
    db: Knex | Knex.Transaction,
    where: { name: string } | { id: string },
    forUpdate: boolean | 'skip-locked',
  ): Promise<RevisedKey | undefined> {
    const query = db<KeyRow>('keys').select('*').where(where).first();
    if (forUpdate !== false && isPostgres(this.db)) {
      query.forUpdate();
      if (forUpdate === 'skip-locked') query.skipLocked();
    }
    const row = (await query) as KeyRow | undefined;
    if (row === undefined) return undefined;
    const versions = (await db('key_versions')
      .select(VERSION_COLUMNS)
      .where({ key_id: row.id })
      .orderBy('version')) as VersionRow[];
    return { key: toKey(row, versions), revision: row.revision };
  }
}

async function insertVersion(db: Knex | Knex.Transaction, keyId: string, version: NewVersion): Promise<void> {
  await db('key_versions').insert({
    key_id: keyId,
    version: version.version,
    state: version.state,
    material: version.material,
    root_key_id: version.rootKeyId,
    created_at: version.createdAt.getTime(),
    updated_at: version.createdAt.getTime(),
    destroyed_at: null,
  });
}
