import { describe, expect, it } from 'vitest';
import { parseCiphertext } from '../../../src/crypto/ciphertext-format.js';
import { keyVersionWrapAad, openWithKeyVersion } from '../../../src/crypto/key-version-cipher.js';
import { LocalRootKey, parseRootKeyText } from '../../../src/root-keys/root-key.js';
import { SecretBytes } from '../../../src/crypto/secret-bytes.js';
import { GOLDEN_KH1 } from '../../helpers/golden.js';

describe('golden kh1 ciphertexts', () => {
  const rootKey = new LocalRootKey(parseRootKeyText(GOLDEN_KH1.rootKey)!);

  it('the root key still has the recorded id and check value', () => {
    expect(rootKey.id).toBe(GOLDEN_KH1.rootKeyId);
    expect(rootKey.checkValue).toBe(GOLDEN_KH1.rootKeyCheckValue);
  });

  for (const [index, golden] of GOLDEN_KH1.cases.entries()) {
    it(`case ${index} (version ${golden.version}) still decrypts to its plaintext`, async () => {
      const wrapped = GOLDEN_KH1.versions.find((v) => v.version === golden.version)!;
      const material = await rootKey.unwrap(
        Buffer.from(wrapped.wrappedMaterial, 'base64'),
        keyVersionWrapAad(GOLDEN_KH1.keyId, golden.version),
      );
      const parsed = parseCiphertext(golden.ciphertext);
      expect(parsed.keyId).toBe(GOLDEN_KH1.keyId);
      expect(parsed.keyVersion).toBe(golden.version);
      const plaintext = openWithKeyVersion(parsed, SecretBytes.adopt(material), golden.context);
      expect(plaintext.toString('base64')).toBe(golden.plaintext);
    });
  }
});
