import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { createSecureContext } from 'node:tls';
import { ConfigurationError, CredentialsError } from '../errors.js';
import type { AuthProvider, Credentials, TlsIdentity } from './auth-provider.js';
import { refreshingProvider } from './refreshing-provider.js';

/** A certificate chain, key or bundle is a few KiB; a file far larger is the wrong file and is not read. */
const MAX_PEM_FILE_BYTES = 1024 * 1024;

/** The options of {@link spiffeMtls}. Paths are as written by spiffe-helper or the SPIFFE CSI driver. */
export interface SpiffeMtlsOptions {
  /** The X509-SVID certificate chain, PEM, leaf first. */
  readonly certPath: string;
  /** The SVID's private key, PEM (PKCS#8, SEC1 or PKCS#1). */
  readonly keyPath: string;
  /** The trust bundle the service's certificate must chain to, PEM. */
  readonly bundlePath: string;
  /**
   * How often the files are checked for a change, in milliseconds; a check is three `stat` calls. Default 5 s:
   * SPIRE renews SVIDs at half their lifetime (an hour by default), so a few seconds' delay is never the
   * difference between a valid and an expired certificate.
   */
  readonly refreshIntervalMs?: number;
  /** A monotonic clock in milliseconds; for tests. Default `performance.now`. */
  readonly now?: () => number;
}

/** What tells one version of a file from the next. The inode changes when a symlink swap or a rename replaces it. */
interface FileVersion {
  readonly mtimeMs: number;
  readonly size: number;
  readonly ino: number;
}

interface Loaded {
  readonly credentials: Credentials;
  readonly versions: readonly FileVersion[];
}

const WHAT = ['SVID certificate', 'SVID key', 'trust bundle'] as const;

function errnoOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? ` (${code})` : '';
}

function versionOf(stats: { mtimeMs: number; size: number; ino: number }): FileVersion {
  return { mtimeMs: stats.mtimeMs, size: stats.size, ino: stats.ino };
}

function sameVersions(a: readonly FileVersion[], b: readonly FileVersion[]): boolean {
  return a.length === b.length && a.every((v, i) => v.mtimeMs === b[i]?.mtimeMs && v.size === b[i]?.size && v.ino === b[i]?.ino);
}

/** A material that did not parse; the previous material, if any, stays in use. */
class TornMaterial extends CredentialsError {}

/**
 * Promise.all, except that when several fail the error is that of the first in order, not of the first to settle:
 * with two files missing, the message names the same one every time.
 */
