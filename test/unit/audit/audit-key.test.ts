import { createHmac, hkdfSync } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { AUDIT_KEY_INFO, auditHmac, deriveAuditKeyFromSecret } from '../../../src/audit/audit-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';

const ROOT_SECRET = Buffer.alloc(32, 0x01);

describe('deriveAuditKeyFromSecret', () => {
  it('is HKDF-SHA256 with an empty salt and the info "keyhold/audit/v1"', () => {
    const expected = Buffer.from(hkdfSync('sha256', ROOT_SECRET, Buffer.alloc(0), 'keyhold/audit/v1', 32));
    expect(AUDIT_KEY_INFO).toBe('keyhold/audit/v1');
    expect(deriveAuditKeyFromSecret(ROOT_SECRET).use((bytes) => Buffer.from(bytes))).toEqual(expected);
  });

  it('derives the same key from the same secret, on every replica', () => {
    const a = deriveAuditKeyFromSecret(ROOT_SECRET).copyInsecure();
    const b = deriveAuditKeyFromSecret(Buffer.from(ROOT_SECRET)).copyInsecure();
    expect(a).toEqual(b);
  });

  it('derives different keys from different secrets', () => {
    const a = deriveAuditKeyFromSecret(ROOT_SECRET).copyInsecure();
    const b = deriveAuditKeyFromSecret(Buffer.alloc(32, 0x02)).copyInsecure();
    expect(a).not.toEqual(b);
  });

  it('derives a key that is neither the root key nor the root key id or check value', () => {
    const key = deriveAuditKeyFromSecret(ROOT_SECRET).copyInsecure();
    expect(key).not.toEqual(ROOT_SECRET);
    for (const label of ['keyhold/root-key/id/v1', 'keyhold/root-key/check/v1']) {
      expect(key).not.toEqual(createHmac('sha256', ROOT_SECRET).update(label).digest());
    }
  });

  it('returns SecretBytes that print as [REDACTED] and do not alias the secret', () => {
    const secret = Buffer.from(ROOT_SECRET);
    const key = deriveAuditKeyFromSecret(secret);
    expect(key).toBeInstanceOf(SecretBytes);
    expect(key.length).toBe(32);
    expect(inspect(key)).toBe('SecretBytes([REDACTED])');
    secret.fill(0);
    expect(key.copyInsecure()).toEqual(deriveAuditKeyFromSecret(ROOT_SECRET).copyInsecure());
  });

  it('refuses a secret shorter than 32 bytes', () => {
    expect(() => deriveAuditKeyFromSecret(Buffer.alloc(31, 1))).toThrow(RangeError);
  });
});


describe('auditHmac', () => {
  it('refuses a key that is not 32 bytes', () => {
    expect(() => auditHmac(Buffer.alloc(16), ['x'])).toThrow(RangeError);
    expect(() => auditHmac(Buffer.alloc(0), ['x'])).toThrow(RangeError);
  });

  it('refuses a zeroed key', () => {
    const key = SecretBytes.adopt(Buffer.alloc(32, 0x61));
    key.zero();
    expect(() => auditHmac(key, ['x'])).toThrow(/zeroed/);
  });
});
