import { Type } from '@sinclair/typebox';
import { nullableTimestamp, pageCursor, PageLimit, ref, timestamp } from './common.js';

/** API tokens: issue, list and revoke. A token's secret appears in one response only. */

export const CreateTokenBody = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }),
    admin: Type.Optional(Type.Boolean({ description: 'Admin tokens bypass policies. Only admins may create them.' })),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 24 * 3600 })),
  },
  { additionalProperties: false },
);

const tokenFields = {
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  admin: Type.Boolean(),
  createdAt: timestamp('When the token was issued.'),
  expiresAt: nullableTimestamp('When the token stops working.'),
};
export const Token = Type.Object(tokenFields, { $id: 'Token', additionalProperties: false });
export const IssuedToken = Type.Object(
  { ...tokenFields, token: Type.String({ description: 'The secret. It is shown only here, once.' }) },
  { additionalProperties: false },
);
export const TokenList = Type.Object(
  { tokens: Type.Array(ref(Token)), nextCursor: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export const ListTokensQuery = Type.Object(
  {
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(400)),
  },
  { additionalProperties: false },
);
export const TokenIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });
