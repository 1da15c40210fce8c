import { expect } from 'vitest';
import { DecryptionFailedError } from '../../src/errors.js';

/** The one message every decryption failure carries (RFC 7516 §11.5: no oracle). */
export const DECRYPTION_FAILED_MESSAGE = 'The ciphertext could not be decrypted';

/** Runs `action` and returns what it threw; fails the test if it did not throw. */
export function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  throw new Error('expected the action to throw');
}

export function expectDecryptionFailed(action: () => unknown): void {
  const error = thrownBy(action);
  expect(error).toBeInstanceOf(DecryptionFailedError);
  expect(error).toMatchObject({ code: 'KH_ERR_DECRYPTION_FAILED', status: 400, message: DECRYPTION_FAILED_MESSAGE });
}
