import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ValidationError } from '../../errors.js';
import type { Services } from '../../services.js';
import { given, pageLimit } from '../pagination.js';
import { AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, json, problems } from '../schemas/common.js';
import { CreateTokenBody, IssuedToken, ListTokensQuery, TokenIdParams, TokenList } from '../schemas/tokens.js';

const tags = ['tokens'];

function encodeCursor(last: { name: string; id: string }): string {
  return Buffer.from(JSON.stringify([last.name, last.id]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): { name: string; id: string } {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === 'string' &&
      typeof value[1] === 'string' &&
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(value[0]) &&
      /^[0-9a-f-]{36}$/.test(value[1])
    ) {
      return { name: value[0], id: value[1] };
    }
  } catch {
    // fall through to the validation error
  }
  throw new ValidationError('cursor is not valid');
}

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
      const after = cursor === undefined ? undefined : decodeCursor(cursor);
      const page = await tokens.list(request.caller, { after, limit });
      const last = page.tokens[page.tokens.length - 1];
      return page.hasMore && last !== undefined ? { tokens: page.tokens, nextCursor: encodeCursor(last) } : { tokens: page.tokens };
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
