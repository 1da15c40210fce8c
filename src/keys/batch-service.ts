import { callerOf, type Caller } from '../context/caller.js';
import type { EncryptionContext } from '../crypto/encryption-context.js';
import { KeyholdError } from '../errors.js';
import { isDatabaseUnavailable } from '../lib/database-errors.js';
import type { CiphertextResult, EnvelopeService, DataKeyResult, DecryptResult } from './envelope-service.js';

export type BatchItem =
  | { op: 'datakey'; key: string; context?: EncryptionContext; includePlaintext?: boolean; bytes?: number }
  | { op: 'encrypt'; key: string; plaintext: string; context?: EncryptionContext }
  | { op: 'decrypt'; key?: string; ciphertext: string; context?: EncryptionContext }
  | { op: 'rewrap'; key: string; ciphertext: string; context?: EncryptionContext; destinationContext?: EncryptionContext };

export type BatchOutcome =
  | { readonly ok: true; readonly op: 'datakey'; readonly result: DataKeyResult }
  | { readonly ok: true; readonly op: 'decrypt'; readonly result: DecryptResult }
  | { readonly ok: true; readonly op: 'encrypt' | 'rewrap'; readonly result: CiphertextResult }
  | { readonly ok: false; readonly error: unknown };

/**
 * Runs up to a thousand crypto operations for one caller. Each item is authorised and checked on its own, and a
 * refusal or bad item fails only that item. An unexpected error fails the whole request, as it would alone.
 *
 * Each item runs on an audit trail of its own, exactly as the same operation alone would, and is then counted in
 * the request's: the batch's record lists every key, version and outcome its items had.
 */
export class BatchService {
  constructor(private readonly crypto: EnvelopeService) {}

  async run(caller: Caller, items: readonly BatchItem[]): Promise<BatchOutcome[]> {
    const outcomes: BatchOutcome[] = [];
    for (const item of items) {
      const itemCaller = callerOf(caller.principal);
      let outcome: BatchOutcome;
      try {
        outcome = await this.#runOne(itemCaller, item);
      } catch (error) {
        if (!(error instanceof KeyholdError) && !isDatabaseUnavailable(error)) {
          caller.trail.batchItem(itemCaller.trail, 'KH_ERR_INTERNAL', item.op, item.key);
          throw error;
        }
        outcome = { ok: false, error };
      }
      // The code the item's problem carries (see problemOf): its own, or unavailable for a database outage.
      const code = outcome.ok ? 'ok' : outcome.error instanceof KeyholdError ? outcome.error.code : 'KH_ERR_UNAVAILABLE';
      caller.trail.batchItem(itemCaller.trail, code, item.op, item.key);
      outcomes.push(outcome);
    }
    return outcomes;
  }

  async #runOne(caller: Caller, item: BatchItem): Promise<BatchOutcome> {
    switch (item.op) {
      case 'datakey':
        return { ok: true, op: item.op, result: await this.crypto.generateDataKey(caller, item.key, item) };
      case 'encrypt':
        return {
          ok: true,
          op: item.op,
          result: await this.crypto.encrypt(caller, item.key, {
            plaintext: Buffer.from(item.plaintext, 'base64'),
            context: item.context,
          }),
        };
      case 'decrypt':
        return {
          ok: true,
          op: item.op,
          result: await this.crypto.decrypt(caller, { ciphertext: item.ciphertext, context: item.context, keyName: item.key }),
        };
      case 'rewrap':
        return { ok: true, op: item.op, result: await this.crypto.rewrap(caller, item.key, item) };
    }
  }
}
