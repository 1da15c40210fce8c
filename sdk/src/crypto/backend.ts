import type { CryptoBackend } from './primitives.js';

let chosen: Promise<CryptoBackend> | undefined;
let resolved: CryptoBackend | undefined;

interface WebCryptoLike {
  readonly subtle: import('node:crypto').webcrypto.SubtleCrypto;
  getRandomValues<T extends ArrayBufferView>(array: T): T;
}

async function choose(): Promise<CryptoBackend> {
  const nodeVersion = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
  if (nodeVersion !== undefined) {
    const { nodeBackend } = await import('./node-backend.js');
    return nodeBackend;
  }
  const native = (globalThis as { crypto?: WebCryptoLike }).crypto;
  if (native?.subtle === undefined) throw new Error('Keyhold SDK: this runtime has neither node:crypto nor WebCrypto');
  const { webCryptoBackend } = await import('./webcrypto-backend.js');
  return webCryptoBackend(native);
}

/** The fastest backend this runtime has, chosen once. */
export function defaultBackend(): Promise<CryptoBackend> {
  chosen ??= choose().then((backend) => (resolved = backend));
  return chosen;
}

/** The chosen backend once `defaultBackend` has resolved, so hot paths need not await it again. */
export function chosenBackend(): CryptoBackend | undefined {
  return resolved;
}
