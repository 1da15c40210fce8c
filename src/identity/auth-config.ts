import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { StartupError } from '../errors.js';

/** The JWS algorithms a Kubernetes issuer may be configured with; `none` and HMAC never are. */
export const KUBERNETES_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
export type KubernetesAlgorithm = (typeof KUBERNETES_ALGORITHMS)[number];

const TRUST_DOMAIN = '^[a-z0-9._-]{1,255}$';

const KubernetesIssuerSchema = Type.Object(
  {
    /** Compared byte for byte with the token's `iss`. */
    issuer: Type.String({ minLength: 1, maxLength: 2048 }),
    /** The token's `aud` must include one of these. */
    audiences: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { minItems: 1, maxItems: 16 }),
    /** Only these algorithms are accepted for this issuer. Kubernetes signs with RS256 unless told otherwise. */
    algorithms: Type.Optional(
      Type.Array(Type.Union(KUBERNETES_ALGORITHMS.map((alg) => Type.Literal(alg))), { minItems: 1, uniqueItems: true }),
    ),
    /** Exactly one of `jwksFile`, `jwksUri` and `discovery` says where the issuer's public keys are. */
    jwksFile: Type.Optional(Type.String({ minLength: 1 })),
    jwksUri: Type.Optional(Type.String({ pattern: '^https?://' })),
    /** Read `jwks_uri` from `ISSUER/.well-known/openid-configuration`. */
    discovery: Type.Optional(Type.Boolean()),
    /** A CA bundle for fetching `jwksUri` or the discovery document (the cluster CA inside Kubernetes). */
    caFile: Type.Optional(Type.String({ minLength: 1 })),
    /** A bearer token for those fetches, for API servers that do not serve their keys anonymously. */
    bearerTokenFile: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

const AuthConfigSchema = Type.Object(
  {
    kubernetes: Type.Optional(
      Type.Object(
        { issuers: Type.Array(KubernetesIssuerSchema, { maxItems: 64 }) },
        { additionalProperties: false },
      ),
    ),
    spiffe: Type.Optional(
      Type.Object(
        {
          /** SVIDs are accepted only from these trust domains (X509-SVID §4: the trust domain is the authority). */
          trustDomains: Type.Array(Type.String({ pattern: TRUST_DOMAIN }), { minItems: 1, maxItems: 64, uniqueItems: true }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

type RawAuthConfig = Static<typeof AuthConfigSchema>;

export type JwksSource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'uri'; readonly uri: string }
  | { readonly kind: 'discovery' };

export interface KubernetesIssuerConfig {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly KubernetesAlgorithm[];
  readonly jwks: JwksSource;
  readonly caFile: string | undefined;
  readonly bearerTokenFile: string | undefined;
}

/** The validated, frozen content of `KEYHOLD_AUTH_CONFIG`. File paths in it are resolved against its folder. */
export interface AuthConfig {
  readonly kubernetesIssuers: readonly KubernetesIssuerConfig[];
  readonly spiffeTrustDomains: readonly string[];
}

export const EMPTY_AUTH_CONFIG: AuthConfig = Object.freeze({ kubernetesIssuers: [], spiffeTrustDomains: [] });

/** Parses and validates an auth config document (YAML, of which JSON is a subset). Throws with every problem. */
export function parseAuthConfig(text: string, baseDir: string, origin = 'the auth config'): AuthConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 0 }) ?? {};
  } catch (error) {
    throw new StartupError(`${origin} is not valid YAML or JSON: ${(error as Error).message}`);
  }
  const problems = [...Value.Errors(AuthConfigSchema, raw)].map((e) => `${e.path || '/'}: ${e.message}`);
  if (problems.length > 0) throw new StartupError(`${origin} is not valid:\n  - ${problems.join('\n  - ')}`);
  const config = raw as RawAuthConfig;
  const issuers = (config.kubernetes?.issuers ?? []).map((issuer, index): KubernetesIssuerConfig => {
    const sources = [issuer.jwksFile, issuer.jwksUri, issuer.discovery === true ? true : undefined].filter(
      (source) => source !== undefined,
    );
    if (sources.length !== 1) {
      problems.push(`/kubernetes/issuers/${index}: set exactly one of jwksFile, jwksUri and discovery: true`);
    }
    const path = (file: string | undefined) => (file === undefined ? undefined : resolve(baseDir, file));
    const jwks: JwksSource =
      issuer.jwksFile !== undefined
        ? { kind: 'file', path: resolve(baseDir, issuer.jwksFile) }
        : issuer.jwksUri !== undefined
          ? { kind: 'uri', uri: issuer.jwksUri }
          : { kind: 'discovery' };
    return Object.freeze({
      issuer: issuer.issuer,
      audiences: Object.freeze([...issuer.audiences]),
      algorithms: Object.freeze([...(issuer.algorithms ?? ['RS256'])]),
      jwks: Object.freeze(jwks),
      caFile: path(issuer.caFile),
      bearerTokenFile: path(issuer.bearerTokenFile),
    });
  });
  const seen = new Set<string>();
  for (const issuer of issuers) {
    if (seen.has(issuer.issuer)) problems.push(`issuer ${JSON.stringify(issuer.issuer)} is configured twice`);
    seen.add(issuer.issuer);
  }
  if (problems.length > 0) throw new StartupError(`${origin} is not valid:\n  - ${problems.join('\n  - ')}`);
  return Object.freeze({
    kubernetesIssuers: Object.freeze(issuers),
    spiffeTrustDomains: Object.freeze([...(config.spiffe?.trustDomains ?? [])]),
  });
}

/** Reads `KEYHOLD_AUTH_CONFIG` once at start-up; no file means no Kubernetes issuers and no trust domains. */
export function readAuthConfig(path: string | undefined): AuthConfig {
  if (path === undefined) return EMPTY_AUTH_CONFIG;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new StartupError(`Cannot read KEYHOLD_AUTH_CONFIG ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseAuthConfig(text, dirname(path), `KEYHOLD_AUTH_CONFIG ${path}`);
}
