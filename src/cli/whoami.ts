import type { Command } from 'commander';
import { api, remote, type RemoteOptions } from './command.js';
import type { Io } from './io.js';
import { emit, printFields } from './output.js';

/** `keyhold whoami`: who the service takes the credential for. */
export function registerWhoami(program: Command, io: Io): void {
  remote(program.command('whoami').description('the principal the service sees for this credential')).action(async (options: RemoteOptions) => {
    const { body } = await api(io, options).call<{ id: string; type: string; admin: boolean; attributes: Record<string, string> }>('GET', '/v1/whoami');
    emit(io, options.json, body, (me) => printFields(io, [['id', me.id], ['type', me.type], ['admin', me.admin ? 'yes' : 'no'], ['attributes', me.attributes]]));
  });
}
