import { availableParallelism, hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { Kind, type TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType } from '@sinclair/typebox/value';
import { EnvironmentSchema, VARIABLE_NAMES, variableSchema, type EnvironmentValues, type VariableName } from './config-schema.js';
import { StartupError } from './errors.js';
import { SecretBytes } from './crypto/secret-bytes.js';
import { parseRootKeyText } from './root-keys/root-key.js';
import type { PreviousRootKeySource, RootKeySource } from './root-keys/root-key.js';
import type { Pkcs11Settings } from './root-keys/pkcs11-token.js';

export type DatabaseConfig =
  | { readonly client: 'sqlite'; readonly filename: string }
  | { readonly client: 'postgres'; readonly url: string };


export interface Config {
  readonly host: string;
  readonly port: number;
  /** `KEYHOLD_METRICS_PORT`/`_HOST`: the Prometheus listener, apart from the API; undefined when metrics are off. */
  readonly metrics: MetricsConfig | undefined;
  readonly dataDir: string;
  readonly database: DatabaseConfig;
  readonly rootKey: RootKeySource;
  /**
   * `KEYHOLD_PREVIOUS_ROOT_KEY_FILE` or `KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL`: during a root key rotation, the old root
   * key, accepted only to unwrap what is still wrapped under it. Everything new is wrapped under `rootKey`.
   */
  readonly previousRootKey: PreviousRootKeySource | undefined;
  /**
   * `KEYHOLD_PKCS11_LIBRARY`, `_TOKEN_LABEL` and `_PIN` (or `_PIN_FILE`): the HSM token of a PKCS#11 root key (the
   * primary, a previous one, or the new one of `keyhold root rotate --new-key-label`). The PIN is held as secret bytes.
   */
  readonly pkcs11: Pkcs11Settings | undefined;
  readonly bootstrapToken: string | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `KEYHOLD_ACCESS_LOG=on`: a log line for every request and answer. Off, the audit log is the request record. */
  readonly accessLog: boolean;
  /** `KEYHOLD_SLOW_REQUEST_MS`: answers later than this are logged at warn; undefined (0) logs none. */
  readonly slowRequestMs: number | undefined;
  /**
   * `KEYHOLD_WORKERS`: server processes sharing the port (node:cluster), each a replica with its own audit chain;
   * default the CPUs the process may use (`os.availableParallelism()`). 1 runs the server in this process alone.
   */
  readonly workers: number;
  /** How long a replica trusts its cached copy of a key or token before reading it again. */
  readonly cacheTtlMs: number;
  /** How often a replica reads the change sequence even without a notification; bounds a lost NOTIFY's cost. */
  readonly changePollIntervalMs: number;
  /** How often due deletions and scheduled rotations are carried out. */
  readonly sweepIntervalMs: number;
  /** How long a request waits for a database connection before it is answered with 503. */
  readonly databaseTimeoutMs: number;
  /**
   * `KEYHOLD_SHUTDOWN_TIMEOUT_MS`: after SIGTERM, how long requests in flight may take to finish before the process
   * exits anyway (non-zero). Keep it below the orchestrator's grace period (Kubernetes: 30 s), which ends in SIGKILL.
   */
  readonly shutdownTimeoutMs: number;
  /** `KEYHOLD_AUTH_CONFIG`: the file naming Kubernetes issuers and SPIFFE trust domains, read at start-up. */
  readonly authConfigPath: string | undefined;
  /** TLS is on when a certificate and key are configured; a client CA adds client-certificate (SPIFFE) checking. */
  readonly tls: TlsConfig | undefined;
  readonly audit: AuditConfig;
  /** The AWS-KMS-compatible endpoint; undefined with `KEYHOLD_AWS_KMS=off`. */
  readonly awsKms: AwsKmsConfig | undefined;
}

export interface AwsKmsConfig {
  /** Where the endpoint answers on the API port: starts and ends with `/`. */
  readonly path: string;
  /** A port of its own, where the endpoint answers at `/`; 0 picks a free port (tests). */
  readonly port: number | undefined;
  /** The region in ARNs and in the credential scope every request must be signed for. */
  readonly region: string;
  readonly accountId: string;
  /** Per access key and replica; 0 is no limit. */
  readonly requestsPerSecond: number;
}

export interface MetricsConfig {
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
}

export interface AuditConfig {
  /** `KEYHOLD_AUDIT=off` turns the database audit log off: for benchmarks only, never in production. */
  readonly enabled: boolean;
  /** Names this process's audit chain, with a random suffix per start: the pod name, say. */
  readonly replicaName: string;
  /** `KEYHOLD_AUDIT_FILE`: a JSON-lines copy of every committed record. */
  readonly filePath: string | undefined;
  /** Records older than this many days are purged (with a checkpoint of the cut); undefined keeps them all. */
  readonly retentionDays: number | undefined;
  /** How long a group commit may take before its requests are answered with 503. */
  readonly timeoutMs: number;
}

export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCaFile: string | undefined;
}

