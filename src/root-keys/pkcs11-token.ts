import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GCM_TAG_BYTES } from '../crypto/aes-gcm.js';
import { SecretBytes } from '../crypto/secret-bytes.js';
import { DecryptionFailedError, KeyholdError, StartupError, UnavailableError } from '../errors.js';
import {
  loadPkcs11js,
  pkcs11FailureName,
  pkcs11ReturnCode,
  type Attribute,
  type GcmMechanism,
  type Handle,
  type Pkcs11Binding,
  type Pkcs11Constant,
  type Pkcs11Library,
} from './pkcs11-binding.js';
import type { TokenAesKey } from './pkcs11-root-key.js';
import { SessionPool } from './session-pool.js';

/** The user PIN: `KEYHOLD_PKCS11_PIN` (held as secret bytes) or `KEYHOLD_PKCS11_PIN_FILE`, read when the token is opened. */
export type Pkcs11PinSource = { readonly kind: 'inline'; readonly pin: SecretBytes } | { readonly kind: 'file'; readonly path: string };

/** Which token to use, and how to log in: `KEYHOLD_PKCS11_LIBRARY`, `KEYHOLD_PKCS11_TOKEN_LABEL`, the PIN. */
export interface Pkcs11Settings {
  readonly library: string;
  readonly tokenLabel: string;
  readonly pin: Pkcs11PinSource;
}

/**
 * Sessions per token. Each runs one operation at a time on libuv's thread pool, whose default size is 4: more
 * sessions would only queue there. The HSM is on the cold path (a key version is unwrapped once, then cached).
 */
export const PKCS11_POOL_SIZE = 4;

const AES_256_KEY_BYTES = 32;

