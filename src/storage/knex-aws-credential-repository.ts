import type { PrincipalType } from '../context/principal.js';
import type {
  AwsCredentialCursor,
  AwsCredentialRecord,
  AwsCredentialRepository,
  StoredAwsCredential,
} from '../aws-kms/aws-credential-repository.js';
import { KeyholdError } from '../errors.js';
import { isUniqueViolation } from '../lib/database-errors.js';
import { recordChange } from './knex-change-repository.js';
import type { Database } from './database.js';

interface AwsCredentialRow {
  access_key_id: string;
  name: string;
  principal_id: string;
  principal_type: string;
  principal_attributes: string;
  created_by: string;
  created_at: number | string;
  expires_at: number | string | null;
  revoked_at: number | string | null;
}

interface WrappedAwsCredentialRow extends AwsCredentialRow {
  root_key_id: string;
  wrapped_secret: Buffer;
}

/** Every column but the secret's: lists never read it. */
const RECORD_COLUMNS = [
  'access_key_id',
  'name',
  'principal_id',
  'principal_type',
  'principal_attributes',
  'created_by',
  'created_at',
  'expires_at',
  'revoked_at',
] as const;

const dateOf = (value: number | string | null): Date | null => (value === null ? null : new Date(Number(value)));

function toRecord(row: AwsCredentialRow): AwsCredentialRecord {
  return {
    accessKeyId: row.access_key_id,
    name: row.name,
    principal: {
      id: row.principal_id,
      type: row.principal_type as PrincipalType,
      attributes: JSON.parse(row.principal_attributes) as Record<string, string>,
    },
    createdBy: row.created_by,
    createdAt: new Date(Number(row.created_at)),
    expiresAt: dateOf(row.expires_at),
    revokedAt: dateOf(row.revoked_at),
  };
}

/** AWS access keys in the `aws_credentials` table, each secret wrapped under the root key recorded beside it. */
export class KnexAwsCredentialRepository implements AwsCredentialRepository {
  constructor(private readonly db: Database) {}

  async insert(credential: StoredAwsCredential): Promise<void> {
    try {
      await this.db('aws_credentials').insert({
        access_key_id: credential.accessKeyId,
        name: credential.name,
        principal_id: credential.principal.id,
        principal_type: credential.principal.type,
        principal_attributes: JSON.stringify(credential.principal.attributes),
        root_key_id: credential.rootKeyId,
        wrapped_secret: credential.wrappedSecret,
        created_by: credential.createdBy,
        created_at: credential.createdAt.getTime(),
        expires_at: credential.expiresAt?.getTime() ?? null,
        revoked_at: null,
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new KeyholdError('KH_ERR_AWS_CREDENTIAL_EXISTS');
      throw error;
    }
  }

  async find(accessKeyId: string): Promise<StoredAwsCredential | undefined> {
    const row = (await this.db('aws_credentials').where({ access_key_id: accessKeyId }).first()) as WrappedAwsCredentialRow | undefined;
    if (row === undefined) return undefined;
    return { ...toRecord(row), rootKeyId: row.root_key_id, wrappedSecret: Buffer.from(row.wrapped_secret) };
  }

  /** Live access keys (not revoked), ordered by name then access key id, after the cursor; secrets are not read. */
  async list(query: { after?: AwsCredentialCursor | undefined; limit: number }): Promise<AwsCredentialRecord[]> {
    const builder = this.db('aws_credentials')
      .select(RECORD_COLUMNS)
      .whereNull('revoked_at')
      .orderBy([{ column: 'name' }, { column: 'access_key_id' }])
      .limit(query.limit);
    const after = query.after;
    if (after !== undefined) {
      builder.andWhere((where) =>
        where
          .where('name', '>', after.name)
          .orWhere((same) => same.where('name', '=', after.name).andWhere('access_key_id', '>', after.accessKeyId)),
      );
    }
    return ((await builder) as AwsCredentialRow[]).map(toRecord);
  }

  /** Revokes a live access key and, in the same transaction, tells every replica to forget it. */
  async revoke(accessKeyId: string, at: Date): Promise<boolean> {
    return this.db.transaction(async (trx) => {
      const updated = await trx('aws_credentials')
        .where({ access_key_id: accessKeyId })
        .whereNull('revoked_at')
        .update({ revoked_at: at.getTime() });
      if (updated === 0) return false;
      await recordChange(trx, { kind: 'aws-credential', action: 'revoke', subject: accessKeyId, at });
      return true;
    });
  }
}
