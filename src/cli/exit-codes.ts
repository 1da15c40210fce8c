/**
 * The `keyhold` exit statuses, one per kind of outcome a script branches on (docs/cli.md lists them). A problem
 * answer's HTTP status decides which, so every `KH_ERR_…` code lands on exactly one.
 */
export const EXIT = Object.freeze({
  ok: 0,
  /** Anything else: a broken audit chain, a failed decryption, a 500, a declined confirmation. */
  failure: 1,
  /** The command line is wrong (unknown flag, missing argument, bad value), or the service refused the request as invalid (400, 413, 415). */
  usage: 2,
  /** No credential, or the service refused it (401) or the action (403). */
  denied: 3,
  /** The key, version, policy, token or route does not exist (404). */
  notFound: 4,
  /** The state forbids it: it exists already, the key or version is disabled, a revision mismatch (409, 412). */
  conflict: 5,
  /** The service cannot be reached or is temporarily unavailable (connection refused, timeout, 429, 502–504). */
  unavailable: 6,
});

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit status of a problem answer with this HTTP status. */
export function exitCodeForStatus(status: number): ExitCode {
  if (status === 401 || status === 403) return EXIT.denied;
  if (status === 404) return EXIT.notFound;
  if (status === 409 || status === 412) return EXIT.conflict;
  if (status === 429 || status === 502 || status === 503 || status === 504) return EXIT.unavailable;
  if (status === 400 || status === 413 || status === 415 || status === 422) return EXIT.usage;
  return EXIT.failure;
}

/**
 * A failure the CLI reports as one line, `keyhold: CODE: detail`, and exits with `exitCode`. `code` is the service's
 * `KH_ERR_…` code for a problem answer, or a `KH_CLI_…` code for what the CLI itself refuses.
 */
export class CliError extends Error {
  constructor(
    readonly code: string,
    detail: string,
    readonly exitCode: ExitCode,
  ) {
    super(detail);
    this.name = 'CliError';
  }
}

/** A usage error found after parsing: a flag value or combination that is refused. */
export function usageError(detail: string): CliError {
  return new CliError('KH_CLI_USAGE', detail, EXIT.usage);
}