/** Reads the PIN; a PIN file's trailing line break (as `echo` and most editors leave it) is not part of the PIN. */
function readPin(source: Pkcs11PinSource): SecretBytes {
  if (source.kind === 'inline') return source.pin;
  let text: string;
  try {
    text = readFileSync(source.path, 'utf8');
  } catch (error) {
    throw new StartupError(`KEYHOLD_PKCS11_PIN_FILE ${source.path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const pin = text.replace(/[\r\n]+$/, '');
  if (pin === '') throw new StartupError(`KEYHOLD_PKCS11_PIN_FILE ${source.path} is empty`);
  return SecretBytes.adopt(Buffer.from(pin, 'utf8'));
}

function pinDigest(pin: SecretBytes): Buffer {
  return pin.use((bytes) => createHash('sha256').update(bytes).digest());
}

/** One logged-in token: a session held open for the login (PKCS#11 logs out when the last session closes), and the pool. */
interface TokenConnection {
  readonly label: string;
  readonly slot: Handle;
  readonly loginSession: Handle;
  readonly pinDigest: Buffer;
  readonly pool: SessionPool<Handle>;
  refs: number;
}

/** One loaded and initialised library, and the tokens logged in through it. */
interface LoadedLibrary {
  readonly path: string;
  readonly library: Pkcs11Library;
  readonly tokens: Map<string, TokenConnection>;
}

/** How a key is named in messages: the variable or option that named its label. */
export interface KeyNaming {
  readonly label: string;
  /** `KEYHOLD_PKCS11_KEY_LABEL`, `KEYHOLD_PKCS11_PREVIOUS_KEY_LABEL`, `--new-key-label`… */
  readonly what: string;
}

/**
 * The process's PKCS#11 state. A library is initialised once per process (`C_Initialize`, with `CKF_OS_LOCKING_OK`:
 * sessions run on several threads, and without it concurrent calls crash the process), and a login is per application
 * and token, not per session (PKCS#11 v2.40 §5.5). So every key opened in the process shares one connection per token,
 * counted by reference: the last key closed closes the sessions and finalises the library. Opening and closing run
 * one at a time.
 */
export class Pkcs11Runtime {
  readonly #load: () => Pkcs11Binding;
  readonly #poolSize: number;
  readonly #libraries = new Map<string, LoadedLibrary>();
  #binding: Pkcs11Binding | undefined;
  #serial: Promise<unknown> = Promise.resolve();

  constructor(load: () => Pkcs11Binding = loadPkcs11js, poolSize = PKCS11_POOL_SIZE) {
    this.#load = load;
    this.#poolSize = poolSize;
  }

  /**
   * Opens the AES-256 key labelled `key.label` in the token, checking that it is a token object that cannot leave
   * it. Every failure is a {@link StartupError} that says what to fix, and never contains the PIN.
   */
  openKey(settings: Pkcs11Settings, key: KeyNaming): Promise<TokenAesKey> {
    return this.#exclusive(() => {
      const { constants: ck } = this.#bindingNow();
      const { loaded, token } = this.#connect(settings);
      try {
        const handle = this.#findKey(loaded.library, token, key);
        checkKeyAttributes(loaded.library, ck, token, handle, key);
        return this.#tokenKey(loaded, token, handle, key.label);
      } catch (error) {
        this.#releaseSoon(loaded, token);
        throw error;
      }
    });
  }

  /**
   * `keyhold root init-hsm`: generates an AES-256 key labelled `key.label` inside the token, as a token object that is
   * sensitive, not extractable and usable only to encrypt and decrypt. Refuses a label any object in the token has.
   */
  createKey(settings: Pkcs11Settings, key: KeyNaming): Promise<TokenAesKey> {
    return this.#exclusive(() => {
      const { constants: ck } = this.#bindingNow();
      const { loaded, token } = this.#connect(settings);
      const { library } = loaded;
      try {
        if (findObjects(library, token.loginSession, [{ type: ck.CKA_LABEL, value: key.label }]).length > 0) {
          throw new StartupError(`The token "${token.label}" already holds an object labelled "${key.label}" (${key.what}); choose another label`);
        }
        const session = library.C_OpenSession(token.slot, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION);
        let handle: Handle;
        try {
          handle = library.C_GenerateKey(session, { mechanism: ck.CKM_AES_KEY_GEN }, rootKeyTemplate(ck, key.label));
          // Two runs at once could both have passed the check above: the one that finds a twin removes its own key.
          if (this.#findKeys(library, token, key.label).length > 1) {
            library.C_DestroyObject(session, handle);
            throw new StartupError(`Another key labelled "${key.label}" was created in token "${token.label}" at the same time; nothing was created`);
          }
        } catch (error) {
          if (error instanceof StartupError) throw error;
          throw new StartupError(`The token "${token.label}" could not generate the key: ${pkcs11FailureName(error)}`);
        } finally {
          library.C_CloseSession(session);
        }
        return this.#tokenKey(loaded, token, handle, key.label);
      } catch (error) {
        this.#releaseSoon(loaded, token);
        throw error;
      }
    });
  }

  #exclusive<T>(work: () => T | Promise<T>): Promise<T> {
    const run = this.#serial.then(work);
    this.#serial = run.catch(() => undefined);
    return run;
  }

  #bindingNow(): Pkcs11Binding {
    this.#binding ??= this.#load();
    return this.#binding;
  }

  /** The library (loaded and initialised once) and the token (found by label and logged in once), one reference more. */
  #connect(settings: Pkcs11Settings): { loaded: LoadedLibrary; token: TokenConnection } {
    const loaded = this.#libraries.get(settings.library) ?? this.#loadLibrary(settings.library);
    let pin: SecretBytes | undefined;
    try {
      pin = readPin(settings.pin);
      const digest = pinDigest(pin);
      let token = loaded.tokens.get(settings.tokenLabel);
      if (token === undefined) {
        token = this.#login(loaded, settings, pin, digest);
        loaded.tokens.set(token.label, token);
      } else if (!timingSafeEqual(token.pinDigest, digest)) {
        throw new StartupError(
          `The PIN for token "${settings.tokenLabel}" differs from the one this process logged in with; every root key in one token uses one PIN`,
        );
      }
      token.refs += 1;
      return { loaded, token };
    } catch (error) {
      if (loaded.tokens.size === 0) this.#unload(loaded);
      throw error;
    } finally {
      // A PIN read from its file now is this call's own copy; the configured one stays for the next open.
      if (settings.pin.kind === 'file') pin?.zero();
    }
  }

  #loadLibrary(path: string): LoadedLibrary {
    const { constants: ck, createLibrary } = this.#bindingNow();
    const library = createLibrary();
    try {
      library.load(path);
    } catch (error) {
      throw new StartupError(`KEYHOLD_PKCS11_LIBRARY ${path} cannot be loaded as a PKCS#11 module: ${pkcs11FailureName(error)}`);
    }
    try {
      library.C_Initialize({ flags: ck.CKF_OS_LOCKING_OK });
    } catch (error) {
      library.close();
      throw new StartupError(`The PKCS#11 module ${path} failed to initialise (C_Initialize): ${pkcs11FailureName(error)}`);
    }
    const loaded: LoadedLibrary = { path, library, tokens: new Map() };
    this.#libraries.set(path, loaded);
    return loaded;
  }

  #login(loaded: LoadedLibrary, settings: Pkcs11Settings, pin: SecretBytes, digest: Buffer): TokenConnection {
    const { constants: ck } = this.#bindingNow();
    const { library } = loaded;
    const slot = findSlot(library, settings);
    const loginSession = library.C_OpenSession(slot, ck.CKF_SERIAL_SESSION);
    try {
      pin.use((bytes) => library.C_Login(loginSession, ck.CKU_USER, bytes.toString('utf8')));
    } catch (error) {
      library.C_CloseSession(loginSession);
      throw loginFailure(ck, settings, error);
    }
    const pool = new SessionPool<Handle>(
      { open: () => library.C_OpenSession(slot, ck.CKF_SERIAL_SESSION), close: (session) => library.C_CloseSession(session) },
      this.#poolSize,
    );
    return { label: settings.tokenLabel, slot, loginSession, pinDigest: digest, pool, refs: 0 };
  }

  #findKeys(library: Pkcs11Library, token: TokenConnection, label: string): Handle[] {
    const { constants: ck } = this.#bindingNow();
    return findObjects(library, token.loginSession, [
      { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
      { type: ck.CKA_KEY_TYPE, value: ck.CKK_AES },
      { type: ck.CKA_LABEL, value: label },
    ]);
  }

  #findKey(library: Pkcs11Library, token: TokenConnection, key: KeyNaming): Handle {
    const found = this.#findKeys(library, token, key.label);
    if (found.length === 0) {
      throw new StartupError(
        `No AES key labelled "${key.label}" (${key.what}) in token "${token.label}". ` +
          'Create it with `keyhold root init-hsm`, or name the key the store was wrapped with.',
      );
    }
    if (found.length > 1) {
      throw new StartupError(`The token "${token.label}" holds ${found.length} AES keys labelled "${key.label}" (${key.what}); the label must name one`);
    }
    return found[0]!;
  }

  #tokenKey(loaded: LoadedLibrary, token: TokenConnection, handle: Handle, label: string): TokenAesKey {
    const { library } = loaded;
    const { constants: ck } = this.#bindingNow();
    const gcm = (iv: Buffer, aad: Buffer): GcmMechanism => ({
      mechanism: ck.CKM_AES_GCM,
      parameter: { type: ck.CK_PARAMS_AES_GCM, iv, ivBits: iv.length * 8, aad, tagBits: GCM_TAG_BYTES * 8 },
    });
    const description = `key "${label}" in token "${token.label}"`;
    let closed: Promise<void> | undefined;
    return {
      description,
      encrypt: (iv, aad, plaintext) =>
        token.pool
          .run((session) => {
            library.C_EncryptInit(session, gcm(iv, aad), handle);
            return library.C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
          })
          .catch((error: unknown) => {
            throw operationFailure(description, 'encrypt', error);
          }),
      decrypt: (iv, aad, sealed) =>
        token.pool
          .run((session) => {
            library.C_DecryptInit(session, gcm(iv, aad), handle);
            // The token writes the plaintext only after the tag checks, but wants room for the whole input.
            return library.C_DecryptAsync(session, sealed, Buffer.alloc(sealed.length));
          })
          .catch((error: unknown) => {
            // A tag that does not verify: SoftHSM answers CKR_GENERAL_ERROR, others CKR_ENCRYPTED_DATA_INVALID.
            const code = pkcs11ReturnCode(error);
            if (code === ck.CKR_GENERAL_ERROR || code === ck.CKR_ENCRYPTED_DATA_INVALID || code === ck.CKR_ENCRYPTED_DATA_LEN_RANGE) {
              throw new DecryptionFailedError();
            }
            throw operationFailure(description, 'decrypt', error);
          }),
      close: () => (closed ??= this.#exclusive(() => this.#release(loaded, token))),
    };
  }

  /** Gives a reference back after a failed open; the caller throws the failure and does not wait for this. */
  #releaseSoon(loaded: LoadedLibrary, token: TokenConnection): void {
    token.refs -= 1;
    if (token.refs > 0) return;
    loaded.tokens.delete(token.label);
    closeSessionQuietly(loaded.library, token.loginSession);
    if (loaded.tokens.size === 0) this.#unload(loaded);
  }

  async #release(loaded: LoadedLibrary, token: TokenConnection): Promise<void> {
    token.refs -= 1;
    if (token.refs > 0) return;
    loaded.tokens.delete(token.label);
    await token.pool.close();
    // The last session closed logs the application out of the token.
    closeSessionQuietly(loaded.library, token.loginSession);
    if (loaded.tokens.size === 0) this.#unload(loaded);
  }

  #unload(loaded: LoadedLibrary): void {
    this.#libraries.delete(loaded.path);
    try {
      loaded.library.C_Finalize();
    } finally {
      loaded.library.close();
    }
  }
}

