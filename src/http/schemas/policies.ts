import { Type } from '@sinclair/typebox';
import { ACTIONS } from '../../context/actions.js';
import { KEY_NAME_PATTERN } from '../../keys/key-record.js';
import { MAX_STATEMENTS } from '../../policy/policy.js';
import { EncryptionContext, KeyName, NO_NUL, pageCursor, PageLimit, ref, timestamp } from './common.js';

/** Policies: the statement document, its revisions, listing and simulation. */

const PolicyName = Type.String({ pattern: KEY_NAME_PATTERN, description: 'The policy name.' });
export const PolicyNameParams = Type.Object({ name: PolicyName }, { additionalProperties: false });
const PolicyAction = Type.Union([...ACTIONS, '*'].map((action) => Type.Literal(action)));

export const PolicyStatement = Type.Object(
  {
    sid: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$', description: 'A statement id, shown in decisions.' })),
    effect: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
    principals: Type.Array(Type.String({ maxLength: 512 }), {
      minItems: 1,
      maxItems: 64,
      description: 'Globs over principal ids ("*" matches any run of characters): k8s:NS:SA, spiffe://…, token:NAME.',
    }),
    actions: Type.Array(PolicyAction, { minItems: 1, maxItems: 32 }),
    keys: Type.Array(Type.String({ maxLength: 256 }), {
      minItems: 1,
      maxItems: 64,
      description:
        'Globs over key names; may use ${principal.ATTRIBUTE}. Actions not about a key (tokens, policies, audit) ' +
        'are granted only by statements that list "*".',
    }),
    conditions: Type.Optional(
      Type.Object(
        {
          context: Type.Optional(
            Type.Record(Type.String({ minLength: 1, maxLength: 1024 }), Type.String({ maxLength: 1024, pattern: NO_NUL }), {
              maxProperties: 32,
              description: 'Encryption-context pairs the request must carry, exactly; values may use ${principal.ATTRIBUTE}.',
            }),
          ),
          principal: Type.Optional(
            Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.String({ maxLength: 1024, pattern: NO_NUL }), {
              maxProperties: 16,
              description:
                'Principal attributes (id, type, namespace, issuer, trustDomain, …) that must equal these values exactly; ' +
                'for example the issuer of one cluster when several share namespace names.',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { $id: 'PolicyStatement', additionalProperties: false },
);

export const PolicyDocumentBody = Type.Object(
  {
    description: Type.Optional(Type.String({ maxLength: 1024, pattern: NO_NUL })),
    statements: Type.Array(ref(PolicyStatement), { minItems: 1, maxItems: MAX_STATEMENTS }),
  },
  { additionalProperties: false },
);

export const Policy = Type.Object(
  {
    name: PolicyName,
    description: Type.Optional(Type.String()),
    statements: Type.Array(ref(PolicyStatement)),
    revision: Type.Integer({ minimum: 1, description: 'Bumped on every change; the ETag, for If-Match.' }),
    createdAt: timestamp('When the policy was created.'),
    updatedAt: timestamp('When the policy last changed.'),
  },
  { $id: 'Policy', additionalProperties: false },
);
export const PolicyRef = Type.Ref('Policy');

export const PolicyList = Type.Object(
  { policies: Type.Array(PolicyRef), nextCursor: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export const ListPoliciesQuery = Type.Object(
  {
    prefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{0,128}$', description: 'Only names that start with this.' })),
    limit: Type.Optional(PageLimit),
    cursor: Type.Optional(pageCursor(200)),
  },
  { additionalProperties: false },
);

const PrincipalAttributes = Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9]{0,63}$' }), Type.String({ maxLength: 1024 }), {
  maxProperties: 32,
});

export const SimulationBody = Type.Object(
  {
    principal: Type.Object(
      {
        id: Type.String({ minLength: 1, maxLength: 512 }),
        type: Type.Optional(Type.Union([Type.Literal('token'), Type.Literal('kubernetes'), Type.Literal('spiffe')])),
        attributes: Type.Optional(PrincipalAttributes),
      },
      { additionalProperties: false },
    ),
    action: Type.Union(ACTIONS.map((action) => Type.Literal(action))),
    key: Type.Optional(ref(KeyName)),
    context: Type.Optional(ref(EncryptionContext)),
  },
  { additionalProperties: false },
);

export const SimulationResult = Type.Object(
  {
    decision: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
    matched: Type.Array(
      Type.Object(
        {
          policy: Type.String(),
          statement: Type.Integer({ minimum: 0, description: 'The index in the policy\'s statements.' }),
          sid: Type.Optional(Type.String()),
          effect: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
        },
        { additionalProperties: false },
      ),
      { description: 'The deny statements that matched when denied explicitly, otherwise every allow that matched.' },
    ),
    reason: Type.String(),
  },
  { additionalProperties: false },
);
