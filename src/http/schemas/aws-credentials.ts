import { Type } from '@sinclair/typebox';
import { nullableTimestamp, pageCursor, PageLimit, ref, timestamp } from './common.js';

/** AWS access keys: issue, list and revoke. A secret access key appears in one response only. */

const ACCESS_KEY_ID = '^KHAK[A-Z2-7]{16}$';

export const CreateAwsCredentialBody = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }),
    principal: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 2048,
        description:
          'The principal the key acts as: k8s:NAMESPACE:SERVICEACCOUNT, a SPIFFE ID or token:NAME. Only admins may name ' +
          'another principal than their own; without it, the key acts as the caller (less its per-pod attributes).',
      }),
    ),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 24 * 3600 })),
  },
  { additionalProperties: false },
);

const credentialFields = {
  accessKeyId: Type.String({ pattern: ACCESS_KEY_ID }),
  name: Type.String(),
  principal: Type.Object(
    {
      id: Type.String(),
      type: Type.Union([Type.Literal('token'), Type.Literal('kubernetes'), Type.Literal('spiffe')]),
    },
    { additionalProperties: false, description: 'The principal the key acts as; never an admin.' },
  ),
  createdAt: timestamp('When the key was issued.'),
  expiresAt: nullableTimestamp('When the key stops working.'),
};
export const AwsCredential = Type.Object(credentialFields, { $id: 'AwsCredential', additionalProperties: false });
export const IssuedAwsCredential = Type.Object(
  {
    ...credentialFields,
    secretAccessKey: Type.String({ description: 'The secret access key. It is shown only here, once.' }),
  },
  { additionalProperties: false },
);
export const AwsCredentialList = Type.Object(
  { credentials: Type.Array(ref(AwsCredential)), nextCursor: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export const ListAwsCredentialsQuery = Type.Object(
  {
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(400)),
  },
  { additionalProperties: false },
);
export const AccessKeyIdParams = Type.Object({ accessKeyId: Type.String({ pattern: ACCESS_KEY_ID }) }, { additionalProperties: false });
