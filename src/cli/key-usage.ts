import { Option, type Command } from 'commander';
import { api, integer, remote, time, type RemoteOptions } from './command.js';
import type { Io } from './io.js';
import { emit, printTable } from './output.js';
import { seg } from './remote.js';

/** `GET /v1/keys/{name}/usage`: the fleet inventory of one key over a window. */
interface KeyUsage {
  readonly keyName: string;
  readonly keyId: string;
  readonly since: string | null;
  readonly until: string | null;
  readonly usage: ReadonlyArray<{ principal: string; keyVersion: number | null; action: string; count: number; firstSeen: string; lastSeen: string }>;
}

/** `keyhold usage KEY`: which principals used which version of a key, for what, how often and when last. */
export function registerUsage(program: Command, io: Io): void {
  remote(program.command('usage').description('which workloads used which version of a key, for what, and when last').argument('<key>', 'the key name'))
    .addOption(new Option('--version <n>', 'only this key version').argParser(integer('--version', 1, 0xffffffff)))
    .addOption(new Option('--since <time>', 'from this time: RFC 3339, or a duration ago such as 7d').argParser(time))
    .addOption(new Option('--until <time>', 'up to this time: RFC 3339, or a duration ago').argParser(time))
    .action(async (key: string, options: RemoteOptions & { version?: number; since?: string; until?: string }) => {
      const { body } = await api(io, options).call<KeyUsage>('GET', `/v1/keys/${seg(key)}/usage`, {
        query: { version: options.version, since: options.since, until: options.until },
      });
      emit(io, options.json, body, (inventory) => {
        io.stdout.write(`key ${inventory.keyName} (${inventory.keyId}), ${inventory.since ?? 'the beginning'} to ${inventory.until ?? 'now'}\n\n`);
        const rows = [...inventory.usage].sort((a, b) => b.lastSeen.localeCompare(a.lastSeen));
        printTable(io, [
          ['principal', (u) => u.principal],
          ['version', (u) => u.keyVersion],
          ['action', (u) => u.action],
          ['count', (u) => u.count],
          ['first seen', (u) => u.firstSeen],
          ['last seen', (u) => u.lastSeen],
        ], rows);
      });
    });
}