/** The process's one PKCS#11 runtime: PKCS#11 state is process-wide, so this is too. */
export const processPkcs11 = new Pkcs11Runtime();

function closeSessionQuietly(library: Pkcs11Library, session: Handle): void {
  try {
    library.C_CloseSession(session);
  } catch {
    // A session the token has dropped already.
  }
}

function findObjects(library: Pkcs11Library, session: Handle, template: Attribute[]): Handle[] {
  library.C_FindObjectsInit(session, template);
  try {
    const found: Handle[] = [];
    for (let batch = library.C_FindObjects(session, 16); batch.length > 0; batch = library.C_FindObjects(session, 16)) found.push(...batch);
    return found;
  } finally {
    library.C_FindObjectsFinal(session);
  }
}

/** The token is found by label, never by slot id: slot ids change when tokens are added (SoftHSM renumbers them). */
function findSlot(library: Pkcs11Library, settings: Pkcs11Settings): Handle {
  const tokens = library.C_GetSlotList(true).map((slot) => ({ slot, label: library.C_GetTokenInfo(slot).label.replace(/[ \0]+$/, '') }));
  const matching = tokens.filter((token) => token.label === settings.tokenLabel);
  if (matching.length === 0) {
    const present = tokens.filter((token) => token.label !== '').map((token) => `"${token.label}"`).join(', ') || 'none';
    throw new StartupError(
      `No token labelled "${settings.tokenLabel}" (KEYHOLD_PKCS11_TOKEN_LABEL) in ${settings.library}; tokens present: ${present}`,
    );
  }
  if (matching.length > 1) {
    throw new StartupError(`${matching.length} tokens are labelled "${settings.tokenLabel}" in ${settings.library}; the label must name one`);
  }
  return matching[0]!.slot;
}

