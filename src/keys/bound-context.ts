import { RESERVED_CONTEXT_PREFIX, type EncryptionContext } from '../crypto/encryption-context.js';
import { KeyholdError } from '../errors.js';
import type { Principal } from '../context/principal.js';
import type { Action } from '../context/actions.js';
import type { KeyRecord } from './key-record.js';

/**
 * The encryption context a key's ciphertexts are really bound to: the caller's context plus, for a key with
 * `boundContext`, `kh.ATTRIBUTE=<the caller's own value>` for each bound attribute. The server adds these from the
 * authenticated identity on every operation, so a ciphertext made by namespace A fails to decrypt for namespace B
 * even under a policy that lets both use the key. Callers cannot set `kh.` keys themselves.
 */
export function boundContextOf(
  key: KeyRecord,
  principal: Principal,
  action: Action,
  context: EncryptionContext | undefined,
): EncryptionContext | undefined {
  if (key.boundContext.length === 0) return context;
  const bound: Record<string, string> = context === undefined ? {} : { ...context };
  // Names are only unique within their authority: namespace "payments" exists in every cluster and under every
  // SPIFFE trust domain. The kind of identity and its authority are always bound with them.
  bound[`${RESERVED_CONTEXT_PREFIX}type`] = principal.type;
  bound[`${RESERVED_CONTEXT_PREFIX}authority`] = principal.attributes.issuer ?? principal.attributes.trustDomain ?? 'keyhold';
  for (const attribute of key.boundContext) {
    const value = attribute === 'id' ? principal.id : principal.attributes[attribute];
    if (value === undefined) {
      throw new KeyholdError(
        'KH_ERR_FORBIDDEN',
        `Not allowed to ${action} on key ${JSON.stringify(key.name)}: it is bound to the caller's ${attribute}, and the caller has none`,
      );
    }
    bound[`${RESERVED_CONTEXT_PREFIX}${attribute}`] = value;
  }
  return bound;
}
