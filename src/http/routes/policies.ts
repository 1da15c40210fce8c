import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ValidationError } from '../../errors.js';
import { decodeKeyCursor, encodeKeyCursor } from '../../keys/key-service.js';
import type { StoredPolicy } from '../../policy/policy-repository.js';
import type { Services } from '../../services.js';
import { given, pageLimit } from '../pagination.js';
import { AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, json, problems } from '../schemas/common.js';
import {
  ListPoliciesQuery,
  PolicyDocumentBody,
  PolicyList,
  PolicyNameParams,
  PolicyRef,
  SimulationBody,
  SimulationResult,
} from '../schemas/policies.js';

const tags = ['policies'];

const PreconditionHeaders = Type.Object({
  'if-match': Type.Optional(
    Type.String({ pattern: '^"[1-9][0-9]{0,9}"$', description: 'Change only if the policy is at this revision (its ETag).' }),
  ),
  'if-none-match': Type.Optional(Type.Literal('*', { description: 'Create only: fail if the policy exists.' })),
});

function etag(revision: number): string {
  return `"${revision}"`;
}

/** The revision a write is conditional on: If-Match names one; If-None-Match: * means "none yet" (0). */
function expectedRevision(headers: { 'if-match'?: string | undefined; 'if-none-match'?: string | undefined }): number | undefined {
  if (headers['if-match'] !== undefined && headers['if-none-match'] !== undefined) {
    throw new ValidationError('Send If-Match or If-None-Match, not both');
  }
  if (headers['if-none-match'] !== undefined) return 0;
  return headers['if-match'] === undefined ? undefined : Number(headers['if-match'].slice(1, -1));
}

function policyView(policy: StoredPolicy) {
  const { description, statements } = policy.document;
  return {
    name: policy.name,
    ...(description === undefined ? {} : { description }),
    statements,
    revision: policy.revision,
    createdAt: policy.createdAt,
    updatedAt: policy.updatedAt,
  };
}

export function policyRoutes(services: Pick<Services, 'policies'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { policies } = services;

    app.put('/v1/policies/:name', {
      schema: {
        operationId: 'putPolicy',
        summary: 'Create or replace a policy. It takes effect on this replica before the answer.',
        tags,
        params: PolicyNameParams,
        headers: PreconditionHeaders,
        body: PolicyDocumentBody,
        response: {
          200: json(PolicyRef, 'Replaced.'),
          201: json(PolicyRef, 'Created.'),
          ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_POLICY_REVISION_MISMATCH'),
        },
      },
    }, async (request, reply) => {
      const { created, policy } = await policies.put(
        request.caller,
        request.params.name,
        request.body,
        expectedRevision(request.headers),
      );
      return reply.code(created ? 201 : 200).header('etag', etag(policy.revision)).send(policyView(policy));
    });

    app.get('/v1/policies/:name', {
      schema: {
        operationId: 'getPolicy',
        summary: 'Read a policy.',
        tags,
        params: PolicyNameParams,
        response: { 200: json(PolicyRef, 'The policy.'), ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_POLICY_NOT_FOUND') },
      },
    }, async (request, reply) => {
      const policy = await policies.get(request.caller, request.params.name);
      return reply.header('etag', etag(policy.revision)).send(policyView(policy));
    });

    app.delete('/v1/policies/:name', {
      schema: {
        operationId: 'deletePolicy',
        summary: 'Delete a policy. It stops applying on this replica before the answer.',
        tags,
        params: PolicyNameParams,
        headers: Type.Pick(PreconditionHeaders, ['if-match']),
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN', 'KH_ERR_POLICY_NOT_FOUND', 'KH_ERR_POLICY_REVISION_MISMATCH') },
      },
    }, async (request, reply) => {
      await policies.delete(request.caller, request.params.name, expectedRevision({ 'if-match': request.headers['if-match'] }));
      return reply.code(204).send();
    });

    app.get('/v1/policies', {
      schema: {
        operationId: 'listPolicies',
        summary: 'List policies by name.',
        tags,
        querystring: ListPoliciesQuery,
        response: { 200: json(PolicyList, 'A page of policies.'), ...problems(AUTHENTICATED_PROBLEMS, 'KH_ERR_FORBIDDEN') },
      },
    }, async (request) => {
      const cursor = given(request.query.cursor);
      const page = await policies.list(request.caller, {
        prefix: given(request.query.prefix),
        after: cursor === undefined ? undefined : decodeKeyCursor(cursor),
        limit: pageLimit(request.query.limit),
      });
      const views = page.policies.map(policyView);
      const last = page.policies[page.policies.length - 1];
      return page.hasMore && last !== undefined ? { policies: views, nextCursor: encodeKeyCursor(last.name) } : { policies: views };
    });

    app.post('/v1/policies/simulate', {
      schema: {
        operationId: 'simulatePolicy',
        summary: 'Evaluate a hypothetical request against the stored policies, as a workload.',
        tags,
        body: SimulationBody,
        response: { 200: json(SimulationResult, 'The decision and the statements that made it.'), ...problems(AUTHENTICATED_PROBLEMS, BODY_PROBLEMS, 'KH_ERR_FORBIDDEN') },
      },
    }, async (request) => {
      const result = await policies.simulate(request.caller, request.body);
      return { ...result, matched: [...result.matched] };
    });
  };
}
