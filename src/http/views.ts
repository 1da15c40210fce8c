import type { DataKeyResult, DecryptResult } from '../keys/envelope-service.js';

/** Secret bytes become base64 only here, at the edge; the buffer is zeroed once encoded. */
function base64AndZero(bytes: Buffer): string {
  const text = bytes.toString('base64');
  bytes.fill(0);
  return text;
}

// Built field by field: object rest and spread fall to V8's slow generic copy on this, the hottest path.
export function dataKeyView(result: DataKeyResult) {
  const { keyId, keyName, keyVersion, ciphertext, plaintext } = result;
  if (plaintext === undefined) return { keyId, keyName, keyVersion, ciphertext };
  return { keyId, keyName, keyVersion, ciphertext, plaintext: base64AndZero(plaintext) };
}

export function decryptView(result: DecryptResult) {
  return {
    keyId: result.keyId,
    keyName: result.keyName,
    keyVersion: result.keyVersion,
    plaintext: base64AndZero(result.plaintext),
  };
}
