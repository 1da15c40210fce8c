import type { Caller } from '../context/caller.js';
import type { Clock } from '../lib/clock.js';
import type { EncryptionContext } from '../crypto/encryption-context.js';
import { KeyholdError, ValidationError } from '../errors.js';
import type { Principal, PrincipalType } from '../context/principal.js';
import type { Action } from '../context/actions.js';
import type { Authorizer } from './authorizer.js';
import { evaluate } from './evaluate.js';
import { compilePolicy, PolicyDocumentError, type PolicyDocument } from './policy.js';
import type { PolicyRepository, StoredPolicy } from './policy-repository.js';
import type { PolicyStore } from './policy-store.js';
import type { Decision } from '../context/decision.js';

export interface SimulationInput {
  readonly principal: { readonly id: string; readonly type?: PrincipalType | undefined; readonly attributes?: Readonly<Record<string, string>> | undefined };
  readonly action: Action;
  readonly key?: string | undefined;
  readonly context?: EncryptionContext | undefined;
}

export interface SimulationResult {
  readonly decision: 'allow' | 'deny';
  readonly matched: Decision['matched'];
  readonly reason: string;
}

export interface PolicyServiceOptions {
  readonly repository: PolicyRepository;
  readonly store: PolicyStore;
  readonly authorizer: Authorizer;
  readonly clock: Clock;
}

function typeOf(id: string): PrincipalType {
  if (id.startsWith('spiffe://')) return 'spiffe';
  if (id.startsWith('k8s:')) return 'kubernetes';
  return 'token';
}

function explain(decision: Decision, action: Action, key: string | undefined): string {
  const target = key === undefined ? action : `${action} on key ${JSON.stringify(key)}`;
  const first = decision.matched[0];
  const where = first === undefined ? '' : ` by policy ${JSON.stringify(first.policy)} statement ${first.statement}`;
  switch (decision.reason) {
    case 'explicit-deny':
      return `${target} is denied explicitly${where}`;
    case 'allowed':
      return `${target} is allowed${where}`;
    default:
      return `no statement allows ${target}; denied by default`;
  }
}

/** Writes, reads and simulates access policies. Writes take effect on this replica before they are answered. */
export class PolicyService {
  readonly #repository: PolicyRepository;
  readonly #store: PolicyStore;
  readonly #authorizer: Authorizer;
  readonly #clock: Clock;

  constructor(options: PolicyServiceOptions) {
    this.#repository = options.repository;
    this.#store = options.store;
    this.#authorizer = options.authorizer;
    this.#clock = options.clock;
  }

  async put(
    caller: Caller,
    name: string,
    document: PolicyDocument,
    expectedRevision: number | undefined,
  ): Promise<{ created: boolean; policy: StoredPolicy }> {
    caller.trail.runs('policies:put');
    this.#authorizer.authorize(caller, 'policies:write', {});
    try {
      compilePolicy(name, document);
    } catch (error) {
      if (error instanceof PolicyDocumentError) throw new ValidationError(`The policy is not valid: ${error.message}`);
      throw error;
    }
    const outcome = await this.#repository.put(name, document, this.#clock.now(), expectedRevision);
    if (outcome.kind === 'revision-mismatch') throw new KeyholdError('KH_ERR_POLICY_REVISION_MISMATCH');
    await this.#store.reload();
    return { created: outcome.kind === 'created', policy: outcome.policy };
  }

  async get(caller: Caller, name: string): Promise<StoredPolicy> {
    this.#authorizer.authorize(caller, 'policies:read', {});
    const policy = await this.#repository.find(name);
    if (policy === undefined) throw new KeyholdError('KH_ERR_POLICY_NOT_FOUND');
    return policy;
  }

  async list(
    caller: Caller,
    query: { prefix?: string | undefined; after?: string | undefined; limit: number },
  ): Promise<{ policies: StoredPolicy[]; hasMore: boolean }> {
    this.#authorizer.authorize(caller, 'policies:read', {});
    const rows = await this.#repository.list({ ...query, limit: query.limit + 1 });
    return { policies: rows.slice(0, query.limit), hasMore: rows.length > query.limit };
  }

  async delete(caller: Caller, name: string, expectedRevision: number | undefined): Promise<void> {
    caller.trail.runs('policies:delete');
    this.#authorizer.authorize(caller, 'policies:write', {});
    const outcome = await this.#repository.delete(name, expectedRevision, this.#clock.now());
    if (outcome === 'not-found') throw new KeyholdError('KH_ERR_POLICY_NOT_FOUND');
    if (outcome === 'revision-mismatch') throw new KeyholdError('KH_ERR_POLICY_REVISION_MISMATCH');
    await this.#store.reload();
  }

  /**
   * Evaluates a hypothetical request against the stored policies, as a workload (never as an admin), and reports
   * every statement that matched. It runs on a fresh read, so it also shows what other replicas wrote.
   */
  async simulate(caller: Caller, input: SimulationInput): Promise<SimulationResult> {
    this.#authorizer.authorize(caller, 'policies:read', {});
    const set = await this.#store.read();
    const subject: Principal = {
      id: input.principal.id,
      type: input.principal.type ?? typeOf(input.principal.id),
      attributes: input.principal.attributes ?? {},
      admin: false,
    };
    const decision = evaluate(set, subject, input.action, { keyName: input.key }, input.context, true);
    return { decision: decision.allowed ? 'allow' : 'deny', matched: decision.matched, reason: explain(decision, input.action, input.key) };
  }
}
