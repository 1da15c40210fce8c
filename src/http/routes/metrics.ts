import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Services } from '../../services.js';

/** Prometheus text exposition of the audit writer's counters. */
export function metricsRoutes(services: Pick<Services, 'auditWriter'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get('/metrics', {
      config: { public: true },
      schema: { hide: true },
    }, async (_request, reply) => {
      const metrics = services.auditWriter?.metrics;
      const lines =
        metrics === undefined
          ? ['# Keyhold: the audit log is off (KEYHOLD_AUDIT=off)']
          : [
              ['keyhold_audit_records_total', 'Audit records committed to the database.', metrics.records],
              ['keyhold_audit_commits_total', 'Audit group commits.', metrics.commits],
              ['keyhold_audit_commit_failures_total', 'Audit group commits that failed; their requests got 503.', metrics.commitFailures],
              ['keyhold_audit_file_failures_total', 'Writes to KEYHOLD_AUDIT_FILE that failed.', metrics.fileFailures],
            ].flatMap(([name, help, value]) => [`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${value}`]);
      return reply.type('text/plain; version=0.0.4').send(`${lines.join('\n')}\n`);
    });
  };
}
