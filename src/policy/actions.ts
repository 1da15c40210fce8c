/** Everything a principal can be allowed to do. Policies name these, or `*` for all of them. */
export const ACTIONS = [
  'datakey',
  'encrypt',
  'decrypt',
  'rewrap',
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
  'audit:read',
] as const;

export type Action = (typeof ACTIONS)[number];

/** Actions done to one key. The others are not about a key, and only statements whose `keys` include `*` grant them. */
export const KEY_ACTIONS: ReadonlySet<Action> = new Set<Action>([
  'datakey',
  'encrypt',
  'decrypt',
  'rewrap',
  'keys:create',
  'keys:read',
  'keys:update',
  'keys:rotate',
  'keys:disable',
  'keys:enable',
  'keys:delete',
]);

/** What an action is done to. Key actions name the key; on decrypt it is the key named inside the ciphertext. */
export interface Resource {
  readonly keyName?: string;
}
