import { hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { StartupError } from './errors.js';
import { parseRootKeyText } from './root-keys/root-key.js';
import type { SecretBytes } from './crypto/secret-bytes.js';

export type DatabaseConfig =
  | { readonly client: 'sqlite'; readonly filename: string }
  | { readonly client: 'postgres'; readonly url: string };

export type RootKeySource =
  | { readonly kind: 'inline'; readonly key: SecretBytes }
  | { readonly kind: 'file'; readonly path: string }
  /** The dev-mode default: `DATA_DIR/root.key`, generated when the store is empty. */
  | { readonly kind: 'data-dir'; readonly path: string };

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly database: DatabaseConfig;
  readonly rootKey: RootKeySource;
  /**
   * `KEYHOLD_PREVIOUS_ROOT_KEY_FILE`: during a root key rotation, the old root key, accepted only to unwrap what is
   * still wrapped under it. Everything new is wrapped under `rootKey`.
   */
  readonly previousRootKeyFile: string | undefined;
  readonly bootstrapToken: string | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
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

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const MIN_BOOTSTRAP_TOKEN_LENGTH = 32;

function integer(env: Environment, name: string, fallback: number, min: number, max: number, problems: string[]): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) {
    problems.push(`${name} must be an integer`);
    return fallback;
  }
  const value = Number(raw);
  if (value < min || value > max) problems.push(`${name} must be between ${min} and ${max}`);
  return value;
}

