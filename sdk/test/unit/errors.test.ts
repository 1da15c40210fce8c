import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DecryptionError, SDK_ERROR_CODES, sdkCodeForService } from '../../src/errors.js';

describe('SDK errors', () => {
  it('sdk/README.md documents every error code, and no other', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const documented = new Set(readme.match(/KH_SDK_[A-Z_]+/g));
    expect([...documented].sort()).toEqual(Object.keys(SDK_ERROR_CODES).sort());
  });

  it('every decryption failure has one message and no cause', () => {
    const a = new DecryptionError();
    const b = new DecryptionError();
    expect(a.message).toBe(b.message);
    expect(a.code).toBe('KH_SDK_DECRYPTION_FAILED');
    expect(a.cause).toBeUndefined();
  });

  it.each([
    [401, 'KH_ERR_UNAUTHENTICATED', 'KH_SDK_UNAUTHENTICATED'],
    [403, 'KH_ERR_FORBIDDEN', 'KH_SDK_ACCESS_DENIED'],
    [404, 'KH_ERR_KEY_NOT_FOUND', 'KH_SDK_KEY_NOT_FOUND'],
    [409, 'KH_ERR_KEY_DISABLED', 'KH_SDK_KEY_STATE'],
    [409, 'KH_ERR_KEY_PENDING_DELETION', 'KH_SDK_KEY_STATE'],
    [409, 'KH_ERR_KEY_DESTROYED', 'KH_SDK_KEY_STATE'],
    [409, 'KH_ERR_KEY_VERSION_DISABLED', 'KH_SDK_KEY_STATE'],
    [409, 'KH_ERR_KEY_VERSION_BELOW_MINIMUM', 'KH_SDK_KEY_STATE'],
    [409, 'KH_ERR_KEY_EXISTS', 'KH_SDK_SERVICE_ERROR'],
    [400, 'KH_ERR_VALIDATION', 'KH_SDK_SERVICE_ERROR'],
    [400, undefined, 'KH_SDK_SERVICE_ERROR'],
  ] as const)('HTTP %i %s maps to %s', (status, serviceCode, code) => {
    expect(sdkCodeForService(status, serviceCode)).toBe(code);
  });
});
