import { request as httpsRequest } from 'node:https';
import { status as Code } from '@grpc/grpc-js';

/**
 * The KMS v2 operations on one Keyhold key, over the service's JSON API. Encrypt and decrypt are the service's own
 * `POST /v1/keys/{key}/encrypt` and `/decrypt` (the apiserver's DEK seed is 32 bytes):
 * the key never leaves the service, every call is audited there, and a disabled key or a revoked token takes effect
 * on the next call. Nothing is cached, so no revocation waits on a cache.
 */
export interface KeyholdKmsOptions {
  /** The service, as `--addr`/`KEYHOLD_ADDR`. */
  readonly url: URL;
  /**
   * The bearer token, read on every call, so a rotated token file is picked up. Errors never quote it. Absent when
   * the plugin authenticates with its X.509-SVID (`tls`): the certificate is then its only credential.
   */
  readonly token?: (() => string) | undefined;
  /**
   * The TLS material, read on every call so a rotated SVID or trust bundle is picked up: the client certificate and
   * key (an X.509-SVID, for mutual TLS) and the CA bundle the service's certificate is checked against. Given, the
   * call goes over node:https with exactly these; errors name the file kind, never its content.
   */
  readonly tls?: (() => TlsMaterial) | undefined;
  /** The Keyhold key that encrypts the cluster's DEK seeds. */
  readonly keyName: string;
  /** The longest any one call to the service may take. */
  readonly timeoutMs: number;
}

/** A failure as the apiserver sees it: a gRPC status code and a message with no plaintext and no credential. */
export class KmsError extends Error {
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
    this.name = 'KmsError';
  }
}

/** The KMS v2 API version this plugin speaks. */
export const KMS_API_VERSION = 'v2';
/** `key_id` and the ciphertext must each be at most 1 KiB (k8s.io/kms, apiserver's envelope transformer). */
export const MAX_KMS_FIELD_BYTES = 1024;
/**
 * The largest plaintext whose kh1 ciphertext fits the apiserver's 1 KiB: the text form is `kh1:` and unpadded
 * base64url of 81 + n bytes (docs/ciphertext-format.md), so 4 + ⌈4(81 + n)/3⌉ ≤ 1024 gives n ≤ 684. Well under the
 * service's own 4096; the apiserver's DEK seeds are 32 bytes.
 */
export const MAX_PLAINTEXT_BYTES = 684;
/**
 * The encryption context every seed is bound to. It holds nothing secret and no `kh.` key (reserved). It must never
 * change: a ciphertext only decrypts under the context it was made with.
 */
export const KMS_CONTEXT: Readonly<Record<string, string>> = Object.freeze({ 'k8s.kms': 'v2' });
/** What the Status probe encrypts: a constant, so the probe proves the key encrypts without touching any secret. */
const PROBE = Buffer.from('keyhold kms-plugin status probe').toString('base64');
/** The service's own request-id pattern (src/app.ts): an apiserver uid that fits becomes the audit requestId. */
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** PEM text of the plugin's client certificate and key, and of the CA bundle for the service's certificate. */
export interface TlsMaterial {
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly ca?: string | undefined;
}

export interface StatusAnswer {
  readonly version: string;
  readonly healthz: string;
  readonly keyId: string;
}

interface EncryptBody {
  readonly keyName: string;
  readonly keyVersion: number;
  readonly ciphertext: string;
}

export class KeyholdKms {
  #lastKeyId = '';
  readonly #stopping = new AbortController();

  constructor(private readonly options: KeyholdKmsOptions) {}

  /** `<key>:v<primary version>`: a rotation shows as a new key_id, so the apiserver takes a new DEK seed. */
  static keyId(keyName: string, version: number): string {
    return `${keyName}:v${version}`;
  }

