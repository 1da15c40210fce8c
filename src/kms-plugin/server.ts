import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  loadPackageDefinition,
  Server,
  ServerCredentials,
  status as Code,
  type GrpcObject,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { KeyholdKms, KmsError } from './keyhold-kms.js';

/** The KMS v2 .proto; `npm run build` copies it beside the built code. */
export const KMS_PROTO_PATH = fileURLToPath(new URL('./api.proto', import.meta.url));

/** The `v2.KeyManagementService` definition, as both this server and a test client (shaped like the apiserver) load it. */
export function loadKmsService(): ServiceClientConstructor {
  // keepCase: the fields are named as on the wire (key_id), as the apiserver's generated Go code has them.
  const definition = loadSync(KMS_PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  return (loadPackageDefinition(definition).v2 as GrpcObject).KeyManagementService as ServiceClientConstructor;
}

export interface KmsPluginServer {
  readonly socket: string;
  close(): Promise<void>;
}

/** Room left under the apiserver's deadline for the answer to travel back. */
const DEADLINE_MARGIN_MS = 100;

/**
 * Serves KMS v2 on a unix socket. A socket file left by an earlier run is removed first (anything else at the path
 * is refused); the socket is made 0600, so only the apiserver's user (root on a control-plane node) may call it.
 */
export async function serveKmsPlugin(socket: string, kms: KeyholdKms, timeoutMs: number): Promise<KmsPluginServer> {
  await removeStaleSocket(socket);
  const server = new Server();
  const budget = (call: ServerUnaryCall<unknown, unknown>): number => {
    const deadline = call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    if (!Number.isFinite(at)) return timeoutMs;
    return Math.max(1, Math.min(timeoutMs, at - Date.now() - DEADLINE_MARGIN_MS));
  };
  server.addService(loadKmsService().service, {
    Status: (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      void kms.status(budget(call)).then((answer) => callback(null, { version: answer.version, healthz: answer.healthz, key_id: answer.keyId }));
    },
    Encrypt: (call: ServerUnaryCall<{ plaintext: Buffer; uid: string }, unknown>, callback: sendUnaryData<unknown>) => {
      answer(callback, kms.encrypt(call.request.plaintext, call.request.uid, budget(call)).then(({ ciphertext, keyId }) => ({ ciphertext, key_id: keyId, annotations: {} })));
    },
    Decrypt: (call: ServerUnaryCall<{ ciphertext: Buffer; uid: string }, unknown>, callback: sendUnaryData<unknown>) => {
      answer(callback, kms.decrypt(call.request.ciphertext, call.request.uid, budget(call)).then((plaintext) => ({ plaintext })));
    },
  });
  // Bound under umask 077, so the socket is never accessible to others, not even before the chmod; then restored.
  const umask = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${socket}`, ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve()));
    });
  } finally {
    process.umask(umask);
  }
  chmodSync(socket, 0o600);
  // The path is unlinked at close only while it is still this server's socket, never a successor's.
  const bound = lstatSync(socket).ino;
  return {
    socket,
    close: () =>
      new Promise<void>((resolve) => {
        // In-flight calls finish; a stuck one is cut after the call budget.
        const force = setTimeout(() => server.forceShutdown(), timeoutMs + 1000);
        server.tryShutdown(() => {
          clearTimeout(force);
          if (inodeOf(socket) === bound) rmSync(socket, { force: true });
          resolve();
        });
      }),
  };
}

function answer(callback: sendUnaryData<unknown>, result: Promise<unknown>): void {
  result.then(
    (value) => callback(null, value),
    (error: unknown) =>
      callback(error instanceof KmsError ? { code: error.code, details: error.message } : { code: Code.INTERNAL, details: 'internal error' }),
  );
}

/**
 * Removes a socket file left behind by a plugin that is gone. A socket something still accepts on belongs to a
 * running plugin: taking it over would cut the apiserver off from it, so that is refused, like a file that is not a
 * socket.
 */
async function removeStaleSocket(socket: string): Promise<void> {
  let stats;
  try {
    stats = lstatSync(socket);
  } catch {
    return;
  }
  if (!stats.isSocket()) throw new Error(`${socket} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(socket);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${socket} is in use: another process accepts on it; refusing to take it over`);
  rmSync(socket);
}

function inodeOf(path: string): number | undefined {
  try {
    return lstatSync(path).ino;
  } catch {
    return undefined;
  }
}
