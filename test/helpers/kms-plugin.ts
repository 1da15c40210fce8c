import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'vitest';
import { loadKmsService } from '../../src/kms-plugin/server.js';
import { spawnCli, type CliRun } from './cli.js';

/** What the apiserver keeps of an Encrypt answer in its EncryptedObject (k8s.io/apiserver, envelope/kmsv2). */
export interface EncryptedObject {
  readonly encryptedDEKSource: Buffer;
  readonly keyID: string;
  readonly annotations: Record<string, Buffer>;
}

export interface StatusResponse {
  version: string;
  healthz: string;
  key_id: string;
}

type Rpc = (request: object, options: { deadline: number }, callback: (error: ServiceError | null, answer: unknown) => void) => void;

/** A client shaped like the apiserver's: the plugin's own .proto, over the unix socket, with a deadline on every call. */
export function apiserverClient(socket: string) {
  const KeyManagementService = loadKmsService();
  const client = new KeyManagementService(`unix:${socket}`, credentials.createInsecure()) as Client & Record<string, Rpc>;
  const call = <T>(method: string, request: object): Promise<T> =>
    new Promise((resolve, reject) => {
      client[method]!.call(client, request, { deadline: Date.now() + 5000 }, (error, answer) => (error ? reject(error) : resolve(answer as T)));
    });
  return {
    status: () => call<StatusResponse>('Status', {}),
    encrypt: async (plaintext: Buffer, uid = randomUUID()): Promise<EncryptedObject> => {
      const answer = await call<{ ciphertext: Buffer; key_id: string; annotations: Record<string, Buffer> }>('Encrypt', { plaintext, uid });
      return { encryptedDEKSource: answer.ciphertext, keyID: answer.key_id, annotations: answer.annotations };
    },
    decrypt: async (object: EncryptedObject, uid = randomUUID()): Promise<Buffer> => {
      const answer = await call<{ plaintext: Buffer }>('Decrypt', { ciphertext: object.encryptedDEKSource, key_id: object.keyID, annotations: object.annotations, uid });
      return answer.plaintext;
    },
    close: () => client.close(),
  };
}

export interface RunningPlugin {
  readonly child: ReturnType<typeof spawnCli>['child'];
  readonly done: Promise<CliRun>;
  /** What the plugin wrote to stderr so far. */
  stderr(): string;
}

/** Spawns `keyhold kms-plugin ARGS` and resolves once it says it serves; the caller stops it with {@link stopPlugin}. */
export async function startPlugin(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<RunningPlugin> {
  const plugin = spawnCli(['kms-plugin', ...args], { env });
  let stderr = '';
  plugin.child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      if (stderr.includes('serving KMS v2')) resolve();
      else if (Date.now() - started > 15_000) reject(new Error(`the plugin did not start: ${stderr}`));
      else return;
      clearInterval(poll);
    }, 20);
  });
  return { ...plugin, stderr: () => stderr };
}

/** SIGTERM: the plugin exits 0 and takes its socket with it. */
export async function stopPlugin(plugin: Pick<RunningPlugin, 'child' | 'done'>, socket: string): Promise<void> {
  plugin.child.kill('SIGTERM');
  const done = await plugin.done;
  expect(done.code, done.stderr).toBe(0);
  expect(existsSync(socket)).toBe(false);
}
