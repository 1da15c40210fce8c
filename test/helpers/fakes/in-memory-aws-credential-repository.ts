import type {
  AwsCredentialCursor,
  AwsCredentialRecord,
  AwsCredentialRepository,
  StoredAwsCredential,
} from '../../../src/aws-kms/aws-credential-repository.js';
import { KeyholdError } from '../../../src/errors.js';
import { compareBytes as compare, LookupGate } from './gate.js';

/**
 * {@link AwsCredentialRepository} in memory, keeping its contract: access key ids and live names unique, live keys
 * listed by name then id after the cursor without their secrets, a revoke only of a live key and recorded as a
 * change. It counts its lookups, and a test can hold them after they read, to race them against a revocation.
 */
export class InMemoryAwsCredentialRepository implements AwsCredentialRepository {
  readonly #rows: StoredAwsCredential[] = [];
  readonly changes: Array<{ action: 'revoke'; subject: string; at: Date }> = [];
  readonly reads = { find: 0, list: 0 };
  readonly #gate = new LookupGate();

  async insert(credential: StoredAwsCredential): Promise<void> {
    const clash = this.#rows.some((c) => c.accessKeyId === credential.accessKeyId || (c.revokedAt === null && c.name === credential.name));
    if (clash) throw new KeyholdError('KH_ERR_AWS_CREDENTIAL_EXISTS');
    this.#rows.push({ ...credential });
  }

  async find(accessKeyId: string): Promise<StoredAwsCredential | undefined> {
    this.reads.find += 1;
    const found = this.#rows.find((c) => c.accessKeyId === accessKeyId);
    await this.#gate.pass();
    return found === undefined ? undefined : { ...found };
  }

  async list(query: { after?: AwsCredentialCursor | undefined; limit: number }): Promise<AwsCredentialRecord[]> {
    this.reads.list += 1;
    const { after } = query;
    return this.#rows
      .filter((c) => c.revokedAt === null)
      .sort((a, b) => compare(a.name, b.name) || compare(a.accessKeyId, b.accessKeyId))
      .filter((c) => after === undefined || compare(c.name, after.name) > 0 || (c.name === after.name && compare(c.accessKeyId, after.accessKeyId) > 0))
      .slice(0, query.limit)
      .map(({ rootKeyId: _r, wrappedSecret: _w, ...record }) => record);
  }

  async revoke(accessKeyId: string, at: Date): Promise<boolean> {
    const index = this.#rows.findIndex((c) => c.accessKeyId === accessKeyId && c.revokedAt === null);
    if (index < 0) return false;
    this.#rows[index] = { ...this.#rows[index]!, revokedAt: at };
    this.changes.push({ action: 'revoke', subject: accessKeyId, at });
    return true;
  }

  /** The stored row, as a database dump would show it. */
  row(accessKeyId: string): StoredAwsCredential | undefined {
    return this.#rows.find((c) => c.accessKeyId === accessKeyId);
  }

  /** Overwrites a stored row's fields, as tampering with the store would. */
  tamper(accessKeyId: string, fields: Partial<StoredAwsCredential>): void {
    const index = this.#rows.findIndex((c) => c.accessKeyId === accessKeyId);
    this.#rows[index] = { ...this.#rows[index]!, ...fields };
  }

  /** Makes lookups wait, after they read, until the returned function is called. */
  holdLookups(): () => void {
    return this.#gate.close();
  }
}

