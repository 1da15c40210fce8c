/**
 * Everything a principal can be allowed to do. Policies name these, or `*` for all of them except the
 * {@link EXPLICIT_ONLY_ACTIONS}.
 */
export const ACTIONS = [
  'datakey',
  'encrypt',
  'decrypt',
  'rewrap',
  'rewrap-revoked',
  'keys:create',
  'keys:read',
  'keys:update',
  'keys:rotate',
  'keys:disable',
  'keys:enable',
  'keys:delete',
  'policies:read',
  'policies:write',
  'tokens:read',
  'tokens:write',
  'aws-credentials:read',
  'aws-credentials:write',
  'audit:read',
] as const;

export type Action = (typeof ACTIONS)[number];

/** Actions that are not about one key: only statements whose `keys` include `*` grant them. */
const NON_KEY_ACTIONS: ReadonlySet<Action> = new Set<Action>([
  ...['policies:read', 'policies:write', 'tokens:read', 'tokens:write'] as const,
  ...['aws-credentials:read', 'aws-credentials:write', 'audit:read'] as const,
]);

/**
 * Actions an allow statement grants only by listing them: `"actions": ["*"]` does not. `rewrap-revoked` reads versions
 * that refuse everyone else (disabled, below the minimum, or of a disabled key), so a workload's catch-all grant must
 * never reach it. `aws-credentials:write` mints an access key that outlives the short-lived token or SVID of the
 * caller that made it, so it too must be granted on purpose. A deny statement's `*` does cover them: a broad deny
 * stays broad.
 */
export const EXPLICIT_ONLY_ACTIONS: ReadonlySet<Action> = new Set<Action>(['rewrap-revoked', 'aws-credentials:write']);

/** Actions done to one key, named in the resource. */
export const KEY_ACTIONS: ReadonlySet<Action> = new Set(ACTIONS.filter((action) => !NON_KEY_ACTIONS.has(action)));

/** What an action is done to. Key actions name the key; on decrypt it is the key named inside the ciphertext. */
export interface Resource {
  readonly keyName?: string;
}