export type Environment = Readonly<Record<string, string | undefined>>;

export { LOG_LEVELS, MIN_BOOTSTRAP_TOKEN_LENGTH } from './config-schema.js';

/**
 * The schema's variables read from `env`: an empty value counts as unset, a literal `default` fills in, and an
 * integer variable's text becomes a number only when it is decimal digits (so `80.5`, `0x50`, `+1` and ` 80` stay text
 * and fail the integer check). Derived defaults are left to the caller.
 */
function readVariables(env: Environment): Record<VariableName, unknown> {
  const values: Partial<Record<VariableName, unknown>> = {};
  for (const name of VARIABLE_NAMES) {
    const schema = variableSchema(name);
    const raw = env[name];
    if (raw === undefined || raw === '') {
      if (schema.default !== undefined) values[name] = schema.default;
    } else {
      values[name] = schema[Kind] === 'Integer' && /^\d+$/.test(raw) ? Number(raw) : raw;
    }
  }
  return values as Record<VariableName, unknown>;
}

/** One line per broken rule, naming the variable and never showing its value (a root key or token is a secret). */
function schemaProblems(values: Record<VariableName, unknown>): string[] {
  const problems: string[] = [];
  for (const error of Value.Errors(EnvironmentSchema, values)) {
    // An intersection reports each broken member, then itself; the members carry the messages.
    if (error.type === ValueErrorType.Intersect) continue;
    const name = error.path.slice(1);
    const schema = error.schema as TSchema & { errorMessage?: string; minimum?: number; maximum?: number };
    if (schema.errorMessage !== undefined) {
      problems.push(`${name} ${schema.errorMessage}`);
    } else if (schema[Kind] === 'Integer') {
      problems.push(
        error.type === ValueErrorType.Integer
          ? `${name} must be an integer`
          : `${name} must be between ${schema.minimum} and ${schema.maximum}`,
      );
    } else {
      problems.push(`${name} is not valid`);
    }
  }
  return problems;
}

/**
 * The path a `sqlite:` URL names: sqlite:PATH, sqlite://PATH and sqlite:///ABSOLUTE all name a file path, and
 * `:memory:` in any of the three forms (`sqlite:///:memory:` too, as SQLAlchemy reads it) an in-memory store.
 */
