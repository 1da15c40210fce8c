import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretBytes } from '../../src/crypto/secret-bytes.js';
import type { Pkcs11Settings } from '../../src/root-keys/pkcs11-token.js';

/** Debian's softhsm2 package puts its module here; `.ci/run` installs it. */
export const SOFTHSM_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';

function pkcs11jsInstalled(): boolean {
  try {
    createRequire(import.meta.url)('pkcs11js');
    return true;
  } catch {
    return false;
  }
}

/** Why the SoftHSM suites cannot run here, or undefined when they can. */
export const SOFTHSM_MISSING: string | undefined = !existsSync(SOFTHSM_LIBRARY)
  ? `no SoftHSM at ${SOFTHSM_LIBRARY} (apt-get install softhsm2; .ci/run does)`
  : !pkcs11jsInstalled()
    ? 'the optional package pkcs11js is not installed (it needs a C++ compiler to build)'
    : undefined;

export interface SoftHsmToken {
  /** Its softhsm2.conf, for a child process's `SOFTHSM2_CONF`. */
  readonly conf: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly settings: Pkcs11Settings;
  /** The server's variables for a root key labelled `keyLabel` in this token (and none of the local kind). */
  env(keyLabel: string): Record<string, string>;
  /** The token's variables alone: its library, label and PIN. */
  readonly tokenEnv: Record<string, string>;
}

let token: SoftHsmToken | undefined;

/**
 * A SoftHSM token of this test process's own: a temporary token directory and softhsm2.conf, initialised with
 * `softhsm2-util --init-token --free`, removed at exit. PKCS#11 state is per process and SoftHSM reads
 * `SOFTHSM2_CONF` when the library is initialised, so the process sets it once and every suite in it shares the
 * token; each test uses key labels of its own.
 */
export function softHsmToken(): SoftHsmToken {
  if (token !== undefined) return token;
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-softhsm-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const tokenLabel = `keyhold-test-${randomBytes(3).toString('hex')}`;
  const pin = `pin-${randomBytes(6).toString('hex')}`;
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', `so-${pin}`], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
    stdio: 'ignore',
  });
  process.env.SOFTHSM2_CONF = conf;
  const tokenEnv = { KEYHOLD_PKCS11_LIBRARY: SOFTHSM_LIBRARY, KEYHOLD_PKCS11_TOKEN_LABEL: tokenLabel, KEYHOLD_PKCS11_PIN: pin };
  token = {
    conf,
    tokenLabel,
    pin,
    settings: { library: SOFTHSM_LIBRARY, tokenLabel, pin: { kind: 'inline', pin: SecretBytes.adopt(Buffer.from(pin, 'utf8')) } },
    tokenEnv,
    env: (keyLabel) => ({ ...tokenEnv, KEYHOLD_ROOT_KEY: '', KEYHOLD_ROOT_KEY_FILE: '', KEYHOLD_ROOT_KEY_PROVIDER: 'pkcs11', KEYHOLD_PKCS11_KEY_LABEL: keyLabel }),
  };
  return token;
}

/** A key label no other test uses. */
export function freshKeyLabel(prefix = 'root'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}
