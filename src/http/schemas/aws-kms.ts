import { Type, type TSchema } from '@sinclair/typebox';
import { MAX_CONTEXT_PAIRS } from '../../crypto/encryption-context.js';
import { MAX_ENCRYPT_PLAINTEXT_BYTES } from '../../keys/envelope-service.js';
import { Description } from './keys.js';

/**
 * The inputs of the AWS KMS operations the endpoint serves, as the AWS JSON 1.1 protocol sends them: members in
 * AWS's names, blobs as standard base64. Members AWS defines and Keyhold ignores (GrantTokens) are allowed, and so
 * is any member a newer SDK adds: AWS ignores what it does not know.
 */
const BASE64 = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$';

/** Base64 of at most `maxBytes` bytes. */
function blob(minBytes: number, maxBytes: number) {
  return Type.String({ pattern: BASE64, minLength: Math.ceil(minBytes / 3) * 4, maxLength: Math.ceil(maxBytes / 3) * 4 });
}

const KeyId = Type.String({ minLength: 1, maxLength: 2048 });
/** As the native API's (common.ts), so a ciphertext made here always decrypts there. */
const EncryptionContext = Type.Record(Type.String({ minLength: 1, maxLength: 1024 }), Type.String({ maxLength: 8192 }), { maxProperties: MAX_CONTEXT_PAIRS });
const GrantTokens = Type.Array(Type.String({ minLength: 1, maxLength: 8192 }), { maxItems: 10 });
const SymmetricDefault = Type.Literal('SYMMETRIC_DEFAULT');
/** A Keyhold ciphertext of the largest plaintext Encrypt takes, with room to spare; AWS's bound is 6144 bytes. */
const CiphertextBlob = blob(1, 6144);
const Limit = Type.Integer({ minimum: 1, maximum: 1000 });
const Marker = Type.String({ minLength: 1, maxLength: 1024 });

const operation = <T extends Record<string, TSchema>>(members: T) => Type.Object(members);

export const GenerateDataKeyInput = operation({
  KeyId,
  NumberOfBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  KeySpec: Type.Optional(Type.Union([Type.Literal('AES_256'), Type.Literal('AES_128')])),
  EncryptionContext: Type.Optional(EncryptionContext),
  GrantTokens: Type.Optional(GrantTokens),
});

export const EncryptInput = operation({
  KeyId,
  Plaintext: blob(1, MAX_ENCRYPT_PLAINTEXT_BYTES),
  EncryptionContext: Type.Optional(EncryptionContext),
  EncryptionAlgorithm: Type.Optional(SymmetricDefault),
  GrantTokens: Type.Optional(GrantTokens),
});

export const DecryptInput = operation({
  CiphertextBlob,
  KeyId: Type.Optional(KeyId),
  EncryptionContext: Type.Optional(EncryptionContext),
  EncryptionAlgorithm: Type.Optional(SymmetricDefault),
  GrantTokens: Type.Optional(GrantTokens),
});

export const ReEncryptInput = operation({
  CiphertextBlob,
  SourceKeyId: Type.Optional(KeyId),
  SourceEncryptionContext: Type.Optional(EncryptionContext),
  SourceEncryptionAlgorithm: Type.Optional(SymmetricDefault),
  DestinationKeyId: KeyId,
  DestinationEncryptionContext: Type.Optional(EncryptionContext),
  DestinationEncryptionAlgorithm: Type.Optional(SymmetricDefault),
  GrantTokens: Type.Optional(GrantTokens),
});

export const KeyIdInput = operation({ KeyId, GrantTokens: Type.Optional(GrantTokens) });

export const ListKeysInput = operation({ Limit: Type.Optional(Limit), Marker: Type.Optional(Marker) });

export const ListAliasesInput = operation({ KeyId: Type.Optional(KeyId), Limit: Type.Optional(Limit), Marker: Type.Optional(Marker) });

export const CreateKeyInput = operation({
  Description: Type.Optional(Description),
  KeyUsage: Type.Optional(Type.String()),
  KeySpec: Type.Optional(Type.String()),
  CustomerMasterKeySpec: Type.Optional(Type.String()),
  Origin: Type.Optional(Type.String()),
  Tags: Type.Optional(
    Type.Array(Type.Object({ TagKey: Type.String({ minLength: 1, maxLength: 128 }), TagValue: Type.String({ maxLength: 256 }) }), {
      maxItems: 50,
    }),
  ),
});

export const EnableKeyRotationInput = operation({ KeyId, RotationPeriodInDays: Type.Optional(Type.Integer()) });

export const ScheduleKeyDeletionInput = operation({ KeyId, PendingWindowInDays: Type.Optional(Type.Integer()) });