function sqlitePathOf(raw: unknown): string | undefined {
  if (typeof raw !== 'string' || !raw.startsWith('sqlite:')) return undefined;
  const path = raw.slice('sqlite:'.length).replace(/^\/\//, '');
  return path === '/:memory:' ? ':memory:' : path;
}

function parseDatabase(raw: string | undefined, dataDir: string, problems: string[]): DatabaseConfig {
  if (raw === undefined || raw === '') return { client: 'sqlite', filename: join(dataDir, 'keyhold.sqlite') };
  const path = sqlitePathOf(raw);
  if (path !== undefined) {
    if (path === '') problems.push('KEYHOLD_DATABASE_URL sqlite:PATH needs a path');
    return { client: 'sqlite', filename: path === ':memory:' || isAbsolute(path) ? path : resolve(path) };
  }
  if (raw.startsWith('postgres://') || raw.startsWith('postgresql://')) {
    try {
      new URL(raw);
    } catch {
      problems.push('KEYHOLD_DATABASE_URL is not a valid postgres:// URL');
    }
    return { client: 'postgres', url: raw };
  }
  // The schema's pattern has already reported any other scheme.
  return { client: 'sqlite', filename: join(dataDir, 'keyhold.sqlite') };
}

function parseTls(values: EnvironmentValues, problems: string[]): TlsConfig | undefined {
  const { KEYHOLD_TLS_CERT_FILE: certFile, KEYHOLD_TLS_KEY_FILE: keyFile, KEYHOLD_TLS_CLIENT_CA_FILE: clientCaFile } = values;
  if (certFile === undefined && keyFile === undefined) {
    if (clientCaFile !== undefined) problems.push('KEYHOLD_TLS_CLIENT_CA_FILE needs KEYHOLD_TLS_CERT_FILE and KEYHOLD_TLS_KEY_FILE');
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    problems.push('Set both KEYHOLD_TLS_CERT_FILE and KEYHOLD_TLS_KEY_FILE to turn TLS on');
    return undefined;
  }
  return Object.freeze({
    certFile: resolve(certFile),
    keyFile: resolve(keyFile),
    clientCaFile: clientCaFile === undefined ? undefined : resolve(clientCaFile),
  });
}

/** The schema's message for a refused KEYHOLD_ROOT_KEY, word for word. */
const ROOT_KEY_REFUSED = 'KEYHOLD_ROOT_KEY must be the base64 encoding of exactly 32 bytes';

function parseRootKey(values: EnvironmentValues, dataDir: string, problems: string[]): RootKeySource {
  const { KEYHOLD_ROOT_KEY: inline, KEYHOLD_ROOT_KEY_FILE: file, KEYHOLD_PKCS11_KEY_LABEL: keyLabel } = values;
  if (values.KEYHOLD_ROOT_KEY_PROVIDER === 'pkcs11') {
    if (inline !== undefined || file !== undefined) {
      problems.push('KEYHOLD_ROOT_KEY and KEYHOLD_ROOT_KEY_FILE are for KEYHOLD_ROOT_KEY_PROVIDER=local, not pkcs11');
    }
    if (keyLabel === undefined) problems.push('KEYHOLD_ROOT_KEY_PROVIDER=pkcs11 needs KEYHOLD_PKCS11_KEY_LABEL');
    return { kind: 'pkcs11', keyLabel: keyLabel ?? '' };
  }
  if (keyLabel !== undefined) problems.push('KEYHOLD_PKCS11_KEY_LABEL needs KEYHOLD_ROOT_KEY_PROVIDER=pkcs11');
  if (inline !== undefined && file !== undefined) problems.push('Set KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE, not both');
  if (inline !== undefined) {
    const key = parseRootKeyText(inline);
    if (key !== undefined) return { kind: 'inline', key };
    // The schema's pattern accepts exactly what this parses, so the schema has reported it already; should the two
    // ever disagree, a refused key must still stop start-up rather than fall through to another key.
    if (!problems.includes(ROOT_KEY_REFUSED)) problems.push(ROOT_KEY_REFUSED);
  }
  if (file !== undefined) return { kind: 'file', path: resolve(file) };
  return { kind: 'data-dir', path: join(dataDir, 'root.key') };
}

/**
 * The token, when any of its variables is set: then the library, the token label and exactly one PIN variable are
 * needed. A root key in it (primary or previous) needs it too, which `parsePreviousRootKey` and the end of
 * `loadConfig` check.
 */
function parsePkcs11(values: EnvironmentValues, problems: string[]): Pkcs11Settings | undefined {
  const { KEYHOLD_PKCS11_LIBRARY: library, KEYHOLD_PKCS11_TOKEN_LABEL: tokenLabel, KEYHOLD_PKCS11_PIN: pin, KEYHOLD_PKCS11_PIN_FILE: pinFile } = values;
  if (library === undefined && tokenLabel === undefined && pin === undefined && pinFile === undefined) return undefined;
  const missing = [
    library === undefined ? 'KEYHOLD_PKCS11_LIBRARY' : undefined,
    tokenLabel === undefined ? 'KEYHOLD_PKCS11_TOKEN_LABEL' : undefined,
    pin === undefined && pinFile === undefined ? 'KEYHOLD_PKCS11_PIN or KEYHOLD_PKCS11_PIN_FILE' : undefined,
  ].filter((name) => name !== undefined);
  if (missing.length > 0) problems.push(`The PKCS#11 token also needs ${missing.join(', ')}`);
  if (pin !== undefined && pinFile !== undefined) problems.push('Set KEYHOLD_PKCS11_PIN or KEYHOLD_PKCS11_PIN_FILE, not both');
  return Object.freeze({
    library: library ?? '',
    tokenLabel: tokenLabel ?? '',
    pin: Object.freeze(
      pin !== undefined ? { kind: 'inline' as const, pin: SecretBytes.adopt(Buffer.from(pin, 'utf8')) } : { kind: 'file' as const, path: resolve(pinFile ?? '') },
    ),
  });
}

function parsePreviousRootKey(
  values: EnvironmentValues,
  rootKey: RootKeySource,
  pkcs11: Pkcs11Settings | undefined,
  problems: string[],
): PreviousRootKeySource | undefined {
  const { KEYHOLD_PREVIOUS_ROOT_KEY_FILE: file, KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL: label } = values;
  if (file === undefined && label === undefined) return undefined;
  const setting = file !== undefined ? 'KEYHOLD_PREVIOUS_ROOT_KEY_FILE' : 'KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL';
  if (file !== undefined && label !== undefined) {
    problems.push('Set KEYHOLD_PREVIOUS_ROOT_KEY_FILE or KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL, not both: a rotation moves from one key');
  }
  // A rotation moves from one operator-managed key to another; the generated development key is neither.
  if (rootKey.kind === 'data-dir') {
    problems.push(`${setting} needs the new root key in KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE, or KEYHOLD_ROOT_KEY_PROVIDER=pkcs11`);
  }
  if (file !== undefined) {
    const path = resolve(file);
    if (rootKey.kind === 'file' && rootKey.path === path) {
      problems.push('KEYHOLD_PREVIOUS_ROOT_KEY_FILE must name another file than KEYHOLD_ROOT_KEY_FILE');
    }
    return { kind: 'file', path };
  }
  if (pkcs11 === undefined) problems.push('KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL needs KEYHOLD_PKCS11_LIBRARY, KEYHOLD_PKCS11_TOKEN_LABEL and a PIN');
  if (rootKey.kind === 'pkcs11' && rootKey.keyLabel === label) {
    problems.push('KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL must name another key than KEYHOLD_PKCS11_KEY_LABEL');
  }
  return { kind: 'pkcs11', keyLabel: label ?? '' };
}

/**
 * Reads the configuration from `env` once, validates all of it against `EnvironmentSchema` and the rules that involve
 * two variables, and returns it frozen. Every problem is reported together, so one start-up attempt shows everything
 * to fix. Secrets never appear in the messages.
 */
export function loadConfig(env: Environment): Config {
  const read = readVariables(env);
  // The replica id's default is derived, and checked like a configured one: a host name can break the pattern too.
  read.KEYHOLD_REPLICA_ID ??= hostname();
  // An in-memory SQLite store lives inside one process: workers would each open a store of their own, so it gets one.
  const inMemory = sqlitePathOf(read.KEYHOLD_DATABASE_URL) === ':memory:';
  const workersSet = read.KEYHOLD_WORKERS !== undefined;
  // Otherwise the CPUs this process may use (its affinity, and on Node 20 not a container's CPU quota: see
  // docs/operations.md).
  read.KEYHOLD_WORKERS ??= inMemory ? 1 : Math.min(availableParallelism(), 1024);
  const problems = schemaProblems(read);
  if (inMemory && workersSet && read.KEYHOLD_WORKERS !== 1) {
    problems.push('KEYHOLD_WORKERS (--workers) must be 1 with sqlite::memory:, which lives inside one process (use a file or PostgreSQL)');
  }
  // Past this point a value that broke the schema only feeds a configuration that is thrown away below.
  const values = read as EnvironmentValues;
  const dataDir = resolve(values.KEYHOLD_DATA_DIR);
  const rootKey = parseRootKey(values, dataDir, problems);
  const pkcs11 = parsePkcs11(values, problems);
  if (rootKey.kind === 'pkcs11' && pkcs11 === undefined) {
    problems.push('KEYHOLD_ROOT_KEY_PROVIDER=pkcs11 needs KEYHOLD_PKCS11_LIBRARY, KEYHOLD_PKCS11_TOKEN_LABEL and KEYHOLD_PKCS11_PIN (or _PIN_FILE)');
  }
  const config: Config = {
    host: values.KEYHOLD_HOST,
    port: values.KEYHOLD_PORT,
    metrics:
      values.KEYHOLD_METRICS_PORT === undefined
        ? undefined
        : Object.freeze({ host: values.KEYHOLD_METRICS_HOST, port: values.KEYHOLD_METRICS_PORT }),
    dataDir,
    database: parseDatabase(values.KEYHOLD_DATABASE_URL, dataDir, problems),
    rootKey,
    previousRootKey: parsePreviousRootKey(values, rootKey, pkcs11, problems),
    pkcs11,
    bootstrapToken: values.KEYHOLD_BOOTSTRAP_TOKEN,
    logLevel: values.KEYHOLD_LOG_LEVEL,
    accessLog: values.KEYHOLD_ACCESS_LOG === 'on',
    slowRequestMs: values.KEYHOLD_SLOW_REQUEST_MS === 0 ? undefined : values.KEYHOLD_SLOW_REQUEST_MS,
    workers: values.KEYHOLD_WORKERS,
    cacheTtlMs: values.KEYHOLD_CACHE_TTL_MS,
    changePollIntervalMs: values.KEYHOLD_CHANGE_POLL_INTERVAL_MS,
    sweepIntervalMs: values.KEYHOLD_SWEEP_INTERVAL_MS,
    databaseTimeoutMs: values.KEYHOLD_DATABASE_TIMEOUT_MS,
    shutdownTimeoutMs: values.KEYHOLD_SHUTDOWN_TIMEOUT_MS,
    authConfigPath: values.KEYHOLD_AUTH_CONFIG === undefined ? undefined : resolve(values.KEYHOLD_AUTH_CONFIG),
    tls: parseTls(values, problems),
    audit: Object.freeze({
      enabled: values.KEYHOLD_AUDIT !== 'off',
      replicaName: values.KEYHOLD_REPLICA_ID,
      filePath: values.KEYHOLD_AUDIT_FILE === undefined ? undefined : resolve(values.KEYHOLD_AUDIT_FILE),
      retentionDays: values.KEYHOLD_AUDIT_RETENTION_DAYS,
      timeoutMs: values.KEYHOLD_AUDIT_TIMEOUT_MS,
    }),
    awsKms:
      values.KEYHOLD_AWS_KMS === 'off'
        ? undefined
        : Object.freeze({
            path: values.KEYHOLD_AWS_KMS_PATH,
            port: values.KEYHOLD_AWS_KMS_PORT,
            region: values.KEYHOLD_AWS_REGION,
            accountId: values.KEYHOLD_AWS_ACCOUNT_ID,
            requestsPerSecond: values.KEYHOLD_AWS_KMS_REQUESTS_PER_SECOND,
          }),
  };
  if (problems.length > 0) {
    throw new StartupError(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return Object.freeze({
    ...config,
    database: Object.freeze(config.database),
    rootKey: Object.freeze(config.rootKey),
    previousRootKey: config.previousRootKey === undefined ? undefined : Object.freeze(config.previousRootKey),
  });
}
