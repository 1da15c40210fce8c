import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Caller, KeyOperation } from '../../context/caller.js';
import type { ErrorCode } from '../../errors.js';
import type { KeyRecord } from '../../keys/key-record.js';
import type { Services } from '../../services.js';
import { defaultEmptyBody } from '../plugins/empty-body.js';
import { given, pageLimit } from '../pagination.js';
import { AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, json, KeyNameParams, problems } from '../schemas/common.js';
import {
  CreateKeyBody,
  EmptyBody,
  KeyRef,
  KeyList,
  keyStateRefusals,
  KeyVersionParams,
  ListKeysQuery,
  ScheduleDeletionBody,
  UpdateKeyBody,
  versionStateRefusals,
} from '../schemas/keys.js';

const tags = ['keys'];

/**
 * A change to a key (key-service.ts `#mutate`): refused by a policy, for a key that does not exist, by the lifecycle
 * table, or because its deletion date had passed (it is destroyed first).
 */
const mutationProblemCodes = (operation: KeyOperation): ErrorCode[] => [
  ...AUTHENTICATED_PROBLEMS,
  ...BODY_PROBLEMS,
  'KH_ERR_FORBIDDEN',
  'KH_ERR_KEY_NOT_FOUND',
  'KH_ERR_KEY_DESTROYED',
  ...keyStateRefusals(operation),
];
const mutationProblems = (operation: KeyOperation) => problems(mutationProblemCodes(operation));

/** Key administration: one schema and one service call per route. */
export function keyRoutes(services: Pick<Services, 'keys'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { keys } = services;

    app.post('/v1/keys', {
      schema: {
        operationId: 'createKey',
        summary: 'Create a key with its first version.',
        tags,
        body: CreateKeyBody,
        response: { 201: json(KeyRef, 'The new key.'), ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_KEY_EXISTS') },
      },
    }, async (request, reply) => reply.code(201).send(await keys.create(request.caller, request.body)));

    app.get('/v1/keys', {
      schema: {
        operationId: 'listKeys',
        summary: 'List keys by name, with keyset pagination.',
        tags,
        querystring: ListKeysQuery,
        // A workload's listing is filtered by its grants, never refused.
        response: { 200: json(KeyList, 'A page of keys.'), ...problems(AUTHENTICATED_PROBLEMS) },
      },
    }, async (request) =>
      keys.list(request.caller, {
        prefix: given(request.query.prefix),
        cursor: given(request.query.cursor),
        limit: pageLimit(request.query.limit),
      }),
    );

    app.get('/v1/keys/:name', {
      schema: {
        operationId: 'getKey',
        summary: 'Read a key and its versions.',
        tags,
        params: KeyNameParams,
        response: { 200: json(KeyRef, 'The key.'), ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_KEY_NOT_FOUND') },
      },
    }, async (request) => keys.get(request.caller, request.params.name));

    app.patch('/v1/keys/:name', {
      schema: {
        operationId: 'updateKey',
        summary: 'Change the description, labels, rotation period or minimum decryption version.',
        tags,
        params: KeyNameParams,
        body: UpdateKeyBody,
        response: { 200: json(KeyRef, 'The updated key.'), ...mutationProblems('update') },
      },
    }, async (request) => keys.update(request.caller, request.params.name, request.body));

    const transitions: ReadonlyArray<readonly [KeyOperation, string, string, (p: Caller, n: string) => Promise<KeyRecord>]> = [
      ['rotate', 'rotateKey', 'Add a version and make it primary.', (p, n) => keys.rotate(p, n)],
      ['disable', 'disableKey', 'Disable the key: it refuses every cryptographic operation.', (p, n) => keys.disable(p, n)],
      ['enable', 'enableKey', 'Enable a disabled key.', (p, n) => keys.enable(p, n)],
      ['cancel-deletion', 'cancelKeyDeletion', 'Cancel a scheduled deletion; the key stays disabled.', (p, n) => keys.cancelDeletion(p, n)],
    ];

    for (const [path, operationId, summary, run] of transitions) {
      app.post(`/v1/keys/:name/${path}`, {
        preValidation: defaultEmptyBody,
        schema: {
          operationId,
          summary,
          tags,
          params: KeyNameParams,
          body: EmptyBody,
          response: { 200: json(KeyRef, 'The key after the change.'), ...mutationProblems(path) },
        },
      }, async (request) => run(request.caller, request.params.name));
    }

    app.post('/v1/keys/:name/schedule-deletion', {
      preValidation: defaultEmptyBody,
      schema: {
        operationId: 'scheduleKeyDeletion',
        summary: 'Schedule the key for destruction after a waiting period of 7 to 30 days.',
        tags,
        params: KeyNameParams,
        body: ScheduleDeletionBody,
        response: { 200: json(KeyRef, 'The key, pending deletion.'), ...mutationProblems('schedule-deletion') },
      },
    }, async (request) => keys.scheduleDeletion(request.caller, request.params.name, request.body.pendingWindowDays));

    for (const [path, operationId, summary] of [
      ['disable', 'disableKeyVersion', 'Revoke one version: it refuses to decrypt until enabled again.'],
      ['enable', 'enableKeyVersion', 'Enable a disabled version.'],
    ] as const) {
      app.post(`/v1/keys/:name/versions/:version/${path}`, {
        preValidation: defaultEmptyBody,
        schema: {
          operationId,
          summary,
          tags,
          params: KeyVersionParams,
          body: EmptyBody,
          response: {
            200: json(KeyRef, 'The key after the change.'),
            ...problems(
              mutationProblemCodes(`${path}-version`),
              'KH_ERR_KEY_VERSION_NOT_FOUND',
              versionStateRefusals(`${path}-version`),
            ),
          },
        },
      }, async (request) => {
        const { name, version } = request.params;
        return path === 'disable'
          ? keys.disableVersion(request.caller, name, Number(version))
          : keys.enableVersion(request.caller, name, Number(version));
      });
    }
  };
}
