import { InvalidArgumentError, Option, type Command } from 'commander';
import { BOUND_ATTRIBUTES } from '../keys/key-record.js';
import { MAX_PENDING_WINDOW_DAYS, MIN_PENDING_WINDOW_DAYS } from '../keys/lifecycle.js';
import { api, destructive, failUsage, integer, morePages, paged, pair, remote, type RemoteOptions } from './command.js';
import { confirm, type Io } from './io.js';
import { emit, printFields, printTable, type Column } from './output.js';
import { seg } from './remote.js';

/** What a key and its summary share, as the API answers them (times as RFC 3339 strings). */
interface KeyFieldsView {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly labels: Record<string, string>;
  readonly boundContext: string[];
  readonly state: string;
  readonly primaryVersion: number;
  readonly minDecryptionVersion: number;
  readonly rotationPeriodSeconds: number | null;
  readonly retainVersions: number | null;
  readonly nextRotationAt: string | null;
  readonly deletionDate: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** A key (the `Key` schema). */
interface KeyView extends KeyFieldsView {
  readonly versions: ReadonlyArray<{ version: number; state: string; rootKeyId: string; createdAt: string; updatedAt: string; destroyedAt: string | null }>;
}

/** A key in a listing (the `KeySummary` schema): its versions counted. */
interface KeySummaryView extends KeyFieldsView {
  readonly versionCount: number;
  readonly enabledVersionCount: number;
}

const period = (seconds: number | null): string | null => (seconds === null || seconds === 0 ? null : seconds % 86_400 === 0 ? `${seconds / 86_400}d` : `${seconds}s`);

const KEY_COLUMNS: ReadonlyArray<Column<KeySummaryView>> = [
  ['name', (k) => k.name],
  ['state', (k) => k.state],
  ['primary', (k) => k.primaryVersion],
  ['min-decrypt', (k) => k.minDecryptionVersion],
  ['versions', (k) => k.versionCount],
  ['rotation', (k) => period(k.rotationPeriodSeconds)],
  ['next rotation', (k) => k.nextRotationAt],
  ['deletion', (k) => k.deletionDate],
];

/** A key's row in the listing's table. */
function summaryOf(key: KeyView): KeySummaryView {
  const { versions, ...fields } = key;
  return { ...fields, versionCount: versions.length, enabledVersionCount: versions.filter((v) => v.state === 'enabled').length };
}

const VERSION_COLUMNS: ReadonlyArray<Column<KeyView['versions'][number]>> = [
  ['version', (v) => v.version],
  ['state', (v) => v.state],
  ['created', (v) => v.createdAt],
  ['updated', (v) => v.updatedAt],
  ['destroyed', (v) => v.destroyedAt],
  ['root key', (v) => v.rootKeyId],
];

function showKey(io: Io, key: KeyView): void {
  printFields(io, [
    ['name', key.name],
    ['id', key.id],
    ['state', key.state],
    ['description', key.description],
    ['labels', key.labels],
    ['bound context', key.boundContext],
    ['primary version', key.primaryVersion],
    ['min decryption version', key.minDecryptionVersion],
    ['rotation period', period(key.rotationPeriodSeconds)],
    ['retain versions', key.retainVersions ?? 'all'],
    ['next rotation', key.nextRotationAt],
    ['deletion date', key.deletionDate],
    ['created', key.createdAt],
    ['updated', key.updatedAt],
  ]);
  io.stdout.write('\n');
  printTable(io, VERSION_COLUMNS, key.versions);
}

/** `--rotation-period`: seconds, or 30d/12h, or off. */
function rotationPeriod(raw: string): number {
  if (raw === 'off' || raw === '0') return 0;
  const match = /^(\d+)([dhs]?)$/.exec(raw);
  if (match === null) throw new InvalidArgumentError('expected seconds, a duration such as 30d or 12h, or off');
  return Number(match[1]) * { d: 86_400, h: 3600, s: 1, '': 1 }[match[2] as 'd' | 'h' | 's' | ''];
}

/** `keyhold keys …`: key administration. */
export function registerKeys(program: Command, io: Io): void {
  const keys = program.command('keys').description('create, list, change and retire keys');

  type CreateOptions = RemoteOptions & { description?: string; label?: Record<string, string>; rotationPeriod?: number; retainVersions?: number; boundContext?: string[] };
  remote(keys.command('create').description('create a key with its first version').argument('<name>', 'the key name'))
    .option('--description <text>', 'what the key protects')
    .option('--label <k=v>', 'a label (repeatable)', pair)
    .addOption(new Option('--rotation-period <period>', 'rotate on schedule: seconds, 30d, 12h, or off').argParser(rotationPeriod))
    .addOption(new Option('--retain-versions <n>', 'keep only the newest N versions decryptable after a rotation').argParser(integer('--retain-versions')))
    .addOption(new Option('--bound-context <attribute...>', "bind these caller attributes into every context").choices(BOUND_ATTRIBUTES))
    .action(async (name: string, options: CreateOptions) => {
      const { body } = await api(io, options).call<KeyView>('POST', '/v1/keys', {
        body: {
          name,
          description: options.description,
          labels: options.label,
          rotationPeriodSeconds: options.rotationPeriod,
          retainVersions: options.retainVersions,
          boundContext: options.boundContext,
        },
      });
      emit(io, options.json, body, (key) => showKey(io, key));
    });

  type ListOptions = RemoteOptions & { prefix?: string; limit?: number; cursor?: string };
  paged(remote(keys.command('list').description('list keys by name')))
    .option('--prefix <prefix>', 'only names that start with this')
    .action(async (options: ListOptions) => {
      const { body } = await api(io, options).call<{ keys: KeySummaryView[]; nextCursor?: string }>('GET', '/v1/keys', {
        query: { prefix: options.prefix, limit: options.limit, cursor: options.cursor },
      });
      emit(io, options.json, body, (page) => {
        printTable(io, KEY_COLUMNS, page.keys);
        morePages(io, page.nextCursor);
      });
    });

  remote(keys.command('show').description('a key, its settings and its versions').argument('<name>', 'the key name'))
    .action(async (name: string, options: RemoteOptions) => {
      const { body } = await api(io, options).call<KeyView>('GET', `/v1/keys/${seg(name)}`);
      emit(io, options.json, body, (key) => showKey(io, key));
    });

  type UpdateOptions = RemoteOptions & { description?: string; label?: Record<string, string>; rotationPeriod?: number; retainVersions?: number | 'all'; minDecryptionVersion?: number };
  const update = remote(keys.command('update').description('change the description, labels, rotation or minimum decryption version').argument('<name>', 'the key name'))
    .option('--description <text>', 'a new description')
    .option('--label <k=v>', 'the labels, replacing all of them (repeatable)', pair)
    .addOption(new Option('--rotation-period <period>', 'seconds, 30d, 12h, or off').argParser(rotationPeriod))
    .addOption(new Option('--retain-versions <n>', 'N, or all').argParser((raw) => (raw === 'all' ? ('all' as const) : integer('--retain-versions')(raw))))
    .addOption(new Option('--min-decryption-version <n>', 'older versions refuse to decrypt').argParser(integer('--min-decryption-version', 1, 0xffffffff)))
    .action(async (name: string, options: UpdateOptions) => {
      const body = {
        description: options.description,
        labels: options.label,
        rotationPeriodSeconds: options.rotationPeriod,
        retainVersions: options.retainVersions === 'all' ? null : options.retainVersions,
        minDecryptionVersion: options.minDecryptionVersion,
      };
      if (Object.values(body).every((value) => value === undefined)) failUsage(update, 'keys update needs at least one change');
      const answer = await api(io, options).call<KeyView>('PATCH', `/v1/keys/${seg(name)}`, { body });
      emit(io, options.json, answer.body, (key) => showKey(io, key));
    });

  /** A transition: POST /v1/keys/NAME/PATH, answered with the key. */
  const transition = (path: string, summary: string, isDestructive = false) => {
    const command = remote(keys.command(path).description(summary).argument('<name>', 'the key name'));
    return isDestructive ? destructive(command) : command;
  };
  for (const [path, summary] of [
    ['rotate', 'add a version and make it primary'],
    ['enable', 'enable a disabled key'],
    ['cancel-deletion', 'cancel a scheduled deletion (the key stays disabled)'],
  ] as const) {
    transition(path, summary).action(async (name: string, options: RemoteOptions) => {
      const { body } = await api(io, options).call<KeyView>('POST', `/v1/keys/${seg(name)}/${path}`, { body: {} });
      emit(io, options.json, body, (key) => printTable(io, KEY_COLUMNS, [summaryOf(key)]));
    });
  }

  transition('disable', 'disable the key: it refuses every cryptographic operation', true).action(async (name: string, options: RemoteOptions) => {
    const client = api(io, options);
    await confirm(io, options.yes, `Disable key ${name}: every encrypt and decrypt with it will fail`, name);
    const { body } = await client.call<KeyView>('POST', `/v1/keys/${seg(name)}/disable`, { body: {} });
    emit(io, options.json, body, (key) => printTable(io, KEY_COLUMNS, [summaryOf(key)]));
  });

  transition('schedule-deletion', `destroy the key after ${MIN_PENDING_WINDOW_DAYS} to ${MAX_PENDING_WINDOW_DAYS} days`, true)
    .addOption(new Option('--days <n>', 'the waiting period (default 30)').argParser(integer('--days', MIN_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS)))
    .action(async (name: string, options: RemoteOptions & { days?: number }) => {
      const client = api(io, options);
      await confirm(io, options.yes, `Schedule key ${name} for destruction in ${options.days ?? 30} days: its data will be unrecoverable`, name);
      const { body } = await client.call<KeyView>('POST', `/v1/keys/${seg(name)}/schedule-deletion`, { body: { pendingWindowDays: options.days } });
      emit(io, options.json, body, (key) => printTable(io, KEY_COLUMNS, [summaryOf(key)]));
    });

  const versions = keys.command('versions').description("a key's versions");
  remote(versions.command('list').description("a key's versions and their states").argument('<name>', 'the key name'))
    .action(async (name: string, options: RemoteOptions) => {
      const { body } = await api(io, options).call<KeyView>('GET', `/v1/keys/${seg(name)}`);
      emit(io, options.json, body.versions, (rows) => printTable(io, VERSION_COLUMNS, rows));
    });
  for (const path of ['disable', 'enable'] as const) {
    const command = remote(
      versions
        .command(path)
        .description(path === 'disable' ? 'revoke one version: it refuses to decrypt until enabled again' : 'enable a disabled version')
        .argument('<name>', 'the key name')
        .argument('<version>', 'the version number', integer('VERSION', 1, 0xffffffff)),
    );
    if (path === 'disable') destructive(command);
    command.action(async (name: string, version: number, options: RemoteOptions) => {
      const client = api(io, options);
      if (path === 'disable') await confirm(io, options.yes, `Disable version ${version} of key ${name}: its ciphertexts will not decrypt`, name);
      const { body } = await client.call<KeyView>('POST', `/v1/keys/${seg(name)}/versions/${version}/${path}`, { body: {} });
      emit(io, options.json, body, (key) => printTable(io, VERSION_COLUMNS, key.versions));
    });
  }
}
