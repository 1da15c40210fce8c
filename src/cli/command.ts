import { Command, InvalidArgumentError, Option } from 'commander';
import { Api, resolveTarget, type RemoteFlags } from './remote.js';
import type { Io } from './io.js';

/** The options every remote command has; `--yes` only on destructive ones. */
export interface RemoteOptions extends RemoteFlags {
  readonly json?: boolean;
  readonly yes?: boolean;
}

/** Adds the connection flags and `--json` to a command that talks to a running service. */
export function remote(command: Command): Command {
  return command
    .option('--addr <url>', 'the service, such as http://127.0.0.1:7780 (default: $KEYHOLD_ADDR)')
    .option('--token-file <path>', 'a file holding the API token (default: $KEYHOLD_TOKEN)')
    .option('--json', "print the API's own JSON instead of a table");
}

/** Adds `--yes` to a destructive command. */
export function destructive(command: Command): Command {
  return command.option('-y, --yes', 'do not ask for confirmation (required when not at a terminal)');
}

export function api(io: Io, options: RemoteFlags): Api {
  return new Api(resolveTarget(options, io.env));
}

/** Refuses the command line after parsing, as commander refuses an unknown flag: exit 2, with the command's help. */
export function failUsage(command: Command, message: string): never {
  command.error(message, { exitCode: 2, code: 'keyhold.usage' });
}

/** A whole number within bounds, for a flag's value. */
export function integer(name: string, min = 1, max = Number.MAX_SAFE_INTEGER): (raw: string) => number {
  return (raw) => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < min || value > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return value;
  };
}

/** A repeatable `k=v` flag, collected into a record; a key given twice is refused. */
export function pair(raw: string, previous: Record<string, string> | undefined): Record<string, string> {
  const at = raw.indexOf('=');
  if (at < 1) throw new InvalidArgumentError('expected KEY=VALUE');
  const key = raw.slice(0, at);
  const pairs = { ...previous };
  if (Object.hasOwn(pairs, key)) throw new InvalidArgumentError(`${key} is given twice`);
  pairs[key] = raw.slice(at + 1);
  return pairs;
}

/** An RFC 3339 time, or a duration before now such as 15m, 24h, 7d. */
export function time(raw: string): string {
  const relative = /^(\d+)([smhd])$/.exec(raw);
  if (relative !== null) {
    const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[relative[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(Date.now() - Number(relative[1]) * unit * 1000).toISOString();
  }
  if (!/^\d{4}-\d{2}-\d{2}T/.test(raw) || Number.isNaN(new Date(raw).getTime())) {
    throw new InvalidArgumentError('expected an RFC 3339 time (2025-01-31T12:00:00Z) or a duration ago (15m, 24h, 7d)');
  }
  return raw;
}

/** `--limit` and `--cursor` of a listing: one page, as the API gives it. */
export function paged(command: Command): Command {
  return command
    .addOption(new Option('--limit <n>', 'at most this many per page').argParser(integer('--limit', 1, 500)))
    .option('--cursor <cursor>', 'the page after this cursor (printed under a table that has more)');
}

/** Under a human table: where the next page starts, on stderr so that the table stays clean to pipe. */
export function morePages(io: Io, nextCursor: string | undefined): void {
  if (nextCursor !== undefined) io.stderr.write(`(more: add --cursor ${nextCursor})\n`);
}
