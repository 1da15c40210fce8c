/** How a principal proved who it is. */
export type PrincipalType = 'token' | 'kubernetes' | 'spiffe';

/**
 * Who is calling, as established by an authenticator. Principals are frozen and shared by every request that
 * presents the same credential, so nothing may change them.
 */
export interface Principal {
  /** `token:NAME`, `k8s:NAMESPACE:SERVICEACCOUNT`, or the SPIFFE ID. Policies match globs over it. */
  readonly id: string;
  readonly type: PrincipalType;
  /**
   * What the authenticator vouches for: `namespace`, `serviceAccount`, `podName`, `podUid`, `issuer` (Kubernetes);
   * `trustDomain`, `path`, and `namespace`/`serviceAccount` for `/ns/X/sa/Y` paths of Kubernetes names (SPIFFE); `tokenId`,
   * `tokenName` (API tokens); `accessKeyId` (an AWS access key that signed the request, added to the attributes of the
   * principal the key is bound to). Policy variables and bound encryption contexts read them.
   */
  readonly attributes: Readonly<Record<string, string>>;
  /** Admin principals may do everything; policies never apply to them. Only API tokens can be admins. */
  readonly admin: boolean;
}

/** Every attribute an authenticator may set: the names policy variables and `boundContext` may refer to. */
export const PRINCIPAL_ATTRIBUTES = [
  'namespace',
  'serviceAccount',
  'podName',
  'podUid',
  'issuer',
  'trustDomain',
  'path',
  'tokenId',
  'tokenName',
  /** The AWS access key (`KHAK…`) a SigV4 request was signed with; the rest are the bound principal's. */
  'accessKeyId',
] as const;

export type PrincipalAttribute = (typeof PRINCIPAL_ATTRIBUTES)[number];
