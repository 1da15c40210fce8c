import { Type } from '@sinclair/typebox';
import { KeyName, ProblemRef, ref } from './common.js';
import {
  CiphertextResult,
  dataKeyFields,
  DataKeyResult,
  decryptFields,
  DecryptResult,
  encryptFields,
  rewrapFields,
} from './crypto.js';

/** `POST /v1/batch`: the envelope operations' own fields, one item each, and a status and problem per result. */

export const MAX_BATCH_ITEMS = 1000;

export const BatchItem = Type.Union(
  [
    Type.Object({ op: Type.Literal('datakey'), key: ref(KeyName), ...dataKeyFields }, { additionalProperties: false }),
    Type.Object({ op: Type.Literal('encrypt'), key: ref(KeyName), ...encryptFields }, { additionalProperties: false }),
    Type.Object({ op: Type.Literal('decrypt'), key: Type.Optional(ref(KeyName)), ...decryptFields }, { additionalProperties: false }),
    Type.Object({ op: Type.Literal('rewrap'), key: ref(KeyName), ...rewrapFields }, { additionalProperties: false }),
  ],
  { description: 'One operation; decrypt takes an optional key, which then must be the ciphertext’s.' },
);

export const BatchBody = Type.Object(
  { items: Type.Array(BatchItem, { minItems: 1, maxItems: MAX_BATCH_ITEMS }) },
  { additionalProperties: false },
);

export const BatchResult = Type.Object(
  {
    results: Type.Array(
      Type.Object(
        {
          status: Type.Integer(),
          result: Type.Optional(Type.Union([ref(DataKeyResult), ref(CiphertextResult), ref(DecryptResult)])),
          problem: Type.Optional(ProblemRef),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
