import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Services } from '../../services.js';
import { ACCESS_KEY_ID } from '../../aws-kms/aws-credential-service.js';
import { decodePairCursor, encodePairCursor, given, pageLimit } from '../pagination.js';
import {
  AccessKeyIdParams,
  AwsCredentialList,
  CreateAwsCredentialBody,
  IssuedAwsCredential,
  ListAwsCredentialsQuery,
} from '../schemas/aws-credentials.js';
import { AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, json, problems } from '../schemas/common.js';

const tags = ['aws-credentials'];

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function awsCredentialRoutes(services: Pick<Services, 'awsCredentials'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { awsCredentials } = services;

    app.post('/v1/aws-credentials', {
      schema: {
        operationId: 'createAwsCredential',
        summary: 'Issue an AWS access key bound to a principal. The secret is in this response only.',
        tags,
        body: CreateAwsCredentialBody,
        response: {
          201: json(IssuedAwsCredential, 'The access key, with its secret.'),
          ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_AWS_CREDENTIAL_EXISTS'),
        },
      },
    }, async (request, reply) => reply.code(201).send(await awsCredentials.create(request.caller, request.body)));

    app.get('/v1/aws-credentials', {
      schema: {
        operationId: 'listAwsCredentials',
        summary: 'List live AWS access keys, never their secrets.',
        tags,
        querystring: ListAwsCredentialsQuery,
        response: { 200: json(AwsCredentialList, 'A page of access keys.'), ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN') },
      },
    }, async (request) => {
      const cursor = given(request.query.cursor);
      const [name, accessKeyId] = cursor === undefined ? [] : decodePairCursor(cursor, [NAME, ACCESS_KEY_ID]);
      const after = name === undefined || accessKeyId === undefined ? undefined : { name, accessKeyId };
      const page = await awsCredentials.list(request.caller, { after, limit: pageLimit(request.query.limit) });
      const last = page.credentials[page.credentials.length - 1];
      return page.hasMore && last !== undefined ? { credentials: page.credentials, nextCursor: encodePairCursor(last.name, last.accessKeyId) } : { credentials: page.credentials };
    });

    app.delete('/v1/aws-credentials/:accessKeyId', {
      schema: {
        operationId: 'revokeAwsCredential',
        summary: 'Revoke an AWS access key. It stops signing at once on this replica, and on the others through the change feed.',
        tags,
        params: AccessKeyIdParams,
        response: {
          204: { description: 'Revoked.', type: 'null' },
          ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_AWS_CREDENTIAL_NOT_FOUND'),
        },
      },
    }, async (request, reply) => {
      await awsCredentials.revoke(request.caller, request.params.accessKeyId);
      return reply.code(204).send();
    });
  };
}