  /**
   * Healthy only when the service answers and the key encrypts now: a tiny encrypt, the one check that covers the
   * key's state, its primary version, the token and the policies at once. A failure is the healthz text.
   */
  async status(timeoutMs = this.options.timeoutMs): Promise<StatusAnswer> {
    try {
      const answer = await this.#call<EncryptBody>('encrypt', { plaintext: PROBE, context: KMS_CONTEXT }, undefined, timeoutMs);
      this.#lastKeyId = KeyholdKms.keyId(answer.keyName, answer.keyVersion);
      return { version: KMS_API_VERSION, healthz: 'ok', keyId: this.#lastKeyId };
    } catch (error) {
      const reason = error instanceof KmsError ? error.message : 'unexpected failure';
      return { version: KMS_API_VERSION, healthz: `unhealthy: ${reason}`, keyId: this.#lastKeyId };
    }
  }

  async encrypt(plaintext: Uint8Array, uid: string, timeoutMs = this.options.timeoutMs): Promise<{ ciphertext: Buffer; keyId: string }> {
    if (plaintext.length === 0) throw new KmsError(Code.INVALID_ARGUMENT, 'plaintext is empty');
    if (plaintext.length > MAX_PLAINTEXT_BYTES) {
      throw new KmsError(Code.INVALID_ARGUMENT, `plaintext is ${plaintext.length} bytes; at most ${MAX_PLAINTEXT_BYTES}, so its ciphertext fits in 1 KiB`);
    }
    const body = { plaintext: Buffer.from(plaintext).toString('base64'), context: KMS_CONTEXT };
    const answer = await this.#call<EncryptBody>('encrypt', body, uid, timeoutMs);
    const ciphertext = Buffer.from(answer.ciphertext, 'utf8');
    const keyId = KeyholdKms.keyId(answer.keyName, answer.keyVersion);
    // Precondition: what the apiserver stores fits its limits; it would refuse the answer anyway, less clearly.
    if (ciphertext.length > MAX_KMS_FIELD_BYTES) throw new KmsError(Code.INTERNAL, `ciphertext is ${ciphertext.length} bytes; at most ${MAX_KMS_FIELD_BYTES}`);
    if (Buffer.byteLength(keyId) > MAX_KMS_FIELD_BYTES) throw new KmsError(Code.INTERNAL, `key_id is over ${MAX_KMS_FIELD_BYTES} bytes`);
    this.#lastKeyId = keyId;
    return { ciphertext, keyId };
  }

  /** Any version of the key that may still decrypt does, whatever key_id the apiserver passes along. */
  async decrypt(ciphertext: Uint8Array, uid: string, timeoutMs = this.options.timeoutMs): Promise<Buffer> {
    if (ciphertext.length === 0 || ciphertext.length > MAX_KMS_FIELD_BYTES) {
      throw new KmsError(Code.INVALID_ARGUMENT, `ciphertext is ${ciphertext.length} bytes; expected 1 to ${MAX_KMS_FIELD_BYTES}`);
    }
    const text = Buffer.from(ciphertext).toString('utf8');
    // Not a Keyhold ciphertext at all (or not UTF-8): the same answer the service gives any decryption failure.
    if (!/^[\x21-\x7e]+$/.test(text)) throw new KmsError(Code.INVALID_ARGUMENT, 'KH_ERR_DECRYPTION_FAILED: the ciphertext cannot be decrypted');
    const answer = await this.#call<{ plaintext: string }>('decrypt', { ciphertext: text, context: KMS_CONTEXT }, uid, timeoutMs);
    return Buffer.from(answer.plaintext, 'base64');
  }

  /** Cuts every call still waiting on the service (the plugin is stopping); later calls fail at once. */
  abort(): void {
    this.#stopping.abort();
  }

  async #call<T>(operation: 'encrypt' | 'decrypt', body: unknown, uid: string | undefined, timeoutMs: number): Promise<T> {
    const base = this.options.url.href.endsWith('/') ? this.options.url.href : `${this.options.url.href}/`;
    const url = new URL(`v1/keys/${encodeURIComponent(this.options.keyName)}/${operation}`, base);
    let token: string | undefined;
    try {
      token = this.options.token?.();
    } catch {
      throw new KmsError(Code.UNAUTHENTICATED, 'the plugin credential cannot be read');
    }
    let tls: TlsMaterial | undefined;
    try {
      tls = this.options.tls?.();
    } catch {
      throw new KmsError(Code.UNAUTHENTICATED, 'the plugin certificate, key or CA bundle cannot be read');
    }
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/json',
    };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (uid !== undefined && REQUEST_ID.test(uid)) headers['x-request-id'] = uid;
    let response: { ok: boolean; status: number };
    let text: string;
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(Math.max(1, timeoutMs)), this.#stopping.signal]);
      const payload = JSON.stringify(body);
      if (tls === undefined) {
        const answer = await fetch(url, { method: 'POST', headers, body: payload, signal });
        response = answer;
        text = await answer.text();
      } else {
        ({ response, text } = await postTls(url, headers, payload, tls, signal));
      }
    } catch (error) {
      throw new KmsError(Code.UNAVAILABLE, `cannot reach ${this.options.url.origin}: ${reasonOf(error, timeoutMs)}`);
    }
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!response.ok) throw problemError(response.status, parsed);
    return parsed as T;
  }
}

/**
 * One POST over node:https with the plugin's own TLS material (a fresh connection each call, so a rotated SVID is
 * used at once). fetch takes no client certificate without undici's Agent, which is not a dependency.
 */
function postTls(url: URL, headers: Record<string, string>, payload: string, tls: TlsMaterial, signal: AbortSignal): Promise<{ response: { ok: boolean; status: number }; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(payload)) },
        agent: false,
        signal,
        ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        ...(tls.cert === undefined ? {} : { cert: tls.cert }),
        ...(tls.key === undefined ? {} : { key: tls.key }),
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('error', reject);
        answer.on('end', () => {
          const status = answer.statusCode ?? 0;
          resolve({ response: { ok: status >= 200 && status < 300, status }, text: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}

function reasonOf(error: unknown, timeoutMs: number): string {
  if ((error as Error).name === 'TimeoutError' || (error as Error).name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const cause = (error as { cause?: { code?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  // node:https: the error's own code (ECONNREFUSED, a certificate check such as UNABLE_TO_VERIFY_LEAF_SIGNATURE).
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'connection failed';
}

/** The gRPC code the apiserver acts on, for each HTTP status the service answers. */
function codeForStatus(status: number): Code {
  if (status === 400 || status === 413 || status === 422) return Code.INVALID_ARGUMENT;
  if (status === 401) return Code.UNAUTHENTICATED;
  if (status === 403) return Code.PERMISSION_DENIED;
  if (status === 404) return Code.NOT_FOUND;
  if (status === 409) return Code.FAILED_PRECONDITION;
  if (status === 429) return Code.RESOURCE_EXHAUSTED;
  if (status === 502 || status === 503 || status === 504) return Code.UNAVAILABLE;
  return Code.INTERNAL;
}

/** The service's stable code and detail (RFC 9457), on one line; the service never echoes plaintext or tokens. */
function problemError(status: number, body: unknown): KmsError {
  const problem = (typeof body === 'object' && body !== null ? body : {}) as { code?: unknown; detail?: unknown; title?: unknown };
  const code = typeof problem.code === 'string' ? problem.code : `HTTP_${status}`;
  const detail = typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : `the service answered ${status}`;
  // eslint-disable-next-line no-control-regex
  return new KmsError(codeForStatus(status), `${code}: ${detail.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').slice(0, 500)}`);
}