function parseDatabase(raw: string | undefined, dataDir: string, problems: string[]): DatabaseConfig {
  if (raw === undefined || raw === '') return { client: 'sqlite', filename: join(dataDir, 'keyhold.sqlite') };
  if (raw.startsWith('sqlite:')) {
    // sqlite:PATH, sqlite://PATH and sqlite:///ABSOLUTE all name a file path.
    const path = raw.slice('sqlite:'.length).replace(/^\/\//, '');
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
  problems.push('KEYHOLD_DATABASE_URL must start with postgres://, postgresql:// or sqlite:');
  return { client: 'sqlite', filename: join(dataDir, 'keyhold.sqlite') };
}

function parseAudit(env: Environment, problems: string[]): AuditConfig {
  const switchValue = env.KEYHOLD_AUDIT || 'on';
  if (switchValue !== 'on' && switchValue !== 'off') problems.push('KEYHOLD_AUDIT must be on or off');
  const replicaName = env.KEYHOLD_REPLICA_ID || hostname();
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(replicaName)) {
    problems.push('KEYHOLD_REPLICA_ID must be 1 to 64 of A-Z a-z 0-9 . _ : -');
  }
  return Object.freeze({
    enabled: switchValue !== 'off',
    replicaName: /^[A-Za-z0-9._:-]{1,64}$/.test(replicaName) ? replicaName : 'keyhold',
    filePath: env.KEYHOLD_AUDIT_FILE ? resolve(env.KEYHOLD_AUDIT_FILE) : undefined,
    retentionDays: env.KEYHOLD_AUDIT_RETENTION_DAYS
      ? integer(env, 'KEYHOLD_AUDIT_RETENTION_DAYS', 0, 1, 36_500, problems)
      : undefined,
    timeoutMs: integer(env, 'KEYHOLD_AUDIT_TIMEOUT_MS', 2000, 50, 60_000, problems),
  });
}

function parseTls(env: Environment, problems: string[]): TlsConfig | undefined {
  const certFile = env.KEYHOLD_TLS_CERT_FILE || undefined;
  const keyFile = env.KEYHOLD_TLS_KEY_FILE || undefined;
  const clientCaFile = env.KEYHOLD_TLS_CLIENT_CA_FILE || undefined;
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

function parseRootKey(env: Environment, dataDir: string, problems: string[]): RootKeySource {
  const inline = env.KEYHOLD_ROOT_KEY;
  const file = env.KEYHOLD_ROOT_KEY_FILE;
  if (inline && file) problems.push('Set KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE, not both');
  if (inline) {
    const key = parseRootKeyText(inline);
    if (key === undefined) {
      problems.push('KEYHOLD_ROOT_KEY must be the base64 encoding of exactly 32 bytes');
    } else {
      return { kind: 'inline', key };
    }
  }
  if (file) return { kind: 'file', path: resolve(file) };
  return { kind: 'data-dir', path: join(dataDir, 'root.key') };
}

function parsePreviousRootKeyFile(env: Environment, rootKey: RootKeySource, problems: string[]): string | undefined {
  const file = env.KEYHOLD_PREVIOUS_ROOT_KEY_FILE;
  if (!file) return undefined;
  // A rotation moves from one operator-managed key to another; the generated development key is neither.
  if (rootKey.kind === 'data-dir') {
    problems.push('KEYHOLD_PREVIOUS_ROOT_KEY_FILE needs the new root key in KEYHOLD_ROOT_KEY or KEYHOLD_ROOT_KEY_FILE');
  }
  const path = resolve(file);
  if (rootKey.kind === 'file' && rootKey.path === path) {
    problems.push('KEYHOLD_PREVIOUS_ROOT_KEY_FILE must name another file than KEYHOLD_ROOT_KEY_FILE');
  }
  return path;
}

/**
 * Reads the configuration from `env` once, validates all of it, and returns it frozen. Every problem is reported
 * together, so one start-up attempt shows everything to fix. Secrets never appear in the messages.
 */
export function loadConfig(env: Environment): Config {
  const problems: string[] = [];
  const dataDir = resolve(env.KEYHOLD_DATA_DIR || './data');
  const logLevel = (env.KEYHOLD_LOG_LEVEL || 'info') as Config['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`KEYHOLD_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const bootstrapToken = env.KEYHOLD_BOOTSTRAP_TOKEN || undefined;
  if (bootstrapToken !== undefined && bootstrapToken.length < MIN_BOOTSTRAP_TOKEN_LENGTH) {
    problems.push(`KEYHOLD_BOOTSTRAP_TOKEN must be at least ${MIN_BOOTSTRAP_TOKEN_LENGTH} characters`);
  }
  if (bootstrapToken !== undefined && !/^[\x21-\x7e]+$/.test(bootstrapToken)) {
    problems.push('KEYHOLD_BOOTSTRAP_TOKEN must be printable ASCII without spaces');
  }
  // A bearer shaped like a JWT is judged by the Kubernetes authenticator and would never reach the token store.
  if (bootstrapToken?.startsWith('eyJ') === true) problems.push('KEYHOLD_BOOTSTRAP_TOKEN must not start with "eyJ" (JWTs do)');
  const host = env.KEYHOLD_HOST || '127.0.0.1';
  const rootKey = parseRootKey(env, dataDir, problems);
  const config: Config = {
    host,
    port: integer(env, 'KEYHOLD_PORT', 7780, 0, 65535, problems),
    dataDir,
    database: parseDatabase(env.KEYHOLD_DATABASE_URL, dataDir, problems),
    rootKey,
    previousRootKeyFile: parsePreviousRootKeyFile(env, rootKey, problems),
    bootstrapToken,
    logLevel,
    cacheTtlMs: integer(env, 'KEYHOLD_CACHE_TTL_MS', 5000, 100, 3_600_000, problems),
    changePollIntervalMs: integer(env, 'KEYHOLD_CHANGE_POLL_INTERVAL_MS', 1000, 50, 60_000, problems),
    sweepIntervalMs: integer(env, 'KEYHOLD_SWEEP_INTERVAL_MS', 60_000, 100, 86_400_000, problems),
    databaseTimeoutMs: integer(env, 'KEYHOLD_DATABASE_TIMEOUT_MS', 5000, 100, 120_000, problems),
    shutdownTimeoutMs: integer(env, 'KEYHOLD_SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000, problems),
    authConfigPath: env.KEYHOLD_AUTH_CONFIG ? resolve(env.KEYHOLD_AUTH_CONFIG) : undefined,
    tls: parseTls(env, problems),
    audit: parseAudit(env, problems),
  };
  if (problems.length > 0) {
    throw new StartupError(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return Object.freeze({ ...config, database: Object.freeze(config.database), rootKey: Object.freeze(config.rootKey) });
}
