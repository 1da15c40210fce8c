import { subscribe } from 'node:diagnostics_channel';
import type { FastifyInstance, onSendHookHandler } from 'fastify';

/**
 * Makes the integration tests check `openapi.yaml`'s problem listings: every problem a route answers must carry a
 * code its response schema lists for that status (see `problems()` in src/http/schemas/common.ts, whose entry
 * description is the comma-separated list of codes). Fastify announces each instance it creates on the
 * `fastify.initialization` channel, before any route is registered, so the check is added here without any code in
 * the application: on each route with response schemas, an onSend hook after the application's own (the audit
 * hook may replace an answer with a 503), which records what no schema declares. `takeUndeclaredProblems()` hands
 * the record to the test helpers, whose `close()` fails the test.
 */

interface UndeclaredProblem {
  readonly route: string;
  readonly status: number;
  readonly code: string;
}

const undeclared: UndeclaredProblem[] = [];

/** The codes a route declares per status, read from what `problems()` writes. */
function declaredCodes(response: Record<string, { description?: unknown; content?: Record<string, unknown> }>): Map<number, Set<string>> {
  const declared = new Map<number, Set<string>>();
  for (const [status, entry] of Object.entries(response)) {
    if (entry.content?.['application/problem+json'] === undefined || typeof entry.description !== 'string') continue;
    declared.set(Number(status), new Set(entry.description.split(', ')));
  }
  return declared;
}

subscribe('fastify.initialization', (message) => {
  const { fastify } = message as { fastify: FastifyInstance };
  fastify.addHook('onRoute', (route) => {
    const response = (route.schema as { response?: Parameters<typeof declaredCodes>[0] } | undefined)?.response;
    if (response === undefined || route.schema?.hide === true) return;
    const declared = declaredCodes(response);
    const name = `${String(route.method)} ${route.url}`;
    const check: onSendHookHandler = (_request, reply, payload, done) => {
      const contentType = String(reply.getHeader('content-type') ?? '');
      if (reply.statusCode >= 400 && contentType.startsWith('application/problem+json') && typeof payload === 'string') {
        const { code } = JSON.parse(payload) as { code: string };
        if (declared.get(reply.statusCode)?.has(code) !== true) undeclared.push({ route: name, status: reply.statusCode, code });
      }
      done(null, payload);
    };
    const existing = route.onSend === undefined ? [] : Array.isArray(route.onSend) ? route.onSend : [route.onSend];
    route.onSend = [...existing, check];
  });
});

/** The problems answered since the last call that their route's schema does not declare; the record is emptied. */
export function takeUndeclaredProblems(): UndeclaredProblem[] {
  return undeclared.splice(0);
}

/** Throws when any route answered a problem its schema does not declare. */
export function assertNoUndeclaredProblems(): void {
  const found = takeUndeclaredProblems();
  if (found.length === 0) return;
  const lines = [...new Set(found.map(({ route, status, code }) => `${route}: ${status} ${code}`))];
  throw new Error(`Routes answered problems their response schemas do not declare (see problems() in src/http/schemas/common.ts):\n${lines.join('\n')}`);
}