async function allInOrder<T extends readonly unknown[]>(promises: { readonly [I in keyof T]: Promise<T[I]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * Authenticates with mutual TLS, presenting an X509-SVID, and trusts the service through the SPIFFE trust bundle.
 *
 * The three files are read once and then checked for a change (size, modification time, inode) at most every
 * `refreshIntervalMs`, and at the next call after `invalidate()`. A change reloads all three and bumps
 * `tls.generation`, which makes the transport open new connections with the new certificate: an open TLS
 * connection keeps presenting the certificate it was opened with.
 *
 * spiffe-helper writes the certificate and key one after the other, not atomically, so a check can see a new
 * certificate beside the old key. Material whose key does not match its certificate, or that does not parse, is
 * not taken: the previous material stays in use (it is still valid, as SVIDs are renewed at half-life) and the
 * files are read again at the next check. Only at the first load is such material an error.
 *
 * Credentials carry no headers: the certificate is the credential.
 *
 * @throws ConfigurationError (at once) when an option is not valid.
 * @throws CredentialsError (from `credentials()`) when a file cannot be read, or at first load does not hold
 *   matching PEM material. Messages name paths, never content.
 */
export function spiffeMtls(options: SpiffeMtlsOptions): AuthProvider {
  if (typeof options !== 'object' || options === null) throw new ConfigurationError('spiffeMtls needs certPath, keyPath and bundlePath');
  const paths = [options.certPath, options.keyPath, options.bundlePath] as const;
  for (const [i, name] of (['certPath', 'keyPath', 'bundlePath'] as const).entries()) {
    if (typeof paths[i] !== 'string' || paths[i] === '') throw new ConfigurationError(`${name} must be a non-empty path`);
  }
  const refreshIntervalMs = options.refreshIntervalMs ?? 5_000;
  if (typeof refreshIntervalMs !== 'number' || !(refreshIntervalMs >= 0)) {
    throw new ConfigurationError('refreshIntervalMs must be a number of 0 or more');
  }
  const now = options.now ?? (() => performance.now());

  let loaded: Loaded | undefined;
  let generation = 0;
  // The epoch of the last check: one made before the last invalidate() does not count as recent.
  let checkedAt = 0;
  let checkedEpoch = -1;

  async function statAll(): Promise<FileVersion[]> {
    return allInOrder(
      paths.map(async (path, i) => {
        try {
          return versionOf(await stat(path));
        } catch (error) {
          throw new CredentialsError(`The ${WHAT[i]} file ${path} could not be read${errnoOf(error)}`, { cause: error });
        }
      }),
    );
  }

  async function readOne(i: number): Promise<{ text: string; version: FileVersion }> {
    const path = paths[i] as string;
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      throw new CredentialsError(`The ${WHAT[i]} file ${path} could not be read${errnoOf(error)}`, { cause: error });
    }
    try {
      // The version is taken from the open descriptor, so it describes exactly the bytes read.
      const stats = await handle.stat();
      if (!stats.isFile()) throw new CredentialsError(`The ${WHAT[i]} file ${path} is not a regular file`);
      if (stats.size > MAX_PEM_FILE_BYTES) throw new CredentialsError(`The ${WHAT[i]} file ${path} is larger than ${MAX_PEM_FILE_BYTES} bytes`);
      return { text: await handle.readFile('utf8'), version: versionOf(stats) };
    } catch (error) {
      if (error instanceof CredentialsError) throw error;
      throw new CredentialsError(`The ${WHAT[i]} file ${path} could not be read${errnoOf(error)}`, { cause: error });
    } finally {
      await handle.close();
    }
  }

  /** Checks that the three PEMs parse and belong together. No parser error is kept: it may quote the key. */
  function validate(cert: string, key: string, bundle: string): void {
    let leaf: X509Certificate;
    let privateKey: KeyObject;
    try {
      leaf = new X509Certificate(cert);
    } catch {
      throw new TornMaterial(`The SVID certificate file ${paths[0]} does not hold a PEM certificate`);
    }
    try {
      privateKey = createPrivateKey(key);
    } catch {
      throw new TornMaterial(`The SVID key file ${paths[1]} does not hold a PEM private key`);
    }
    if (!leaf.checkPrivateKey(privateKey)) {
      throw new TornMaterial(`The SVID key file ${paths[1]} does not match the certificate in ${paths[0]}`);
    }
    try {
      new X509Certificate(bundle);
      // The whole chain and bundle, as the transport will load them.
      createSecureContext({ cert, key, ca: bundle });
    } catch {
      throw new TornMaterial(`The trust bundle file ${paths[2]} or the chain in ${paths[0]} is not valid PEM`);
    }
  }

  async function check(startEpoch: number): Promise<Credentials> {
    const markChecked = (): void => {
      checkedAt = now();
      checkedEpoch = startEpoch;
    };
    const current = await statAll();
    if (loaded !== undefined && sameVersions(loaded.versions, current)) {
      markChecked();
      return loaded.credentials;
    }
    const [cert, key, bundle] = await allInOrder([readOne(0), readOne(1), readOne(2)]);
    try {
      validate(cert.text, key.text, bundle.text);
    } catch (error) {
      if (!(error instanceof TornMaterial) || loaded === undefined) throw error;
      // Most likely caught mid-rotation: keep what works and look again at the next check.
      markChecked();
      return loaded.credentials;
    }
    generation += 1;
    const tls: TlsIdentity = Object.freeze({ cert: cert.text, key: key.text, ca: bundle.text, generation });
    loaded = { credentials: Object.freeze({ headers: Object.freeze({}), tls }), versions: [cert.version, key.version, bundle.version] };
    markChecked();
    return loaded.credentials;
  }

  return refreshingProvider(check, (epoch) =>
    loaded !== undefined && checkedEpoch === epoch && now() - checkedAt < refreshIntervalMs ? loaded.credentials : undefined);
}