function loginFailure(ck: Readonly<Record<Pkcs11Constant, number>>, settings: Pkcs11Settings, error: unknown): StartupError {
  const code = pkcs11ReturnCode(error);
  const pin = settings.pin.kind === 'inline' ? 'KEYHOLD_PKCS11_PIN' : `the PIN in KEYHOLD_PKCS11_PIN_FILE ${settings.pin.path}`;
  if (code === ck.CKR_PIN_INCORRECT) return new StartupError(`The token "${settings.tokenLabel}" refused ${pin}: the PIN is wrong (CKR_PIN_INCORRECT)`);
  if (code === ck.CKR_PIN_LOCKED) return new StartupError(`The token "${settings.tokenLabel}" is locked after too many wrong PINs (CKR_PIN_LOCKED)`);
  if (code === ck.CKR_PIN_EXPIRED) return new StartupError(`The user PIN of token "${settings.tokenLabel}" has expired (CKR_PIN_EXPIRED); set a new one`);
  if (code === ck.CKR_USER_ALREADY_LOGGED_IN) {
    return new StartupError(`Something else in this process is logged in to token "${settings.tokenLabel}" already; Keyhold must own the login`);
  }
  return new StartupError(`Logging in to token "${settings.tokenLabel}" failed: ${pkcs11FailureName(error)}`);
}

