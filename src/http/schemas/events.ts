import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { KeyName, ref } from './common.js';

/** `GET /v1/events`: the stream's request header and the data of its events. */

export const EventStreamHeaders = Type.Object({
  'last-event-id': Type.Optional(
    Type.String({
      pattern: '^(0|[1-9][0-9]{0,14})$',
      description: 'The id of the last event received, sent on reconnect: the changes after it are replayed first.',
    }),
  ),
});

/** The `data` of a `key` event. It says which key changed and how, never anything of the key itself. */
export const KeyEventData = Type.Object(
  {
    seq: Type.Integer({ minimum: 1, description: 'The change sequence; also the event id.' }),
    keyName: ref(KeyName),
    action: Type.String({ description: 'What changed: rotate, disable, enable, update, schedule-deletion, destroy, …' }),
    at: Type.String({ format: 'date-time', description: 'When the change was committed.' }),
  },
  { $id: 'KeyEventData', additionalProperties: false, description: 'The data of a `key` event of GET /v1/events.' },
);
export type KeyEventData = Static<typeof KeyEventData>;

/** The `data` of a `resync` event. */
export const ResyncEventData = Type.Object(
  { seq: Type.Integer({ minimum: 0, description: 'The change sequence the stream resumes after; also the event id.' }) },
  { $id: 'ResyncEventData', additionalProperties: false, description: 'The data of a `resync` event of GET /v1/events.' },
);
export type ResyncEventData = Static<typeof ResyncEventData>;

/** A `text/event-stream` answer; OpenAPI 3.1 has no schema for a sequence of events, so the description tells. */
export function eventStream(description: string): TSchema {
  return {
    description,
    content: { 'text/event-stream': { schema: Type.String({ description: 'Server-Sent Events (WHATWG HTML §9.2).' }) } },
  } as unknown as TSchema;
}
