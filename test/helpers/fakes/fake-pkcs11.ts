import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { PKCS11_CONSTANT_NAMES, type Attribute, type GcmMechanism, type Handle, type Pkcs11Binding, type Pkcs11Constant, type Pkcs11Library } from '../../../src/root-keys/pkcs11-binding.js';

/** Distinct values for the constants; the return values are PKCS#11's own, as the provider's messages name them. */
const RETURN_VALUES: Partial<Record<Pkcs11Constant, number>> = {
  CKR_GENERAL_ERROR: 0x05,
  CKR_ENCRYPTED_DATA_INVALID: 0x40,
  CKR_ENCRYPTED_DATA_LEN_RANGE: 0x41,
  CKR_PIN_INCORRECT: 0xa0,
  CKR_PIN_EXPIRED: 0xa3,
  CKR_PIN_LOCKED: 0xa4,
  CKR_USER_ALREADY_LOGGED_IN: 0x100,
};
export const FAKE_CK = Object.freeze(
  Object.fromEntries(PKCS11_CONSTANT_NAMES.map((name, index) => [name, RETURN_VALUES[name] ?? 1000 + index])) as Record<Pkcs11Constant, number>,
);

/** An error as pkcs11js throws it: the return value's name as the message, its number as `code`. */
export function ckr(name: string, code: number): Error {
  return Object.assign(new Error(name), { code });
}

export interface FakeKey {
  readonly label: string;
  readonly bytes: Buffer;
  readonly attributes: Partial<Record<Pkcs11Constant, boolean | number>>;
}

export interface FakeToken {
  readonly label: string;
  readonly pin: string;
  readonly keys: FakeKey[];
}

interface Session {
  readonly token: FakeToken;
  operation: { kind: 'encrypt' | 'decrypt'; mechanism: GcmMechanism; key: FakeKey } | undefined;
  busy: boolean;
}

/**
 * A PKCS#11 module in memory, as SoftHSM 2.6 behaves where the provider depends on it: one operation per session, a
 * login per application and token that ends with the last session, CKR_GENERAL_ERROR for a tag that does not verify,
 * CKR_BUFFER_TOO_SMALL for a decrypt output shorter than the input. It counts what the tests check.
 */
export class FakePkcs11 {
  readonly tokens: FakeToken[];
  readonly calls: string[] = [];
  initializeFlags: number | undefined;
  initialized = false;
  loaded = false;
  /** The most operations that ran at once. */
  maxInFlight = 0;
  /** Library paths that fail to load. */
  readonly missingLibraries = new Set<string>();
  /** Makes the next operations fail with this return value (a device error, say). */
  failNext: Error | undefined;
  /** Operations wait for this before they finish, so tests can hold many in flight. */
  gate: Promise<void> = Promise.resolve();
  readonly #sessions = new Map<string, Session>();
  readonly #loggedIn = new Set<FakeToken>();
  #nextHandle = 1;
  #inFlight = 0;

  constructor(tokens: FakeToken[]) {
    this.tokens = tokens;
  }

  get openSessions(): number {
    return this.#sessions.size;
  }

