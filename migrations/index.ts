import type { Knex } from 'knex';
import * as initial from './20261128000000_initial.js';
import * as policies from './20261129000000_policies.js';
import * as audit from './20261129000001_audit.js';
import * as changeFeed from './20261130000000_change_feed.js';
import * as rootKeyRotation from './20261130000001_root_key_rotation.js';
import * as retainVersions from './20261130000002_retain_versions.js';
import * as auditBatchKeys from './20261206000000_audit_batch_keys.js';
import * as auditHeads from './20261206000001_audit_heads.js';
import * as keyUsage from './20261207000000_key_usage.js';
import * as awsCredentials from './20261208000000_aws_credentials.js';
import * as keyRevision from './20261209000000_key_revision.js';

interface Migration {
  readonly name: string;
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/**
 * Migrations in the order they run. They are listed, not discovered from the file system, so that the compiled
 * server and the TypeScript tests run exactly the same set.
 */
const MIGRATIONS: readonly Migration[] = [
  { name: '20261128000000_initial', ...initial },
  { name: '20261129000000_policies', ...policies },
  { name: '20261129000001_audit', ...audit },
  { name: '20261130000000_change_feed', ...changeFeed },
  { name: '20261130000001_root_key_rotation', ...rootKeyRotation },
  { name: '20261130000002_retain_versions', ...retainVersions },
  { name: '20261206000000_audit_batch_keys', ...auditBatchKeys },
  { name: '20261206000001_audit_heads', ...auditHeads },
  { name: '20261207000000_key_usage', ...keyUsage },
  { name: '20261208000000_aws_credentials', ...awsCredentials },
  { name: '20261209000000_key_revision', ...keyRevision },
];

export const migrationSource: Knex.MigrationSource<Migration> = {
  async getMigrations() {
    return [...MIGRATIONS];
  },
  getMigrationName(migration) {
    return migration.name;
  },
  async getMigration(migration) {
    return migration;
  },
};
