import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Services } from '../../services.js';
import { decodePairCursor, encodePairCursor, given, pageLimit } from '../pagination.js';
import { AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, json, problems } from '../schemas/common.js';
import { CreateTokenBody, IssuedToken, ListTokensQuery, TokenIdParams, TokenList } from '../schemas/tokens.js';

const tags = ['tokens'];

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TOKEN_ID = /^[0-9a-f-]{36}$/;

export function tokenRoutes(services: Pick<Services, 'tokens'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { tokens } = services;

    app.post('/v1/tokens', {
      schema: {
        operationId: 'createToken',
        summary: 'Issue an API token. The secret is in this response only.',
        tags,
        body: CreateTokenBody,
        response: { 201: json(IssuedToken, 'The token, with its secret.'), ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_TOKEN_EXISTS') },
      },
    }, async (request, reply) => reply.code(201).send(await tokens.create(request.caller, request.body)));

    app.get('/v1/tokens', {
      schema: {
        operationId: 'listTokens',
        summary: 'List live tokens, never their secrets.',
        tags,
        querystring: ListTokensQuery,
        response: { 200: json(TokenList, 'A page of tokens.'), ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN') },
      },
    }, async (request) => {
      const limit = pageLimit(request.query.limit);
      const cursor = given(request.query.cursor);
      const [name, id] = cursor === undefined ? [] : decodePairCursor(cursor, [NAME, TOKEN_ID]);
      const after = name === undefined || id === undefined ? undefined : { name, id };
      const page = await tokens.list(request.caller, { after, limit });
      const last = page.tokens[page.tokens.length - 1];
      return page.hasMore && last !== undefined ? { tokens: page.tokens, nextCursor: encodePairCursor(last.name, last.id) } : { tokens: page.tokens };
    });

    app.delete('/v1/tokens/:id', {
      schema: {
        operationId: 'revokeToken',
        summary: 'Revoke a token. It stops working at once on this replica.',
        tags,
        params: TokenIdParams,
        response: { 204: { description: 'Revoked.', type: 'null' }, ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_TOKEN_NOT_FOUND') },
      },
    }, async (request, reply) => {
      await tokens.revoke(request.caller, request.params.id);
      return reply.code(204).send();
    });
  };
}
