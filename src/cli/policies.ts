import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { ACTIONS } from '../context/actions.js';
import { api, destructive, failUsage, integer, morePages, paged, pair, remote, type RemoteOptions } from './command.js';
import { CliError, EXIT } from './exit-codes.js';
import { confirm, type Io } from './io.js';
import { emit, printFields, printTable, type Column } from './output.js';
import { seg } from './remote.js';

interface Statement {
  readonly sid?: string;
  readonly effect: 'allow' | 'deny';
  readonly principals: string[];
  readonly actions: string[];
  readonly keys: string[];
  readonly conditions?: { context?: Record<string, string>; principal?: Record<string, string> };
}
interface PolicyView {
  readonly name: string;
  readonly description?: string;
  readonly statements: Statement[];
  readonly revision: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}
interface Simulation {
  readonly decision: 'allow' | 'deny';
  readonly matched: Array<{ policy: string; statement: number; sid?: string; effect: string }>;
  readonly reason: string;
}

const POLICY_COLUMNS: ReadonlyArray<Column<PolicyView>> = [
  ['name', (p) => p.name],
  ['revision', (p) => p.revision],
  ['statements', (p) => p.statements.length],
  ['updated', (p) => p.updatedAt],
  ['description', (p) => p.description],
];

const STATEMENT_COLUMNS: ReadonlyArray<Column<Statement & { index: number }>> = [
  ['#', (s) => s.index],
  ['sid', (s) => s.sid],
  ['effect', (s) => s.effect],
  ['principals', (s) => s.principals],
  ['actions', (s) => s.actions],
  ['keys', (s) => s.keys],
  ['conditions', (s) => s.conditions],
];

function showPolicy(io: Io, policy: PolicyView): void {
  printFields(io, [
    ['name', policy.name],
    ['description', policy.description],
    ['revision', policy.revision],
    ['created', policy.createdAt],
    ['updated', policy.updatedAt],
  ]);
  io.stdout.write('\n');
  printTable(io, STATEMENT_COLUMNS, policy.statements.map((s, index) => ({ ...s, index })));
}

/**
 * The document to PUT, from a file or stdin: `{description?, statements}`. What `policies get --json` prints is
 * taken too, so a policy can be fetched, edited and put back: its name, revision and dates are left out.
 */
function readDocument(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (error) {
    throw new CliError('KH_CLI_FILE', `${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.failure);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new CliError('KH_CLI_USAGE', `${file === '-' ? 'stdin' : file} is not JSON`, EXIT.usage);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new CliError('KH_CLI_USAGE', 'a policy document is a JSON object with "statements"', EXIT.usage);
  }
  const body = { ...(document as Record<string, unknown>) };
  for (const field of ['name', 'revision', 'createdAt', 'updatedAt']) delete body[field];
  return body;
}

/** `keyhold policies …`: access policies. */
export function registerPolicies(program: Command, io: Io): void {
  const policies = program.command('policies').description('write, read and simulate access policies');

  type PutOptions = RemoteOptions & { file: string; ifMatch?: number; create?: boolean };
  const put = remote(policies.command('put').description('create or replace a policy from a JSON document').argument('<name>', 'the policy name'))
    .requiredOption('-f, --file <path>', 'the document: {"description"?, "statements": [...]}; - reads stdin')
    .addOption(new Option('--if-match <revision>', 'replace only if the policy is at this revision').argParser(integer('--if-match', 1, 9_999_999_999)))
    .option('--create', 'create only: fail if the policy exists')
    .action(async (name: string, options: PutOptions) => {
      if (options.ifMatch !== undefined && options.create === true) failUsage(put, '--if-match and --create exclude each other');
      const client = api(io, options);
      const headers: Record<string, string> = {};
      if (options.ifMatch !== undefined) headers['if-match'] = `"${options.ifMatch}"`;
      if (options.create === true) headers['if-none-match'] = '*';
      const { body } = await client.call<PolicyView>('PUT', `/v1/policies/${seg(name)}`, { body: readDocument(options.file), headers });
      emit(io, options.json, body, (policy) => showPolicy(io, policy));
    });

  remote(policies.command('get').description('a policy and its statements').argument('<name>', 'the policy name'))
    .action(async (name: string, options: RemoteOptions) => {
      const { body } = await api(io, options).call<PolicyView>('GET', `/v1/policies/${seg(name)}`);
      emit(io, options.json, body, (policy) => showPolicy(io, policy));
    });

  paged(remote(policies.command('list').description('list policies by name')))
    .option('--prefix <prefix>', 'only names that start with this')
    .action(async (options: RemoteOptions & { prefix?: string; limit?: number; cursor?: string }) => {
      const { body } = await api(io, options).call<{ policies: PolicyView[]; nextCursor?: string }>('GET', '/v1/policies', {
        query: { prefix: options.prefix, limit: options.limit, cursor: options.cursor },
      });
      emit(io, options.json, body, (page) => {
        printTable(io, POLICY_COLUMNS, page.policies);
        morePages(io, page.nextCursor);
      });
    });

  destructive(remote(policies.command('delete').description('delete a policy; it stops applying at once').argument('<name>', 'the policy name')))
    .addOption(new Option('--if-match <revision>', 'delete only if the policy is at this revision').argParser(integer('--if-match', 1, 9_999_999_999)))
    .action(async (name: string, options: RemoteOptions & { ifMatch?: number }) => {
      const client = api(io, options);
      await confirm(io, options.yes, `Delete policy ${name}: the access it grants or denies ends at once`, name);
      await client.call('DELETE', `/v1/policies/${seg(name)}`, { headers: options.ifMatch === undefined ? {} : { 'if-match': `"${options.ifMatch}"` } });
      emit(io, options.json, { deleted: name }, () => io.stdout.write(`deleted policy ${name}\n`));
    });

  type SimulateOptions = RemoteOptions & { principal: string; type?: string; attribute?: Record<string, string>; action: string; key?: string; context?: Record<string, string> };
  remote(policies.command('simulate').description('evaluate a hypothetical request against the stored policies (POST /v1/policies/simulate)'))
    .requiredOption('--principal <id>', 'the principal id, such as k8s:shop:payments or token:ci')
    .addOption(new Option('--type <type>', 'the principal type').choices(['token', 'kubernetes', 'spiffe']))
    .option('--attribute <k=v>', 'a principal attribute, such as namespace=shop (repeatable)', pair)
    .addOption(new Option('--action <action>', 'the action').choices(ACTIONS).makeOptionMandatory())
    .option('--key <name>', 'the key the request is about')
    .option('--context <k=v>', 'an encryption-context pair (repeatable)', pair)
    .action(async (options: SimulateOptions) => {
      const { body } = await api(io, options).call<Simulation>('POST', '/v1/policies/simulate', {
        body: {
          principal: { id: options.principal, type: options.type, attributes: options.attribute },
          action: options.action,
          key: options.key,
          context: options.context,
        },
      });
      emit(io, options.json, body, (result) => {
        io.stdout.write(`${result.decision}: ${result.reason}\n`);
        if (result.matched.length > 0) {
          io.stdout.write('\n');
          printTable(io, [['policy', (m) => m.policy], ['statement', (m) => m.statement], ['sid', (m) => m.sid], ['effect', (m) => m.effect]], result.matched);
        }
      });
    });
}
