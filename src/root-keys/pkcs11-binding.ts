import { createRequire } from 'node:module';
import { StartupError } from '../errors.js';

/**
 * The part of the `pkcs11js` native addon (PKCS#11 v2.40 for Node) that the PKCS#11 root-key provider uses, typed
 * here rather than imported: `pkcs11js` is an optional dependency (it compiles with node-gyp), so a machine that could
 * not build it still compiles and runs Keyhold on a file or environment root key. Handles are the addon's opaque
 * buffers.
 */
export type Handle = Buffer;

export interface Attribute {
  readonly type: number;
  readonly value?: number | boolean | string | Buffer;
}

export interface GcmMechanism {
  readonly mechanism: number;
  readonly parameter: { readonly type: number; readonly iv: Buffer; readonly ivBits: number; readonly aad: Buffer; readonly tagBits: number };
}

export interface Pkcs11Library {
  load(path: string): void;
  C_Initialize(options: { flags: number }): void;
  C_Finalize(): void;
  /** Unloads the library (dlclose). */
  close(): void;
  C_GetSlotList(tokenPresent: boolean): Handle[];
  C_GetTokenInfo(slot: Handle): { label: string };
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_Login(session: Handle, userType: number, pin: string): void;
  C_FindObjectsInit(session: Handle, template: Attribute[]): void;
  C_FindObjects(session: Handle, maxObjectCount: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_GetAttributeValue(session: Handle, object: Handle, template: Attribute[]): Array<{ type: number; value?: Buffer }>;
  C_GenerateKey(session: Handle, mechanism: { mechanism: number }, template: Attribute[]): Handle;
  C_DestroyObject(session: Handle, object: Handle): void;
  C_EncryptInit(session: Handle, mechanism: GcmMechanism, key: Handle): void;
  C_EncryptAsync(session: Handle, data: Buffer, out: Buffer): Promise<Buffer>;
  C_DecryptInit(session: Handle, mechanism: GcmMechanism, key: Handle): void;
  C_DecryptAsync(session: Handle, data: Buffer, out: Buffer): Promise<Buffer>;
}

/** The constants the provider uses, by their PKCS#11 names; `CK_PARAMS_AES_GCM` is the addon's own tag for GCM parameters. */
export const PKCS11_CONSTANT_NAMES = [
  'CKF_OS_LOCKING_OK',
  'CKF_SERIAL_SESSION',
  'CKF_RW_SESSION',
  'CKU_USER',
  'CKO_SECRET_KEY',
  'CKK_AES',
  'CKM_AES_KEY_GEN',
  'CKM_AES_GCM',
  'CK_PARAMS_AES_GCM',
  'CKA_CLASS',
  'CKA_KEY_TYPE',
  'CKA_LABEL',
  'CKA_TOKEN',
  'CKA_PRIVATE',
  'CKA_SENSITIVE',
  'CKA_EXTRACTABLE',
  'CKA_VALUE_LEN',
  'CKA_ENCRYPT',
  'CKA_DECRYPT',
  'CKA_WRAP',
  'CKA_UNWRAP',
  'CKA_SIGN',
  'CKA_VERIFY',
  'CKA_DERIVE',
  'CKA_MODIFIABLE',
  'CKR_GENERAL_ERROR',
  'CKR_ENCRYPTED_DATA_INVALID',
  'CKR_ENCRYPTED_DATA_LEN_RANGE',
  'CKR_PIN_INCORRECT',
  'CKR_PIN_LOCKED',
  'CKR_PIN_EXPIRED',
  'CKR_USER_ALREADY_LOGGED_IN',
] as const;

export type Pkcs11Constant = (typeof PKCS11_CONSTANT_NAMES)[number];

/** What the provider needs of the addon: a way to make a library handle, and the constants. */
export interface Pkcs11Binding {
  createLibrary(): Pkcs11Library;
  readonly constants: Readonly<Record<Pkcs11Constant, number>>;
}

/** A `CKR_…` failure from the library: the addon's `Pkcs11Error`, whose message is the return value's name. */
export function pkcs11ReturnCode(error: unknown): number | undefined {
  if (!(error instanceof Error) || !/^CKR_/.test(error.message)) return undefined;
  const { code } = error as Error & { code?: unknown };
  return typeof code === 'number' ? code : undefined;
}

/** The name of a library failure for a message: the `CKR_…` name, or the first line of anything else. */
export function pkcs11FailureName(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.message.split('\n')[0] ?? 'error';
}

interface Pkcs11JsModule {
  readonly PKCS11: new () => Pkcs11Library;
}

/**
 * Loads `pkcs11js`, only when a PKCS#11 root key is configured. It is an optional dependency: `npm ci` skips it
 * where it cannot be compiled, and then only this provider is unavailable, with this message.
 */
export function loadPkcs11js(): Pkcs11Binding {
  // A require made here, not a static import: the addon (and its type declarations) may be absent.
  const require = createRequire(import.meta.url);
  let addon: Pkcs11JsModule & Record<string, unknown>;
  try {
    addon = require('pkcs11js') as Pkcs11JsModule & Record<string, unknown>;
  } catch (error) {
    throw new StartupError(
      'KEYHOLD_ROOT_KEY_PROVIDER=pkcs11 needs the optional package pkcs11js, which is not installed or did not build ' +
        `(${pkcs11FailureName(error)}). It compiles with node-gyp: install a C++ compiler and Node's headers, then run ` +
        '`npm rebuild pkcs11js` (or `npm install pkcs11js`).',
    );
  }
  const constants = {} as Record<Pkcs11Constant, number>;
  for (const name of PKCS11_CONSTANT_NAMES) {
    const value = addon[name];
    if (typeof value !== 'number') throw new StartupError(`The installed pkcs11js does not define ${name}; install pkcs11js 2.1 or later`);
    constants[name] = value;
  }
  return { createLibrary: () => new addon.PKCS11(), constants: Object.freeze(constants) };
}
