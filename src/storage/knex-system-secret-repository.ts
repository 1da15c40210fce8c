import type { Database } from './database.js';
import type { SystemSecretRepository, WrappedSystemSecret } from '../root-keys/system-secret-repository.js';

/** The service's own secrets in the `system_secrets` table. */
export class KnexSystemSecretRepository implements SystemSecretRepository {
  constructor(private readonly db: Database) {}

  async find(name: string): Promise<WrappedSystemSecret | undefined> {
    const row = (await this.db('system_secrets').first('name', 'root_key_id', 'material').where({ name })) as
      | { name: string; root_key_id: string; material: Buffer }
      | undefined;
    if (row === undefined) return undefined;
    return { name: row.name, rootKeyId: row.root_key_id, material: Buffer.from(row.material) };
  }

  /**
   * Stores `secret` unless one of that name is stored already, and returns the one stored after. Replicas that
   * start together each try; the first insert wins and the others read it back.
   */
  async insertIfAbsent(secret: WrappedSystemSecret, at: Date): Promise<WrappedSystemSecret> {
    await this.db('system_secrets')
      .insert({
        name: secret.name,
        root_key_id: secret.rootKeyId,
        material: secret.material,
        created_at: at.getTime(),
        updated_at: at.getTime(),
      })
      .onConflict('name')
      .ignore();
    const stored = await this.find(secret.name);
    if (stored === undefined) throw new Error(`The system secret ${secret.name} was not stored`);
    return stored;
  }
}
