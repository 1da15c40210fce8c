import { Type } from '@sinclair/typebox';

/** Liveness, readiness and the caller's own identity. */

export const Whoami = Type.Object(
  {
    id: Type.String(),
    type: Type.Union([Type.Literal('token'), Type.Literal('kubernetes'), Type.Literal('spiffe')]),
    admin: Type.Boolean(),
    attributes: Type.Record(Type.String(), Type.String()),
  },
  { additionalProperties: false },
);

export const Health = Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false });
export const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
    checks: Type.Object(
      { database: Type.Boolean(), rootKey: Type.Boolean(), migrations: Type.Boolean() },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
