import { readFileSync } from 'node:fs';
import { CliError, EXIT, exitCodeForStatus } from './exit-codes.js';

/** The flags every remote command takes (`--addr`, `--token-file`); the environment fills in the rest. */
export interface RemoteFlags {
  readonly addr?: string | undefined;
  readonly tokenFile?: string | undefined;
}

/** What the CLI reads from the environment: `KEYHOLD_ADDR` and `KEYHOLD_TOKEN`, client-side only. */
export type ClientEnvironment = Readonly<Record<string, string | undefined>>;

/** The service address from `--addr` or `KEYHOLD_ADDR`, or undefined when neither is given. */
export function givenAddress(flags: RemoteFlags, env: ClientEnvironment): string | undefined {
  const addr = flags.addr ?? env.KEYHOLD_ADDR;
  return addr === undefined || addr === '' ? undefined : addr;
}

/** The address and credential of a remote command, checked before any request. */
export interface Target {
  readonly url: URL;
  readonly token: string;
}

export function resolveTarget(flags: RemoteFlags, env: ClientEnvironment): Target {
  return { url: resolveAddress(flags, env), token: readToken(flags.tokenFile, env) };
}

/** The service address alone, checked: for a command whose credential is read later (kms-plugin). */
export function resolveAddress(flags: RemoteFlags, env: ClientEnvironment): URL {
  const addr = givenAddress(flags, env);
  if (addr === undefined) throw new CliError('KH_CLI_USAGE', 'no service address: set KEYHOLD_ADDR or pass --addr URL', EXIT.usage);
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    throw new CliError('KH_CLI_USAGE', `--addr/KEYHOLD_ADDR is not a URL: ${addr}`, EXIT.usage);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError('KH_CLI_USAGE', '--addr/KEYHOLD_ADDR must be an http: or https: URL', EXIT.usage);
  }
  return url;
}

/** The token from `--token-file` (one trailing newline allowed) or `KEYHOLD_TOKEN`. Errors never quote it. */
export function readToken(tokenFile: string | undefined, env: ClientEnvironment): string {
  let token: string | undefined;
  if (tokenFile !== undefined) {
    try {
      token = readFileSync(tokenFile, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      throw new CliError('KH_CLI_TOKEN', `--token-file ${tokenFile} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.denied);
    }
    if (token === '' || /\s/.test(token)) throw new CliError('KH_CLI_TOKEN', `--token-file ${tokenFile} does not hold one token`, EXIT.denied);
  } else {
    token = env.KEYHOLD_TOKEN;
  }
  if (token === undefined || token === '') {
    throw new CliError('KH_CLI_TOKEN', 'no credential: set KEYHOLD_TOKEN or pass --token-file PATH', EXIT.denied);
  }
  return token;
}

export interface ApiAnswer<T> {
  readonly status: number;
  readonly body: T;
  readonly headers: Headers;
}

export interface CallOptions {
  readonly body?: unknown;
  readonly query?: Readonly<Record<string, string | number | undefined>>;
  readonly headers?: Readonly<Record<string, string>>;
}

const TIMEOUT_MS = 30_000;

/**
 * The service's JSON API, as the admin CLI uses it. A problem answer (RFC 9457) becomes a `CliError` with the
 * service's code and detail; a connection that fails becomes `KH_CLI_UNAVAILABLE`. No retries: a person or a script
 * is watching, and the exit status says to try again.
 */
export class Api {
  constructor(readonly target: Target) {}

  async call<T = unknown>(method: string, path: string, options: CallOptions = {}): Promise<ApiAnswer<T>> {
    const url = new URL(path.replace(/^\//, ''), this.target.url.href.endsWith('/') ? this.target.url : `${this.target.url.href}/`);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined && value !== '') url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { authorization: `Bearer ${this.target.token}`, accept: 'application/json', ...options.headers };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (error) {
      throw unreachable(this.target.url, error);
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!response.ok) throw problemError(response.status, body);
    return { status: response.status, body: body as T, headers: response.headers };
  }
}

function unreachable(url: URL, error: unknown): CliError {
  const cause = (error as { cause?: { code?: string } }).cause;
  const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS / 1000} s` : (cause?.code ?? (cause as Error | undefined)?.message ?? (error as Error).message);
  return new CliError('KH_CLI_UNAVAILABLE', `cannot reach ${url.origin}: ${reason}`, EXIT.unavailable);
}

/** One line from a problem answer: its stable code and its detail (or title); a bare status otherwise. */
export function problemError(status: number, body: unknown): CliError {
  const problem = (typeof body === 'object' && body !== null ? body : {}) as { code?: unknown; detail?: unknown; title?: unknown };
  const code = typeof problem.code === 'string' ? problem.code : `HTTP_${status}`;
  const detail = typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : `the service answered ${status}`;
  return new CliError(code, oneLine(detail), exitCodeForStatus(status));
}

/** A service's text, made safe for one terminal line: control characters (an escape sequence, a newline) go. */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').slice(0, 1000);
}

/** A path segment: key and policy names are plain, but a name is never trusted to be. */
export const seg = (value: string | number): string => encodeURIComponent(String(value));
