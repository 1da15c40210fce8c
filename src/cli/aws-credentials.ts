import { Option, type Command } from 'commander';
import { api, destructive, integer, morePages, paged, remote, type RemoteOptions } from './command.js';
import { confirm, type Io } from './io.js';
import { emit, printFields, printTable, type Column } from './output.js';
import { seg } from './remote.js';

interface AwsCredentialView {
  readonly accessKeyId: string;
  readonly name: string;
  readonly principal: { readonly id: string; readonly type: string };
  readonly createdAt: string;
  readonly expiresAt: string | null;
}

const CREDENTIAL_COLUMNS: ReadonlyArray<Column<AwsCredentialView>> = [
  ['access key id', (c) => c.accessKeyId],
  ['name', (c) => c.name],
  ['principal', (c) => c.principal.id],
  ['created', (c) => c.createdAt],
  ['expires', (c) => c.expiresAt ?? 'never'],
];

/** `keyhold aws-credentials …`: AWS access keys for the AWS-KMS-compatible endpoint. */
export function registerAwsCredentials(program: Command, io: Io): void {
  const credentials = program.command('aws-credentials').description('issue, list and revoke AWS access keys bound to principals');

  remote(
    credentials
      .command('create')
      .description('issue an AWS access key; its secret is printed once')
      .argument('<name>', 'a name for the key, unique among live keys'),
  )
    .option('--principal <id>', 'bind the key to this principal (k8s:NS:SA, a SPIFFE ID or token:NAME; admins only) instead of the caller')
    .addOption(new Option('--ttl <seconds>', 'expire after this many seconds').argParser(integer('--ttl', 60, 10 * 365 * 24 * 3600)))
    .action(async (name: string, options: RemoteOptions & { principal?: string; ttl?: number }) => {
      const { body } = await api(io, options).call<AwsCredentialView & { secretAccessKey: string }>('POST', '/v1/aws-credentials', {
        body: { name, principal: options.principal, ttlSeconds: options.ttl },
      });
      emit(io, options.json, body, (credential) => {
        printFields(io, [
          ['access key id', credential.accessKeyId],
          ['name', credential.name],
          ['principal', credential.principal.id],
          ['expires', credential.expiresAt ?? 'never'],
          ['secret access key', credential.secretAccessKey],
        ]);
        io.stderr.write('The secret access key is shown only this once: store it now.\n');
        // The secret is not repeated here: stderr is more often logged than stdout.
        io.stderr.write(`Use it as: AWS_ACCESS_KEY_ID=${credential.accessKeyId} AWS_SECRET_ACCESS_KEY=<the secret access key above>\n`);
      });
    });

  paged(remote(credentials.command('list').description('list live AWS access keys (never their secrets)')))
    .action(async (options: RemoteOptions & { limit?: number; cursor?: string }) => {
      const { body } = await api(io, options).call<{ credentials: AwsCredentialView[]; nextCursor?: string }>('GET', '/v1/aws-credentials', {
        query: { limit: options.limit, cursor: options.cursor },
      });
      emit(io, options.json, body, (page) => {
        printTable(io, CREDENTIAL_COLUMNS, page.credentials);
        morePages(io, page.nextCursor);
      });
    });

  destructive(
    remote(
      credentials
        .command('revoke')
        .description('revoke an AWS access key; it stops signing at once')
        .argument('<accessKeyId>', 'the access key id (see aws-credentials list)'),
    ),
  ).action(async (accessKeyId: string, options: RemoteOptions) => {
    const client = api(io, options);
    await confirm(io, options.yes, `Revoke AWS access key ${accessKeyId}: every request signed with it is refused from now on`, accessKeyId);
    await client.call('DELETE', `/v1/aws-credentials/${seg(accessKeyId)}`);
    emit(io, options.json, { revoked: accessKeyId }, () => io.stdout.write(`revoked AWS access key ${accessKeyId}\n`));
  });
}
