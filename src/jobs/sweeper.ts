import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { DatabaseChangeFeed } from '../changes/change-feed.js';
import type { KeyService } from '../keys/key-service.js';
import type { Clock } from '../lib/clock.js';

/** Long enough for any replica or SSE subscriber to catch up after an outage; a change row is a few bytes. */
export const CHANGE_RETENTION_MS = 24 * 3600 * 1000;

export interface SweeperOptions {
  readonly keys: KeyService;
  readonly changes: DatabaseChangeFeed;
  readonly auditLog: AuditLog;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly intervalMs: number;
  /** Audit records older than this are purged; undefined keeps them. */
  readonly auditRetentionDays: number | undefined;
}

/**
 * Every `intervalMs`: destroys keys whose deletion date has passed, rotates keys whose rotation is due, prunes the
 * change feed and purges audit records past retention. Each job logs its own failure and the next tick tries again.
 * Returns the function that stops it.
 */
export function startSweeper(options: SweeperOptions): () => void {
  const { keys, changes, auditLog, clock, logger, auditRetentionDays } = options;
  const timer = setInterval(() => {
    keys.destroyDueKeys().catch((error: unknown) => logger.error({ err: error }, 'deletion sweep failed'));
    keys.rotateDueKeys().catch((error: unknown) => logger.error({ err: error }, 'rotation sweep failed'));
    changes
      .prune(clock.now(), CHANGE_RETENTION_MS)
      .catch((error: unknown) => logger.error({ err: error }, 'change feed prune failed'));
    if (auditRetentionDays !== undefined) {
      auditLog
        .purgeOlderThan(auditRetentionDays)
        .then((purged) => {
          for (const { replicaId, deleted } of purged) logger.info({ replicaId, deleted }, 'audit records past retention purged');
        })
        .catch((error: unknown) => logger.error({ err: error }, 'audit retention purge failed'));
    }
  }, options.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
