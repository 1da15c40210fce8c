import { open } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { ConfigurationError, CredentialsError } from '../errors.js';
import type { AuthProvider, Credentials } from './auth-provider.js';
import { refreshingProvider } from './refreshing-provider.js';

/** Where a pod's projected service-account token for Keyhold is mounted, by convention (audience `keyhold`). */
export const DEFAULT_KUBERNETES_TOKEN_PATH = '/var/run/secrets/tokens/keyhold';

/** A projected token is a JWT of a few KiB; a file far larger is the wrong file, and is not read into memory. */
const MAX_TOKEN_FILE_BYTES = 64 * 1024;
const TOKEN = /^[\x21-\x7e]+$/;

/** The options of {@link kubernetesServiceAccount}. */
export interface KubernetesServiceAccountOptions {
  /** The projected token file. Default {@link DEFAULT_KUBERNETES_TOKEN_PATH}. */
  readonly tokenPath?: string;
  /**
   * How long a token read from the file is used before the file is read again, in milliseconds. Default 60 s: the
   * kubelet replaces a projected token once 80% of its lifetime (at least 10 minutes) has passed, so a minute's
   * delay in noticing always leaves the old token valid.
   */
  readonly refreshIntervalMs?: number;
  /** Reads the file; for tests. The default refuses anything but a regular file of at most 64 KiB. */
  readonly readFile?: (path: string) => Promise<string | Buffer>;
  /** A monotonic clock in milliseconds; for tests. Default `performance.now`. */
  readonly now?: () => number;
}

function errnoOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? ` (${code})` : '';
}

/**
 * Opens the file by path at every read and closes it: the kubelet rotates a projected token by pointing the
 * `..data` symlink at a new directory, so a descriptor kept open would go on reading the old token.
 */
async function readTokenFile(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    // Checked on the open descriptor, so that what is checked is what is read.
    const stats = await handle.stat();
    if (!stats.isFile()) throw new CredentialsError(`The service account token file ${path} is not a regular file`);
    if (stats.size > MAX_TOKEN_FILE_BYTES) {
      throw new CredentialsError(`The service account token file ${path} is larger than ${MAX_TOKEN_FILE_BYTES} bytes`);
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/**
 * Authenticates with a Kubernetes projected service-account token, sent as `Authorization: Bearer <jwt>`.
 *
 * The token is read from the file, used for `refreshIntervalMs`, then read again; `invalidate()` (the service
 * answered 401) makes the next call read it at once. Concurrent calls that find the token due share one read.
 * No file watcher is used: inotify does not see the kubelet's symlink swap reliably, and a read a minute is cheap.
 *
 * @throws ConfigurationError (at once) when an option is not valid.
 * @throws CredentialsError (from `credentials()`) when the file is missing, empty or not a token. The message names
 *   the path, never the content.
 */
export function kubernetesServiceAccount(options: KubernetesServiceAccountOptions = {}): AuthProvider {
  const tokenPath = options.tokenPath ?? DEFAULT_KUBERNETES_TOKEN_PATH;
  const refreshIntervalMs = options.refreshIntervalMs ?? 60_000;
  if (typeof tokenPath !== 'string' || tokenPath === '') throw new ConfigurationError('tokenPath must be a non-empty path');
  if (typeof refreshIntervalMs !== 'number' || !(refreshIntervalMs >= 0)) {
    throw new ConfigurationError('refreshIntervalMs must be a number of 0 or more');
  }
  const readFile = options.readFile ?? readTokenFile;
  const now = options.now ?? (() => performance.now());

  let cached: { readonly credentials: Credentials; readonly readAt: number; readonly epoch: number } | undefined;

  async function read(startEpoch: number): Promise<Credentials> {
    let raw: string | Buffer;
    try {
      raw = await readFile(tokenPath);
    } catch (error) {
      if (error instanceof CredentialsError) throw error;
      throw new CredentialsError(`The service account token file ${tokenPath} could not be read${errnoOf(error)}`, { cause: error });
    }
    // The file usually ends in a newline; the token is what is around it.
    const token = (typeof raw === 'string' ? raw : raw.toString('utf8')).trim();
    if (token === '') throw new CredentialsError(`The service account token file ${tokenPath} is empty`);
    if (!TOKEN.test(token)) throw new CredentialsError(`The service account token file ${tokenPath} does not hold a token`);
    const credentials: Credentials = Object.freeze({ headers: Object.freeze({ authorization: `Bearer ${token}` }) });
    cached = { credentials, readAt: now(), epoch: startEpoch };
    return credentials;
  }

  return refreshingProvider(read, (epoch) =>
    cached !== undefined && cached.epoch === epoch && now() - cached.readAt < refreshIntervalMs ? cached.credentials : undefined);
}