  binding(): Pkcs11Binding {
    return { createLibrary: () => this.#library(), constants: FAKE_CK };
  }

  /** An AES-256 key as `keyhold root init-hsm` makes it, with overrides. */
  static key(label: string, attributes: FakeKey['attributes'] = {}): FakeKey {
    return {
      label,
      bytes: randomBytes(32),
      attributes: { CKA_TOKEN: true, CKA_SENSITIVE: true, CKA_EXTRACTABLE: false, CKA_ENCRYPT: true, CKA_DECRYPT: true, CKA_VALUE_LEN: 32, ...attributes },
    };
  }

  #library(): Pkcs11Library {
    const fake = this;
    const handle = (): Handle => {
      const buffer = Buffer.alloc(8);
      buffer.writeUInt32LE(fake.#nextHandle++);
      return buffer;
    };
    const session = (h: Handle): Session => {
      const found = fake.#sessions.get(h.toString('hex'));
      if (found === undefined) throw ckr('CKR_SESSION_HANDLE_INVALID', 0xb3);
      return found;
    };
    const keyHandles = new Map<string, FakeKey>();
    let search: FakeKey[] = [];
    const run = async (h: Handle, kind: 'encrypt' | 'decrypt', data: Buffer, out: Buffer): Promise<Buffer> => {
      const s = session(h);
      if (s.busy) throw new Error('two operations at once on one session');
      const operation = s.operation;
      if (operation?.kind !== kind) throw ckr('CKR_OPERATION_NOT_INITIALIZED', 0x91);
      s.busy = true;
      fake.#inFlight += 1;
      fake.maxInFlight = Math.max(fake.maxInFlight, fake.#inFlight);
      try {
        await fake.gate;
        await new Promise((resolve) => setImmediate(resolve));
        if (fake.failNext !== undefined) throw fake.failNext;
        const { iv, aad } = operation.mechanism.parameter;
        if (kind === 'encrypt') {
          const cipher = createCipheriv('aes-256-gcm', operation.key.bytes, iv);
          cipher.setAAD(aad);
          const sealed = Buffer.concat([cipher.update(data), cipher.final(), cipher.getAuthTag()]);
          sealed.copy(out);
          return out.subarray(0, sealed.length);
        }
        if (out.length < data.length) {
          s.busy = false;
          throw ckr('CKR_BUFFER_TOO_SMALL', 0x150);
        }
        s.operation = undefined;
        try {
          const decipher = createDecipheriv('aes-256-gcm', operation.key.bytes, iv);
          decipher.setAAD(aad);
          decipher.setAuthTag(data.subarray(data.length - 16));
          const plain = Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]);
          plain.copy(out);
          return out.subarray(0, plain.length);
        } catch {
          throw ckr('CKR_GENERAL_ERROR', FAKE_CK.CKR_GENERAL_ERROR);
        }
      } finally {
        s.operation = undefined;
        s.busy = false;
        fake.#inFlight -= 1;
      }
    };
    const slots = this.tokens.map(() => handle());
    return {
      load(path) {
        fake.calls.push(`load ${path}`);
        if (fake.missingLibraries.has(path)) throw new Error(`${path}: cannot open shared object file: No such file or directory`);
        fake.loaded = true;
      },
      C_Initialize({ flags }) {
        fake.calls.push('C_Initialize');
        if (fake.initialized) throw ckr('CKR_CRYPTOKI_ALREADY_INITIALIZED', 0x191);
        fake.initialized = true;
        fake.initializeFlags = flags;
      },
      C_Finalize() {
        fake.calls.push('C_Finalize');
        fake.initialized = false;
        fake.#sessions.clear();
        fake.#loggedIn.clear();
      },
      close() {
        fake.calls.push('close');
        fake.loaded = false;
      },
      C_GetSlotList: () => slots,
      C_GetTokenInfo: (slot) => ({ label: fake.tokens[slots.findIndex((s) => s.equals(slot))]!.label.padEnd(32, ' ') }),
      C_OpenSession(slot, _flags) {
        const token = fake.tokens[slots.findIndex((s) => s.equals(slot))]!;
        const h = handle();
        fake.#sessions.set(h.toString('hex'), { token, operation: undefined, busy: false });
        return h;
      },
      C_CloseSession(h) {
        const { token } = session(h);
        fake.#sessions.delete(h.toString('hex'));
        if (![...fake.#sessions.values()].some((s) => s.token === token)) fake.#loggedIn.delete(token);
      },
      C_Login(h, _userType, pin) {
        const { token } = session(h);
        fake.calls.push('C_Login');
        if (fake.#loggedIn.has(token)) throw ckr('CKR_USER_ALREADY_LOGGED_IN', FAKE_CK.CKR_USER_ALREADY_LOGGED_IN);
        if (pin !== token.pin) throw ckr('CKR_PIN_INCORRECT', FAKE_CK.CKR_PIN_INCORRECT);
        fake.#loggedIn.add(token);
      },
      C_FindObjectsInit(h, template: Attribute[]) {
        const { token } = session(h);
        const label = template.find((a) => a.type === FAKE_CK.CKA_LABEL)?.value;
        search = fake.#loggedIn.has(token) ? token.keys.filter((key) => key.label === label) : [];
      },
      C_FindObjects(_h, max) {
        const batch = search.splice(0, max);
        return batch.map((key) => {
          const h = handle();
          keyHandles.set(h.toString('hex'), key);
          return h;
        });
      },
      C_FindObjectsFinal() {
        search = [];
      },
      C_GetAttributeValue(_h, object, template) {
        const key = keyHandles.get(object.toString('hex'))!;
        return template.map(({ type }) => {
          const name = PKCS11_CONSTANT_NAMES.find((n) => FAKE_CK[n] === type)!;
          const value = key.attributes[name];
          if (typeof value === 'number') {
            const buffer = Buffer.alloc(8);
            buffer.writeUInt32LE(value);
            return { type, value: buffer };
          }
          return { type, value: Buffer.of(value === true ? 1 : 0) };
        });
      },
      C_GenerateKey(h, _mechanism, template) {
        const { token } = session(h);
        const label = String(template.find((a) => a.type === FAKE_CK.CKA_LABEL)?.value);
        const key = FakePkcs11.key(label);
        token.keys.push(key);
        const object = handle();
        keyHandles.set(object.toString('hex'), key);
        return object;
      },
      C_DestroyObject(_h, object) {
        const key = keyHandles.get(object.toString('hex'))!;
        for (const token of fake.tokens) token.keys.splice(token.keys.indexOf(key), token.keys.includes(key) ? 1 : 0);
      },
      C_EncryptInit(h, mechanism, object) {
        const s = session(h);
        if (s.operation !== undefined) throw ckr('CKR_OPERATION_ACTIVE', 0x90);
        s.operation = { kind: 'encrypt', mechanism, key: keyHandles.get(object.toString('hex'))! };
      },
      C_EncryptAsync: (h, data, out) => run(h, 'encrypt', data, out),
      C_DecryptInit(h, mechanism, object) {
        const s = session(h);
        if (s.operation !== undefined) throw ckr('CKR_OPERATION_ACTIVE', 0x90);
        s.operation = { kind: 'decrypt', mechanism, key: keyHandles.get(object.toString('hex'))! };
      },
      C_DecryptAsync: (h, data, out) => run(h, 'decrypt', data, out),
    };
  }
}
