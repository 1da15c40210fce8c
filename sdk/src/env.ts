import { readFileSync } from 'node:fs';
import { apiToken } from './auth/api-token.js';
import type { AuthProvider } from './auth/auth-provider.js';
import { kubernetesServiceAccount } from './auth/kubernetes.js';
import { spiffeMtls } from './auth/spiffe.js';
import { ConfigurationError } from './errors.js';

/** Client options read from the environment; the fields the environment did not set are absent. */
export interface EnvClientOptions {
  /** `KEYHOLD_URL`. */
  readonly url: string;
  /** From `KEYHOLD_TOKEN`, the `KEYHOLD_SPIFFE_*` paths, or `KEYHOLD_TOKEN_PATH`, in that order of precedence. */
  readonly auth: AuthProvider;
  /** `KEYHOLD_TIMEOUT_MS`. */
  readonly timeoutMs?: number;
  /** `KEYHOLD_RETRIES`. */
  readonly retries?: number;
  /** The PEM read from `KEYHOLD_CA_PATH`. */
  readonly ca?: string;
  /** `false` when `KEYHOLD_EVENTS=off`. */
  readonly events?: false;
}

// setTimeout() fires at once for delays above 2^31 - 1 ms.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/** The client's own bound (client.ts); checked here too, so that the error names the variable. */
const MAX_RETRIES = 10;
const WHOLE_NUMBER = /^\d+$/;
const SPIFFE_VARIABLES = ['KEYHOLD_SPIFFE_CERT_PATH', 'KEYHOLD_SPIFFE_KEY_PATH', 'KEYHOLD_SPIFFE_BUNDLE_PATH'] as const;

function integer(env: Readonly<Record<string, string | undefined>>, name: string, min: number, max: number): number | undefined {
  const raw = value(env, name);
  if (raw === undefined) return undefined;
  const text = raw.trim();
  const parsed = WHOLE_NUMBER.test(text) ? Number(text) : Number.NaN;
  if (!(parsed >= min && parsed <= max)) throw new ConfigurationError(`${name} must be a whole number from ${min} to ${max}`);
  return parsed;
}

/** Unset and empty are the same: manifests and compose files often set a variable to "" to clear it. */
function value(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

function authFrom(env: Readonly<Record<string, string | undefined>>, isHttps: boolean): AuthProvider {
  const token = value(env, 'KEYHOLD_TOKEN');
  if (token !== undefined) {
    try {
      return apiToken(token);
    } catch (error) {
      // apiToken's messages say what is wrong without quoting the token.
      throw new ConfigurationError(`KEYHOLD_TOKEN: ${(error as Error).message}`);
    }
  }
  const spiffe = SPIFFE_VARIABLES.map((name) => value(env, name));
  if (spiffe.some((path) => path !== undefined)) {
    const missing = SPIFFE_VARIABLES.filter((_, i) => spiffe[i] === undefined);
    if (missing.length > 0) throw new ConfigurationError(`SPIFFE mutual TLS also needs ${missing.join(' and ')}`);
    if (!isHttps) throw new ConfigurationError('SPIFFE mutual TLS needs an https: KEYHOLD_URL');
    const [certPath, keyPath, bundlePath] = spiffe as [string, string, string];
    return spiffeMtls({ certPath, keyPath, bundlePath });
  }
  const tokenPath = value(env, 'KEYHOLD_TOKEN_PATH');
  // With nothing set, the workload is assumed to run in Kubernetes with the conventional projected token; if the
  // file is not there, the first call says so, naming the path.
  return tokenPath === undefined ? kubernetesServiceAccount() : kubernetesServiceAccount({ tokenPath });
}

function caFrom(env: Readonly<Record<string, string | undefined>>, isHttps: boolean): string | undefined {
  const path = value(env, 'KEYHOLD_CA_PATH');
  if (path === undefined) return undefined;
  if (!isHttps) throw new ConfigurationError('KEYHOLD_CA_PATH is set but KEYHOLD_URL is not https:');
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigurationError(`KEYHOLD_CA_PATH: ${path} could not be read${typeof code === 'string' ? ` (${code})` : ''}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigurationError(`KEYHOLD_CA_PATH: ${path} holds no PEM certificate`);
  return pem;
}

/** `on` (the default) or `off`; anything else is a mistake worth failing start-up for. */
function eventsFrom(env: Readonly<Record<string, string | undefined>>): false | undefined {
  const raw = value(env, 'KEYHOLD_EVENTS')?.trim().toLowerCase();
  if (raw === undefined || raw === 'on') return undefined;
  if (raw === 'off') return false;
  throw new ConfigurationError('KEYHOLD_EVENTS must be on or off');
}

/**
 * Reads the client options of a twelve-factor app from its environment:
 *
 * - `KEYHOLD_URL` (required): the service, `https:` or `http:`.
 * - Authentication, the first that is set: `KEYHOLD_TOKEN` (an API token); `KEYHOLD_SPIFFE_CERT_PATH`,
 *   `KEYHOLD_SPIFFE_KEY_PATH` and `KEYHOLD_SPIFFE_BUNDLE_PATH` (all three, for SPIFFE mutual TLS);
 *   `KEYHOLD_TOKEN_PATH` (a Kubernetes projected token). With none of them, the Kubernetes projected token at its
 *   default path.
 * - `KEYHOLD_CA_PATH`: a PEM file of the CA that issued the service's certificate.
 * - `KEYHOLD_TIMEOUT_MS` (1 to 2^31 - 1) and `KEYHOLD_RETRIES` (0 to 10): whole numbers.
 * - `KEYHOLD_EVENTS`: `off` stops the client from subscribing to revocation events; `on` is the default.
 *
 * An empty variable counts as unset. This is the only place in the SDK that reads `process.env`, and only as the
 * default of `env`, so that everything else is configured by arguments.
 *
 * @throws ConfigurationError naming the variable that is missing or not valid. The message never holds the value
 *   of a variable, so that a token or a URL with a password in it stays out of logs.
 */
export function clientOptionsFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): EnvClientOptions {
  const url = value(env, 'KEYHOLD_URL');
  if (url === undefined) throw new ConfigurationError('KEYHOLD_URL is not set');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigurationError('KEYHOLD_URL is not a valid URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new ConfigurationError('KEYHOLD_URL must use https: or http:');
  const isHttps = parsed.protocol === 'https:';
  const timeoutMs = integer(env, 'KEYHOLD_TIMEOUT_MS', 1, MAX_TIMEOUT_MS);
  const retries = integer(env, 'KEYHOLD_RETRIES', 0, MAX_RETRIES);
  const ca = caFrom(env, isHttps);
  const events = eventsFrom(env);
  const auth = authFrom(env, isHttps);
  return Object.freeze({
    url,
    auth,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(retries !== undefined ? { retries } : {}),
    ...(ca !== undefined ? { ca } : {}),
    ...(events !== undefined ? { events } : {}),
  });
}