/** A root key must stay in the token: a token object, sensitive, not extractable, AES-256, able to encrypt and decrypt. */
function checkKeyAttributes(
  library: Pkcs11Library,
  ck: Readonly<Record<Pkcs11Constant, number>>,
  token: TokenConnection,
  handle: Handle,
  key: KeyNaming,
): void {
  const names = ['CKA_TOKEN', 'CKA_SENSITIVE', 'CKA_EXTRACTABLE', 'CKA_ENCRYPT', 'CKA_DECRYPT', 'CKA_VALUE_LEN'] as const;
  const values = library.C_GetAttributeValue(token.loginSession, handle, names.map((name) => ({ type: ck[name] })));
  const read = (name: (typeof names)[number]): number => {
    const value = values.find((attribute) => attribute.type === ck[name])?.value;
    // CK_BBOOL is one byte, CK_ULONG the platform's unsigned long, little-endian on every platform Node runs on here.
    return value === undefined || value.length === 0 ? -1 : value.readUIntLE(0, Math.min(value.length, 6));
  };
  const problems: string[] = [];
  if (read('CKA_TOKEN') !== 1) problems.push('it is not a token object (CKA_TOKEN is false)');
  if (read('CKA_SENSITIVE') !== 1) problems.push('its value can be read (CKA_SENSITIVE is false)');
  if (read('CKA_EXTRACTABLE') !== 0) problems.push('it can be exported (CKA_EXTRACTABLE is true)');
  if (read('CKA_VALUE_LEN') !== AES_256_KEY_BYTES) problems.push(`it is not AES-256 (CKA_VALUE_LEN is ${read('CKA_VALUE_LEN')})`);
  if (read('CKA_ENCRYPT') !== 1 || read('CKA_DECRYPT') !== 1) problems.push('it may not encrypt and decrypt');
  if (problems.length > 0) {
    throw new StartupError(
      `The key labelled "${key.label}" (${key.what}) in token "${token.label}" cannot be a root key: ${problems.join('; ')}. ` +
        'Create one with `keyhold root init-hsm`.',
    );
  }
}

/** The root key's attributes: it never leaves the token, and does nothing but encrypt and decrypt (no wrap, sign, derive). */
function rootKeyTemplate(ck: Readonly<Record<Pkcs11Constant, number>>, label: string): Attribute[] {
  return [
    { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
    { type: ck.CKA_KEY_TYPE, value: ck.CKK_AES },
    { type: ck.CKA_VALUE_LEN, value: AES_256_KEY_BYTES },
    { type: ck.CKA_LABEL, value: label },
    { type: ck.CKA_TOKEN, value: true },
    { type: ck.CKA_PRIVATE, value: true },
    { type: ck.CKA_SENSITIVE, value: true },
    { type: ck.CKA_EXTRACTABLE, value: false },
    { type: ck.CKA_MODIFIABLE, value: false },
    { type: ck.CKA_ENCRYPT, value: true },
    { type: ck.CKA_DECRYPT, value: true },
    { type: ck.CKA_WRAP, value: false },
    { type: ck.CKA_UNWRAP, value: false },
    { type: ck.CKA_SIGN, value: false },
    { type: ck.CKA_VERIFY, value: false },
    { type: ck.CKA_DERIVE, value: false },
  ];
}

/**
 * A token that fails an operation for another reason than a bad tag (a device error, a session or token gone): the
 * request gets 503, as for a database that cannot be reached, with the return value in the logged detail.
 */
function operationFailure(description: string, operation: string, error: unknown): KeyholdError {
  if (error instanceof KeyholdError) return error;
  return new UnavailableError(`The HSM could not ${operation} with the root key (${description}): ${pkcs11FailureName(error)}`, { cause: error });
}
