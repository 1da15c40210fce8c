import { describe, expect, it } from 'vitest';
import type { Principal } from '../../../src/context/principal.js';
import { boundContextOf } from '../../../src/keys/bound-context.js';
import { keyRecord } from '../../helpers/key-fixtures.js';

function principal(id: string, type: Principal['type'], attributes: Record<string, string>): Principal {
  return { id, type, admin: false, attributes };
}

const clusterA = principal('k8s:payments:api', 'kubernetes', { namespace: 'payments', serviceAccount: 'api', issuer: 'https://a' });
const clusterB = principal('k8s:payments:api', 'kubernetes', { namespace: 'payments', serviceAccount: 'api', issuer: 'https://b' });
const spiffe = principal('spiffe://example.org/ns/payments/sa/api', 'spiffe', {
  trustDomain: 'example.org',
  path: '/ns/payments/sa/api',
  namespace: 'payments',
  serviceAccount: 'api',
});
const bound = keyRecord({ boundContext: ['namespace'] });

describe('identity-bound encryption context', () => {
  it('leaves the context of an unbound key as it is', () => {
    const context = { order: '1' };
    expect(boundContextOf(keyRecord(), clusterA, 'datakey', context)).toBe(context);
  });

  it("adds the caller's attribute, its kind of identity and its authority", () => {
    expect(boundContextOf(bound, clusterA, 'datakey', { order: '1' })).toEqual({
      order: '1',
      'kh.namespace': 'payments',
      'kh.type': 'kubernetes',
      'kh.authority': 'https://a',
    });
  });

  it('binds the same namespace differently in two clusters and under a SPIFFE trust domain', () => {
    const contexts = [clusterA, clusterB, spiffe].map((caller) => JSON.stringify(boundContextOf(bound, caller, 'decrypt', undefined)));
    expect(new Set(contexts).size).toBe(3);
  });

  it('refuses a caller without the bound attribute with 403 naming the action and the key', () => {
    const token = principal('token:ci', 'token', { tokenId: 'x', tokenName: 'ci' });
    expect(() => boundContextOf(bound, token, 'encrypt', undefined)).toThrow(/Not allowed to encrypt on key "payments"/);
  });
});
