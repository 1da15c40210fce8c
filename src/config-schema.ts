import { Type, type SchemaOptions, type Static, type TLiteral, type TSchema, type TUnion } from '@sinclair/typebox';

/**
 * What a variable's schema says beyond JSON Schema, for the loader's messages and the README's table.
 *
 * `default` (JSON Schema) is a value the loader applies as it is. A default that is derived at start-up (from
 * `KEYHOLD_DATA_DIR`, the host name) has no `default` and says so in `defaultText` instead; the loader computes it.
 */
export interface VariableOptions extends SchemaOptions {
  /** The variable's line in the README's configuration table (whose test adds the default and an integer's range). */
  readonly description: string;
  /** The default's cell in the README's table, when it is not a literal `default`. */
  readonly defaultText?: string;
  /** Completes "NAME …" when the value breaks this schema. It never contains the value: some variables are secrets. */
  readonly errorMessage?: string;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const MIN_BOOTSTRAP_TOKEN_LENGTH = 32;

/**
 * Exactly what `parseRootKeyText` accepts: the canonical base64 of 32 bytes, so the 43rd character carries two zero
 * bits, with surrounding white space (`\s` is the set `String.prototype.trim` removes).
 */
const ROOT_KEY_PATTERN = '^\\s*[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=\\s*$';
const REPLICA_ID_PATTERN = '^[A-Za-z0-9._:-]{1,64}$';

/** An integer variable. Its text must be decimal digits only, which the loader turns into a number before checking. */
function integer(minimum: number, maximum: number, options: VariableOptions) {
  return Type.Integer({ minimum, maximum, ...options });
}

function text(options: VariableOptions) {
  return Type.String(options);
}

function oneOf<const T extends readonly string[]>(values: T, options: VariableOptions): TUnion<TLiteral<T[number]>[]> {
  return Type.Union(
    values.map((value) => Type.Literal(value)),
    { errorMessage: `must be one of ${values.join(', ')}`, ...options },
  );
}

/**
 * Every `KEYHOLD_*` variable the server reads, in the order the README's table lists them. An empty value counts as
 * unset. Checks that involve two variables, and the parsing of URLs and keys, follow in `loadConfig`.
 */
export const EnvironmentSchema = Type.Object({
  KEYHOLD_HOST: text({ default: '127.0.0.1', description: 'address to listen on' }),
  KEYHOLD_PORT: integer(0, 65535, { default: 7780, description: 'port to listen on' }),
  KEYHOLD_WORKERS: integer(1, 1024, {
    defaultText: 'the CPUs it may use; 1 with `sqlite::memory:`',
    description: 'server processes sharing the port, each a replica with its own audit chain; 1 runs no cluster',
  }),
  KEYHOLD_METRICS_PORT: Type.Optional(
    integer(0, 65535, {
      defaultText: '– (off)',
      description: 'port of the separate Prometheus listener (`GET /metrics`, no authentication); unset, there are no metrics',
    }),
  ),
  KEYHOLD_METRICS_HOST: text({ default: '127.0.0.1', description: 'address of the metrics listener' }),
  KEYHOLD_DATA_DIR: text({
    default: './data',
    description: 'SQLite database, development root key, generated admin token',
  }),
  KEYHOLD_DATABASE_URL: Type.Optional(
    text({
      pattern: '^(postgres://|postgresql://|sqlite:)',
      defaultText: '`sqlite:DATA_DIR/keyhold.sqlite`',
      errorMessage: 'must start with postgres://, postgresql:// or sqlite:',
      description: '`postgres://…` (production), `sqlite:PATH`, or `sqlite::memory:` (gone when the process exits)',
    }),
  ),
  KEYHOLD_ROOT_KEY: Type.Optional(
    text({
      pattern: ROOT_KEY_PATTERN,
      errorMessage: 'must be the base64 encoding of exactly 32 bytes',
      description: 'the root key: the base64 of 32 bytes',
    }),
  ),
  KEYHOLD_ROOT_KEY_FILE: Type.Optional(
    text({ description: 'a file holding that base64 text (a mounted Kubernetes secret, say)' }),
  ),
  KEYHOLD_PREVIOUS_ROOT_KEY_FILE: Type.Optional(
    text({ description: 'during a root key rotation, the old root key, accepted only to unwrap' }),
  ),
  KEYHOLD_ROOT_KEY_PROVIDER: oneOf(['local', 'pkcs11'] as const, {
    default: 'local',
    description: '`pkcs11`: the root key is an AES key inside an HSM, set by the `KEYHOLD_PKCS11_*` variables ([HSM](docs/hsm.md))',
  }),
  KEYHOLD_PKCS11_LIBRARY: Type.Optional(text({ description: "the HSM vendor's PKCS#11 module (a `.so` path)" })),
  KEYHOLD_PKCS11_TOKEN_LABEL: Type.Optional(text({ description: 'the label of the token that holds the root key' })),
  KEYHOLD_PKCS11_PIN: Type.Optional(text({ description: "the token user's PIN" })),
  KEYHOLD_PKCS11_PIN_FILE: Type.Optional(text({ description: 'a file holding that PIN instead' })),
  KEYHOLD_PKCS11_KEY_LABEL: Type.Optional(
    text({ description: 'the root key\'s label in the token (`keyhold root init-hsm` creates it)' }),
  ),
  KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: Type.Optional(
    text({ description: 'during a root key rotation, the old root key in the token, accepted only to unwrap' }),
  ),
  KEYHOLD_BOOTSTRAP_TOKEN: Type.Optional(
    Type.Intersect(
      [
        Type.String({
          minLength: MIN_BOOTSTRAP_TOKEN_LENGTH,
          errorMessage: `must be at least ${MIN_BOOTSTRAP_TOKEN_LENGTH} characters`,
        }),
        Type.String({ pattern: '^[\\x21-\\x7e]+$', errorMessage: 'must be printable ASCII without spaces' }),
        // A bearer shaped like a JWT is judged by the Kubernetes authenticator and would never reach the token store.
        Type.String({ pattern: '^(?!eyJ)', errorMessage: 'must not start with "eyJ" (JWTs do)' }),
      ],
      { description: 'the first admin token (32 or more printable ASCII characters), created only if no admin token exists' },
    ),
  ),
  KEYHOLD_LOG_LEVEL: oneOf(LOG_LEVELS, { default: 'info', description: 'pino level, or `silent`' }),
  KEYHOLD_ACCESS_LOG: oneOf(['on', 'off'] as const, {
    default: 'off',
    errorMessage: 'must be on or off',
    description: '`on` logs every request and answer at `info`; off, the audit log is the record of requests',
  }),
  KEYHOLD_SLOW_REQUEST_MS: integer(0, 600_000, {
    default: 1000,
    description: 'a request answered later than this is logged at `warn`; 0 turns it off',
  }),
  KEYHOLD_CACHE_TTL_MS: integer(100, 3_600_000, {
    default: 5000,
    description: 'a backstop: the longest a replica trusts its cached copy of a key, a token lookup or the policies',
  }),
  KEYHOLD_CHANGE_POLL_INTERVAL_MS: integer(50, 60_000, {
    default: 1000,
    description: 'how often a replica reads the change sequence even without a notification',
  }),
  KEYHOLD_SWEEP_INTERVAL_MS: integer(100, 86_400_000, {
    default: 60_000,
    description: 'how often due scheduled rotations, deletions and audit purges are carried out',
  }),
  KEYHOLD_DATABASE_TIMEOUT_MS: integer(100, 120_000, {
    default: 5000,
    description: 'the bound on a connection, a statement and a lock wait; past it a request gets 503',
  }),
  KEYHOLD_SHUTDOWN_TIMEOUT_MS: integer(100, 600_000, {
    default: 10_000,
    description: 'on SIGTERM, how long requests in flight may take before the process exits 1 anyway',
  }),
  KEYHOLD_AUTH_CONFIG: Type.Optional(
    text({ description: 'YAML or JSON file of Kubernetes issuers and SPIFFE trust domains' }),
  ),
  KEYHOLD_TLS_CERT_FILE: Type.Optional(text({ description: 'PEM server certificate; with the key, turns HTTPS on' })),
  KEYHOLD_TLS_KEY_FILE: Type.Optional(text({ description: 'PEM private key of that certificate' })),
  KEYHOLD_TLS_CLIENT_CA_FILE: Type.Optional(
    text({ description: 'PEM trust bundle for client certificates (SPIFFE SVIDs); needs TLS' }),
  ),
  KEYHOLD_REPLICA_ID: text({
    pattern: REPLICA_ID_PATTERN,
    defaultText: 'host name',
    errorMessage: 'must be 1 to 64 of A-Z a-z 0-9 . _ : -',
    description: "names this process's audit chain (a random suffix is added per start)",
  }),
  KEYHOLD_AUDIT_FILE: Type.Optional(
    text({ description: 'a JSON-lines copy of every committed audit record and chain head statement' }),
  ),
  KEYHOLD_AUDIT_RETENTION_DAYS: Type.Optional(
    integer(1, 36_500, {
      defaultText: '– (keep all)',
      description: 'purge audit records older than this, keeping the chains verifiable',
    }),
  ),
  KEYHOLD_AUDIT_TIMEOUT_MS: integer(50, 60_000, {
    default: 2000,
    description: 'the bound on an audit commit; past it the requests it covers get 503',
  }),
  KEYHOLD_AWS_KMS: oneOf(['on', 'off'] as const, {
    default: 'on',
    errorMessage: 'must be on or off',
    description: 'the AWS-KMS-compatible endpoint (SigV4 with `keyhold aws-credentials`); `off` removes it',
  }),
  KEYHOLD_AWS_KMS_PATH: text({
    default: '/aws-kms/',
    pattern: '^/([A-Za-z0-9._~-]+/)*$',
    errorMessage: 'must be a path that starts and ends with /',
    description: "the endpoint's path on the API port (the AWS SDK's endpoint is `https://HOST:PORT/aws-kms/`)",
  }),
  KEYHOLD_AWS_KMS_PORT: Type.Optional(
    integer(0, 65535, {
      defaultText: '– (API port only)',
      description: 'also serve the endpoint alone, at `/`, on this port (same host and TLS as the API)',
    }),
  ),
  KEYHOLD_AWS_REGION: text({
    default: 'us-east-1',
    pattern: '^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$',
    errorMessage: 'must be a region name such as us-east-1',
    description: 'the region in key ARNs and the one requests must be signed for',
  }),
  KEYHOLD_AWS_ACCOUNT_ID: text({
    default: '000000000000',
    pattern: '^[0-9]{12}$',
    errorMessage: 'must be 12 digits',
    description: 'the account in key ARNs',
  }),
  KEYHOLD_AWS_KMS_REQUESTS_PER_SECOND: integer(0, 1_000_000, {
    default: 0,
    description: 'per access key and replica, as AWS KMS request quotas; over it, `ThrottlingException`; 0 is no limit',
  }),
  KEYHOLD_AUDIT: oneOf(['on', 'off'] as const, {
    default: 'on',
    errorMessage: 'must be on or off',
    description: '`off` disables the database audit log: for benchmarks only',
  }),
});

export type EnvironmentValues = Static<typeof EnvironmentSchema>;
export type VariableName = keyof EnvironmentValues & string;

/** The variables' names, in the schema's order. */
export const VARIABLE_NAMES = Object.keys(EnvironmentSchema.properties) as VariableName[];

/** A variable's schema with its documentation options. */
export function variableSchema(name: VariableName): TSchema & Partial<VariableOptions> {
  return EnvironmentSchema.properties[name] as TSchema & Partial<VariableOptions>;
}
