import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { KeyholdError } from '../errors.js';
import type { TokenService } from './token-service.js';

export interface AdminBootstrap {
  /** KEYHOLD_BOOTSTRAP_TOKEN: the first admin token, chosen by the operator. */
  readonly bootstrapToken: string | undefined;
  /** Where a generated token is written when none was chosen. */
  readonly dataDir: string;
}

/**
 * Makes sure a live admin token exists: the operator's bootstrap token, else a generated one written (0600) to
 * `DATA_DIR/admin.token`. Resolves to the generated token and its path, for the caller to show once.
 */
export async function ensureAdminToken(
  tokens: TokenService,
  bootstrap: AdminBootstrap,
  logger: Logger,
): Promise<{ token: string; path: string } | undefined> {
  if (await tokens.hasLiveAdmin()) return undefined;
  try {
    if (bootstrap.bootstrapToken !== undefined) {
      await tokens.issue('bootstrap-admin', true, undefined, bootstrap.bootstrapToken);
      logger.info('created the admin token from KEYHOLD_BOOTSTRAP_TOKEN');
      return undefined;
    }
    const issued = await tokens.issue('admin', true);
    const path = join(bootstrap.dataDir, 'admin.token');
    writeAdminTokenFile(path, issued.token);
    return { token: issued.token, path };
  } catch (error) {
    // Another replica bootstrapped at the same moment; its admin token stands.
    if (error instanceof KeyholdError && error.code === 'KH_ERR_TOKEN_EXISTS') return undefined;
    throw error;
  }
}

/** Writes the generated admin token for the operator to pick up: 0600, next to the development root key. */
function writeAdminTokenFile(path: string, token: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
}
