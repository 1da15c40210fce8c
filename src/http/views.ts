import type { DataKeyResult, DecryptResult } from '../keys/crypto-service.js';

/** Secret bytes become base64 only here, at the edge; the buffer is zeroed once encoded. */
function base64AndZero(bytes: Buffer): string {
  const text = bytes.toString('base64');
  bytes.fill(0);
  return text;
}

export function dataKeyView(result: DataKeyResult) {
  const { plaintext, ...rest } = result;
  return plaintext === undefined ? rest : { ...rest, plaintext: base64AndZero(plaintext) };
}

export function decryptView(result: DecryptResult) {
  return { ...result, plaintext: base64AndZero(result.plaintext) };
}
