import { createHmac, timingSafeEqual } from 'node:crypto';
import { hkdfSha256 } from '../crypto/hkdf.js';
import { SecretBytes } from '../crypto/secret-bytes.js';

/** The HKDF `info` that derives the audit key from the root key. A new label means a new, unrelated key. */
export const AUDIT_KEY_INFO = 'keyhold/audit/v1';

/** The audit key is an HMAC-SHA256 key of one hash length (RFC 2104 §3: shorter keys weaken it). */
export const AUDIT_KEY_BYTES = 32;

/** The smallest secret the audit key may be derived from. The root key is 32 bytes. */
const MIN_SECRET_BYTES = 32;

const EMPTY_SALT = Buffer.alloc(0);

/** The audit key as the audit modules accept it: wrapped, or raw bytes in tests and in `SecretBytes.use` callbacks. */
export type AuditKeyMaterial = SecretBytes | Uint8Array;

/**
 * Derives the audit key from the root key's secret bytes: HKDF-SHA256 (RFC 5869) with an empty salt and the info
 * label {@link AUDIT_KEY_INFO}. The root key is uniformly random, so no salt is needed (RFC 5869 §3.1), and the
 * derivation is deterministic, so every replica and the `keyhold audit verify` command derive the same key.
 *
 * It is derived once, from the store's first root key, and then stored wrapped under the root key (see
 * `loadAuditKey`), so a root key rotation rewraps it instead of changing it and every chain stays verifiable.
 * Someone with the database alone cannot recompute the chain. The root key implementation calls this with its own
 * bytes; a root key that never shows its bytes (an HSM) computes the same HKDF inside the device instead.
 */
export function deriveAuditKeyFromSecret(secret: Uint8Array): SecretBytes {
  if (!(secret instanceof Uint8Array)) throw new TypeError('The audit key is derived from bytes');
  if (secret.length < MIN_SECRET_BYTES) {
    throw new RangeError(`The audit key is derived from a secret of at least ${MIN_SECRET_BYTES} bytes`);
  }
  return SecretBytes.adopt(hkdfSha256(secret, EMPTY_SALT, Buffer.from(AUDIT_KEY_INFO, 'ascii'), AUDIT_KEY_BYTES));
}

/**
 * HMAC-SHA256 under the audit key over the concatenation of `parts`. Every message the audit modules MAC starts
 * with its own fixed prefix (a 32-byte previous hash for chain links, an ASCII label for everything else), so a
 * MAC computed for one purpose is never valid for another.
 */
export function auditHmac(auditKey: AuditKeyMaterial, parts: ReadonlyArray<Uint8Array | string>): Buffer {
  const compute = (key: Uint8Array): Buffer => {
    if (key.length !== AUDIT_KEY_BYTES) throw new RangeError(`The audit key must be ${AUDIT_KEY_BYTES} bytes`);
    const mac = createHmac('sha256', key);
    for (const part of parts) mac.update(part);
    return mac.digest();
  };
  if (auditKey instanceof SecretBytes) return auditKey.use(compute);
  if (auditKey instanceof Uint8Array) return compute(auditKey);
  throw new TypeError('The audit key must be SecretBytes or bytes');
}

/** Whether a value is a hash or MAC as the audit modules write them: 64 lower-case hex characters. */
export function isAuditHash(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);
}

/** Compares a MAC with a hex one without a data-dependent early exit, so a verifier is no forging oracle. */
export function auditMacEquals(expected: Buffer, actual: unknown): boolean {
  return isAuditHash(actual) && timingSafeEqual(expected, Buffer.from(actual, 'hex'));
}
