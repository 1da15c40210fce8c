import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface GoldenFixture {
  readonly rootKey: string;
  readonly rootKeyId: string;
  readonly rootKeyCheckValue: string;
  readonly keyId: string;
  readonly versions: ReadonlyArray<{ version: number; wrappedMaterial: string }>;
  readonly cases: ReadonlyArray<{ version: number; context: Record<string, string>; plaintext: string; ciphertext: string }>;
}

/** Format-v1 ciphertexts made by the first release, with the root key and wrapped version keys that made them. */
export const GOLDEN_KH1: GoldenFixture = JSON.parse(
  readFileSync(fileURLToPath(new URL('../fixtures/golden-kh1.json', import.meta.url)), 'utf8'),
);
