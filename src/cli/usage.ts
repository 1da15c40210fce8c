export const USAGE = `Usage: keyhold <command>

Commands:
  server    Run the Keyhold server (configured by KEYHOLD_* environment variables; see README.md).
  openapi   Print the OpenAPI document generated from the route schemas.
  audit verify [--witness FILE | --file FILE] [--accept-unsealed REPLICA_ID|all]...
            Walk every audit chain in the configured store and report, per replica, the first missing or
            altered record, and whether the chain is sealed (its process shut down cleanly), live, or ended
            without a seal (a crash, or a cut tail). --witness checks the store against the latest head
            statement per chain in a KEYHOLD_AUDIT_FILE kept off the host. --file verifies such a file on its
            own (the audit key still comes from the store). Exits 0 when every chain is intact and none ended
            without a seal, except those named by --accept-unsealed (repeatable; all accepts every one); 1
            otherwise.
  root rotate --new-key-file PATH [--batch-size N] [--dry-run]
            Record the root key in PATH and rewrap every key version and the audit key still wrapped under
            another root key, N rows per transaction (default 500). It unwraps with the root keys configured as
            for the server (KEYHOLD_ROOT_KEY[_FILE], KEYHOLD_PREVIOUS_ROOT_KEY_FILE). Every server must hold the
            new key before this runs. Safe to interrupt and to run again; progress goes to stderr and a JSON
            summary to stdout. Exits 0 when nothing is left under another root key, 1 otherwise. --dry-run
            only counts.
`;

/** Writes `message` and the usage to stderr; the process exits 2. */
export function usageError(message: string): void {
  process.stderr.write(`${message}\n\n${USAGE}`);
  process.exitCode = 2;
}
