import { Option, type Command } from 'commander';
import { api, destructive, integer, morePages, paged, remote, type RemoteOptions } from './command.js';
import { confirm, type Io } from './io.js';
import { emit, printFields, printTable, type Column } from './output.js';
import { seg } from './remote.js';

interface TokenView {
  readonly id: string;
  readonly name: string;
  readonly admin: boolean;
  readonly createdAt: string;
  readonly expiresAt: string | null;
}

const TOKEN_COLUMNS: ReadonlyArray<Column<TokenView>> = [
  ['id', (t) => t.id],
  ['name', (t) => t.name],
  ['admin', (t) => (t.admin ? 'yes' : 'no')],
  ['created', (t) => t.createdAt],
  ['expires', (t) => t.expiresAt ?? 'never'],
];

/** `keyhold tokens …`: API tokens. */
export function registerTokens(program: Command, io: Io): void {
  const tokens = program.command('tokens').description('issue, list and revoke API tokens');

  remote(tokens.command('create').description('issue a token; its secret is printed once').argument('<name>', 'the token name (principal token:NAME)'))
    .option('--admin', 'an admin token, which bypasses policies (only admins may issue one)')
    .addOption(new Option('--ttl <seconds>', 'expire after this many seconds').argParser(integer('--ttl', 60, 10 * 365 * 24 * 3600)))
    .action(async (name: string, options: RemoteOptions & { admin?: boolean; ttl?: number }) => {
      const { body } = await api(io, options).call<TokenView & { token: string }>('POST', '/v1/tokens', {
        body: { name, admin: options.admin, ttlSeconds: options.ttl },
      });
      emit(io, options.json, body, (token) => {
        printFields(io, [['id', token.id], ['name', token.name], ['admin', token.admin ? 'yes' : 'no'], ['expires', token.expiresAt ?? 'never'], ['token', token.token]]);
        io.stderr.write('The token is shown only this once: store it now.\n');
      });
    });

  paged(remote(tokens.command('list').description('list live tokens (never their secrets)')))
    .action(async (options: RemoteOptions & { limit?: number; cursor?: string }) => {
      const { body } = await api(io, options).call<{ tokens: TokenView[]; nextCursor?: string }>('GET', '/v1/tokens', {
        query: { limit: options.limit, cursor: options.cursor },
      });
      emit(io, options.json, body, (page) => {
        printTable(io, TOKEN_COLUMNS, page.tokens);
        morePages(io, page.nextCursor);
      });
    });

  destructive(remote(tokens.command('revoke').description('revoke a token; it stops working at once').argument('<id>', 'the token id (see tokens list)')))
    .action(async (id: string, options: RemoteOptions) => {
      const client = api(io, options);
      await confirm(io, options.yes, `Revoke token ${id}: every caller using it is refused from now on`, id);
      await client.call('DELETE', `/v1/tokens/${seg(id)}`);
      emit(io, options.json, { revoked: id }, () => io.stdout.write(`revoked token ${id}\n`));
    });
}
