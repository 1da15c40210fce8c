import { loadConfig } from '../config.js';
import { createPkcs11RootKey } from '../root-keys/root-key-loader.js';
import { usageError } from './exit-codes.js';

/**
 * `keyhold root init-hsm`: generates the root key inside the HSM configured by `KEYHOLD_PKCS11_*`, labelled `label`
 * (default `KEYHOLD_PKCS11_KEY_LABEL`), and prints its public root key id, label and token as JSON. It touches no
 * store: the first server (or `keyhold root rotate --new-key-label`) records the key. Never prints the PIN.
 */
export async function initHsmFromEnvironment(label: string | undefined): Promise<void> {
  const config = loadConfig(process.env);
  const configured = config.rootKey.kind === 'pkcs11' ? config.rootKey.keyLabel : undefined;
  const keyLabel = label ?? configured;
  if (keyLabel === undefined || keyLabel === '') throw usageError('root init-hsm needs --label LABEL or KEYHOLD_PKCS11_KEY_LABEL');
  const key = await createPkcs11RootKey(config.pkcs11, { label: keyLabel, what: label === undefined ? 'KEYHOLD_PKCS11_KEY_LABEL' : '--label' });
  try {
    process.stdout.write(`${JSON.stringify({ rootKeyId: key.id, keyLabel, tokenLabel: config.pkcs11?.tokenLabel })}\n`);
  } finally {
    await key.close();
  }
}
