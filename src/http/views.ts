import type { DataKeyResult, DecryptResult } from '../keys/crypto-service.js';

/** Secret bytes become base64 only here, at the edge; the buffer is zeroed once encoded. */
function base64AndZero(bytes: Buffer): string {
  const text = bytes.toString('base64');
  bytes.fill(0);
  return text;
}

// Built field by field: object rest and spread fall to V8's slow generic copy on this, the hottest path.
export function dataKeyView(result: DataKeyResult) {
  const view = { keyId: result.keyId, keyName: result.keyName, keyVersion: result.keyVersion, ciphertext: result.ciphertext };
  if (result.plaintext === undefined) return view;
  return { keyId: view.keyId, keyName: view.keyName, keyVersion: view.keyVersion, ciphertext: view.ciphertext, plaintext: base64AndZero(result.plaintext) };
}

export function decryptView(result: DecryptResult) {
  return {
    keyId: result.keyId,
    keyName: result.keyName,
    keyVersion: result.keyVersion,
    plaintext: base64AndZero(result.plaintext),
  };
}
