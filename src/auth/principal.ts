/** Who is calling, as established by an authenticator. */
export interface Principal {
  /** `token:NAME` for API tokens; other authenticators add their own prefixes. */
  readonly id: string;
  readonly type: 'token';
  readonly attributes: Readonly<Record<string, string>>;
  /** Admin principals may do everything; policies never apply to them. */
  readonly admin: boolean;
}

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

/** What an action is done to. Key actions name the key; on decrypt it is the key named inside the ciphertext. */
export interface Resource {
  readonly keyName?: string;
}
