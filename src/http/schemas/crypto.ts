import { Type } from '@sinclair/typebox';
import { MAX_DATA_KEY_BYTES, MAX_ENCRYPT_PLAINTEXT_BYTES, MIN_DATA_KEY_BYTES } from '../../keys/envelope-service.js';
import { EncryptionContext, KeyName, ref } from './common.js';

/** Envelope operations: data keys, encrypt, decrypt, rewrap and rewrap-revoked. Batch items reuse their fields. */

const STANDARD_BASE64 = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$';
const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4;

export const Ciphertext = Type.String({
  $id: 'Ciphertext',
  pattern: '^kh1:[A-Za-z0-9_-]+$',
  maxLength: 16384,
  description: 'A Keyhold ciphertext: "kh1:" and unpadded base64url (docs/ciphertext-format.md).',
});

const Plaintext = Type.String({
  pattern: STANDARD_BASE64,
  maxLength: base64Length(MAX_ENCRYPT_PLAINTEXT_BYTES),
  description: `Standard base64 of at most ${MAX_ENCRYPT_PLAINTEXT_BYTES} bytes.`,
});

export const dataKeyFields = {
  context: Type.Optional(ref(EncryptionContext)),
  includePlaintext: Type.Optional(Type.Boolean({ description: 'Default true. When false, only the wrapped key is returned.' })),
  bytes: Type.Optional(Type.Integer({ minimum: MIN_DATA_KEY_BYTES, maximum: MAX_DATA_KEY_BYTES, description: 'Default 32.' })),
};
export const encryptFields = { plaintext: Plaintext, context: Type.Optional(ref(EncryptionContext)) };
export const decryptFields = { ciphertext: ref(Ciphertext), context: Type.Optional(ref(EncryptionContext)) };
export const rewrapFields = { ...decryptFields, destinationContext: Type.Optional(ref(EncryptionContext)) };

export const DataKeyBody = Type.Object(dataKeyFields, { additionalProperties: false });
export const EncryptBody = Type.Object(encryptFields, { additionalProperties: false });
export const DecryptBody = Type.Object(decryptFields, { additionalProperties: false });
export const RewrapBody = Type.Object(rewrapFields, { additionalProperties: false });
/** No destination context: the migrated ciphertext keeps the context of the one it replaces. */
export const RewrapRevokedBody = Type.Object(decryptFields, { additionalProperties: false });

const keyVersionRefFields = { keyId: Type.String({ format: 'uuid' }), keyName: ref(KeyName), keyVersion: Type.Integer({ minimum: 1 }) };

export const DataKeyResult = Type.Object(
  {
    ...keyVersionRefFields,
    ciphertext: ref(Ciphertext),
    plaintext: Type.Optional(Type.String({ description: 'Standard base64 of the data key; absent when includePlaintext is false.' })),
  },
  { $id: 'DataKeyResult', additionalProperties: false },
);
export const CiphertextResult = Type.Object(
  { ...keyVersionRefFields, ciphertext: ref(Ciphertext) },
  { $id: 'CiphertextResult', additionalProperties: false },
);
export const DecryptResult = Type.Object(
  { ...keyVersionRefFields, plaintext: Type.String({ description: 'Standard base64.' }) },
  { $id: 'DecryptResult', additionalProperties: false },
);
