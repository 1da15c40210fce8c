import { Option, type Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import { api, failUsage, integer, morePages, paged, remote, time, type RemoteOptions } from './command.js';
import { CliError, EXIT } from './exit-codes.js';
import type { Io } from './io.js';
import { cellText, emit, printJson, printTable, type Column } from './output.js';
import { givenAddress, type Api } from './remote.js';

interface AuditRecordView {
  readonly replicaId: string;
  readonly sequence: number;
  readonly time: string;
  readonly requestId: string;
  readonly principalId: string | null;
  readonly method: string;
  readonly route: string | null;
  readonly action: string | null;
  readonly keyName: string | null;
  readonly keyVersion: number | null;
  readonly decision: string | null;
  readonly outcome: string;
  readonly status: number;
}
interface AuditPage {
  readonly records: AuditRecordView[];
  readonly nextCursor?: string;
}

const RECORD_COLUMNS: ReadonlyArray<Column<AuditRecordView>> = [
  ['time', (r) => r.time],
  ['principal', (r) => r.principalId],
  ['action', (r) => r.action ?? `${r.method} ${r.route ?? ''}`],
  ['key', (r) => r.keyName],
  ['version', (r) => r.keyVersion],
  ['decision', (r) => r.decision],
  ['outcome', (r) => r.outcome],
  ['status', (r) => r.status],
  ['request', (r) => r.requestId],
];

interface FilterOptions {
  readonly since?: string;
  readonly until?: string;
  readonly principal?: string;
  readonly key?: string;
  readonly action?: string;
  readonly outcome?: string;
}

function filtered(command: Command, withUntil = true): Command {
  command
    .addOption(new Option('--since <time>', 'from this time: RFC 3339, or a duration ago such as 15m, 24h, 7d').argParser(time))
    .option('--principal <id>', 'only this principal')
    .option('--key <name>', 'only this key')
    .option('--action <action>', 'only this action, such as decrypt or keys:update')
    .option('--outcome <outcome>', 'only this outcome: ok, or an error code such as KH_ERR_FORBIDDEN');
  if (withUntil) command.addOption(new Option('--until <time>', 'up to this time: RFC 3339, or a duration ago').argParser(time));
  return command;
}

const filterQuery = (options: FilterOptions) => ({
  since: options.since,
  until: options.until,
  principal: options.principal,
  key: options.key,
  action: options.action,
  outcome: options.outcome,
});

/** `keyhold audit …`: the audit log, remote (query, tail, verify) and local (verify against the store). */
export function registerAudit(program: Command, io: Io): void {
  const audit = program.command('audit').description('query, follow and verify the audit log');

  paged(filtered(remote(audit.command('query').description('audit records, newest first'))))
    .action(async (options: RemoteOptions & FilterOptions & { limit?: number; cursor?: string }) => {
      const { body } = await api(io, options).call<AuditPage>('GET', '/v1/audit', {
        query: { ...filterQuery(options), limit: options.limit, cursor: options.cursor },
      });
      emit(io, options.json, body, (page) => {
        printTable(io, RECORD_COLUMNS, page.records);
        morePages(io, page.nextCursor);
      });
    });

  filtered(remote(audit.command('tail').description('print the newest records, then follow new ones as they are written')), false)
    .addOption(new Option('-n, --lines <n>', 'records to print first').argParser(integer('--lines', 0, 500)).default(10))
    .addOption(new Option('--interval <ms>', 'how often to ask for new records').argParser(integer('--interval', 100, 600_000)).default(1000))
    .action(async (options: RemoteOptions & FilterOptions & { lines: number; interval: number }) => {
      await tail(io, api(io, options), options);
    });

  const verify = remote(audit.command('verify'))
    .description(
      'verify every audit chain. With --addr or KEYHOLD_ADDR (and no --local), asks the service (GET /v1/audit/verify); ' +
        'otherwise, or with --local, --witness, --file or --accept-unsealed, walks the store configured by the server\'s ' +
        'KEYHOLD_* variables directly. Exits 0 when every chain is intact and none ended without a seal (unless accepted), 1 otherwise.',
    )
    .option('--local', 'walk the configured store directly, even when KEYHOLD_ADDR is set')
    .option('--witness <file>', 'local: check the store against the latest head statement per chain in this KEYHOLD_AUDIT_FILE')
    .option('--file <file>', 'local: verify such a JSON-lines file on its own (the audit key still comes from the store)')
    .option('--accept-unsealed <replica>', 'local: a chain that may end without a seal (repeatable), or all', (value: string, previous: string[] = []) => [...previous, value])
    .action(async (options: RemoteOptions & { local?: boolean; witness?: string; file?: string; acceptUnsealed?: string[] }) => {
      const localFlags = options.local === true || options.witness !== undefined || options.file !== undefined || options.acceptUnsealed !== undefined;
      if (localFlags && options.addr !== undefined) failUsage(verify, '--addr asks the service; --local, --witness, --file and --accept-unsealed walk the store: give one or the other');
      if (!localFlags && givenAddress(options, io.env) !== undefined) {
        const { body } = await api(io, options).call<{ ok: boolean; chains: unknown[] }>('GET', '/v1/audit/verify');
        printJson(io, body);
        if (!body.ok) throw new CliError('KH_CLI_AUDIT_BROKEN', 'an audit chain is broken or ended without a seal', EXIT.failure);
        return;
      }
      if (options.witness === '' || options.file === '') failUsage(verify, '--witness and --file need a path');
      if (options.witness !== undefined && options.file !== undefined) {
        failUsage(verify, '--witness checks the store against a file, --file checks a file alone: give one of them');
      }
      const accepted = options.acceptUnsealed ?? [];
      if (accepted.some((replicaId) => replicaId === '')) failUsage(verify, '--accept-unsealed needs a replica id, or all');
      const { verifyAuditFromEnvironment } = await import('./audit-verify.js');
      const ok = await verifyAuditFromEnvironment({
        witnessFile: options.witness,
        file: options.file,
        acceptUnsealed: accepted.includes('all') ? 'all' : new Set(accepted),
      });
      if (!ok) throw new CliError('KH_CLI_AUDIT_BROKEN', 'an audit chain is broken or ended without a seal', EXIT.failure);
    });
}

const recordId = (record: AuditRecordView): string => `${record.replicaId}#${record.sequence}`;
const PAGE = 500;

/**
 * How far before the newest record printed each poll looks again. A record's time is set when its request is
 * answered, but it is visible only once its group commit lands (up to KEYHOLD_AUDIT_TIMEOUT_MS, 2 s by default), and
 * replicas' clocks differ: a record can appear after a newer one was printed, with an older time. Each poll reads
 * the whole window, so it is kept to the commit bound and a few seconds of skew.
 */
const LATE_MS = 5_000;

/**
 * Prints the newest `lines` records, then polls `GET /v1/audit` and prints what is new, oldest first. Each poll
 * covers the {@link LATE_MS} before the newest time printed and everything after it, and skips the records already
 * printed, which it remembers for as long as they fall in that window. Its own polls are audited too: their records
 * (found by the request ids the service echoes) are not printed, or tail would only ever show itself.
 */
async function tail(io: Io, client: Api, options: RemoteOptions & FilterOptions & { lines: number; interval: number }): Promise<void> {
  /** Record id → its time (ms): the records printed, or passed over at the start, within the window. */
  const seen = new Map<string, number>();
  /** Request ids of the latest polls, oldest first; a poll's own record turns up within the window or never (filters). */
  const own = new Set<string>();
  const ownLimit = Math.ceil(LATE_MS / options.interval) + 16;
  let newest: number | undefined;
  const windowStart = (): string | undefined => (newest === undefined ? options.since : new Date(newest - LATE_MS).toISOString());
  const see = (record: AuditRecordView): void => {
    const time = Date.parse(record.time);
    seen.set(recordId(record), time);
    if (newest === undefined || time > newest) newest = time;
  };
  const print = (records: AuditRecordView[]): void => {
    for (const record of records) {
      see(record);
      if (own.delete(record.requestId)) continue;
      if (options.json === true) io.stdout.write(`${JSON.stringify(record)}\n`);
      else io.stdout.write(`${tailLine(record)}\n`);
    }
  };
  const forgetOld = (): void => {
    if (newest === undefined) return;
    for (const [id, time] of seen) if (time < newest - LATE_MS) seen.delete(id);
    for (const id of own) {
      if (own.size <= ownLimit) break;
      own.delete(id);
    }
  };
  const fetchPage = async (query: Record<string, string | number | undefined>): Promise<AuditPage> => {
    const answer = await client.call<AuditPage>('GET', '/v1/audit', { query: { ...filterQuery({ ...options, since: windowStart() }), ...query } });
    const requestId = answer.headers.get('x-request-id');
    if (requestId !== null) own.add(requestId);
    return answer.body;
  };

  /** Pages from the newest back through the window, handing on the records not seen yet. */
  const pages = async (query: Record<string, string>, take: (records: AuditRecordView[]) => void): Promise<void> => {
    let cursor: string | undefined;
    do {
      const page = await fetchPage({ ...query, limit: PAGE, cursor });
      take(page.records.filter((record) => !seen.has(recordId(record))));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
  };

  // The newest `lines` records (at least one, to know where "now" is in the log's own clock).
  const first = await fetchPage({ limit: Math.max(options.lines, 1) });
  const shown = first.records.slice(0, options.lines);
  print([...shown].reverse());
  for (const record of first.records) see(record);
  if (newest !== undefined) {
    // What is already in the window was not asked for: the polls must not print it as new. `until` is exclusive.
    await pages({ until: new Date(newest + 1).toISOString() }, (records) => records.forEach(see));
  }
  for (;;) {
    await sleep(options.interval);
    const fresh: AuditRecordView[] = [];
    await pages({}, (records) => fresh.push(...records));
    fresh.reverse();
    print(fresh);
    forgetOld();
  }
}

/** One record per line, in fixed-width columns, since a followed stream cannot be laid out as a table. */
function tailLine(record: AuditRecordView): string {
  const cell = (value: unknown, width: number) => cellText(value).padEnd(width);
  const key = record.keyName === null ? null : record.keyVersion === null ? record.keyName : `${record.keyName} v${record.keyVersion}`;
  return [
    record.time,
    cell(record.principalId, 28),
    cell(record.action ?? `${record.method} ${record.route ?? ''}`, 16),
    cell(key, 20),
    cell(record.decision, 5),
    cell(record.outcome, 24),
    record.status,
  ].join(' ');
}
