import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { PolicyAuthorizer } from '../../policy/authorizer.js';
import type { Services } from '../../services.js';
import type { HttpMetrics } from '../plugins/request-metrics.js';
import { KeyEventStreams } from '../key-events.js';
import { AUTHENTICATED_PROBLEMS, problems } from '../schemas/common.js';
import { eventStream, EventStreamHeaders } from '../schemas/events.js';

const DESCRIPTION = [
  'Server-Sent Events of key-state changes, for clients that cache data keys.',
  '`key` events (data: the KeyEventData schema) name a key the caller may use (datakey, encrypt, decrypt, rewrap, rewrap-revoked or keys:read,',
  'in some encryption context: a grant conditioned on the context counts)',
  'that was rotated, disabled, enabled, updated, scheduled for deletion or destroyed: drop its cached data keys.',
  '`resync` events (data: the ResyncEventData schema) mean drop every cached data key: a policy changed, or changes were',
  'missed (since Last-Event-ID, or by this replica) and are no longer kept. Each event id is the change sequence.',
  'A `: keep-alive` comment comes every 15 s; the stream ends after 10 minutes, when the token that opened it is revoked,',
  'and, for a stream opened with an API token, right after a `resync` for changes this replica missed (they may include',
  'that revocation): reconnect with Last-Event-ID.',
  'A caller allowed no key gets a stream without key events.',
].join(' ');

export function eventRoutes(
  services: Pick<Services, 'changes' | 'policyStore'>,
  metrics?: Pick<HttpMetrics, 'watchEventStreams'>,
): FastifyPluginAsyncTypebox {
  return async (app) => {
    const streams = new KeyEventStreams({
      feed: services.changes,
      // The same decisions as the requests' authoriser, read from the same policy snapshot.
      authorizer: new PolicyAuthorizer(() => services.policyStore.current()),
      refreshPolicies: () => services.policyStore.ensureFresh(),
    });
    metrics?.watchEventStreams(() => streams.size);
    // Before the server closes: it waits for every open response, and a stream only ends by itself after minutes.
    app.addHook('preClose', (done) => {
      streams.endAll();
      done();
    });

    app.get('/v1/events', {
      schema: {
        operationId: 'streamEvents',
        summary: 'A stream of changes to the keys the caller may use, so that cached data keys can be dropped at once.',
        description: DESCRIPTION,
        tags: ['events'],
        headers: EventStreamHeaders,
        response: { 200: eventStream('The stream; it opens once its audit record is written.'), ...problems(AUTHENTICATED_PROBLEMS) },
      },
    }, async (request, reply) => {
      const lastEventId = request.headers['last-event-id'];
      const stream = streams.open(request.caller.principal, lastEventId === undefined ? undefined : Number(lastEventId));
      // On every end: client gone, the stream ended, or the audit hook answered 503 instead of sending it.
      reply.raw.once('close', () => stream.destroy());
      // The audit hook runs on send, before the headers go out: the open is recorded once, and if it cannot be,
      // the hook answers 503 in place of the stream.
      return reply
        .type('text/event-stream; charset=utf-8')
        .header('cache-control', 'no-store')
        // nginx and its kin buffer responses unless told not to.
        .header('x-accel-buffering', 'no')
        .send(stream);
    });
  };
}
