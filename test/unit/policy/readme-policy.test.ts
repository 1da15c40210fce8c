import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Principal } from '../../../src/context/principal.js';
import { evaluate, PolicySet } from '../../../src/policy/evaluate.js';
import { compilePolicy, type PolicyDocument } from '../../../src/policy/policy.js';

/** The policy example of the README's "Policies" section, verbatim: the JSON heredoc after its `curl -X PUT`. */
function readmePolicy(): PolicyDocument {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Policies'));
  const match = /<<'JSON'\n([\s\S]*?)\nJSON\n/.exec(section);
  if (match === null) throw new Error('the README has no policy example');
  return JSON.parse(match[1] as string) as PolicyDocument;
}

const PAYMENTS_API: Principal = Object.freeze({
  id: 'k8s:payments:api',
  type: 'kubernetes',
  admin: false,
  attributes: Object.freeze({ namespace: 'payments', serviceAccount: 'api' }),
});

describe("the README's policy example", () => {
  const policies = new PolicySet([compilePolicy('payments', readmePolicy())]);
  const allowed = (key: string): boolean =>
    evaluate(policies, PAYMENTS_API, 'datakey', { keyName: key }, { namespace: 'payments' }).allowed;

  it('lets namespace payments use its own keys, named payments.NAME', () => {
    expect(allowed('payments.orders')).toBe(true);
  });

  it('does not let namespace payments use the keys of namespace payments-prod, however they are named', () => {
    for (const key of ['payments-prod.orders', 'payments-prod-orders', 'payments-orders', 'paymentsx.orders']) {
      expect(allowed(key), key).toBe(false);
    }
  });
});
