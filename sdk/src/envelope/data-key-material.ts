import type { BlockCipher, CryptoBackend, SyncBlockCipher, SyncCryptoBackend } from '../crypto/primitives.js';
import { CMAC_ZERO_BLOCK, cmacSubkey, XAES_KDF_NONCE_BYTES, xaesKdfBlocks } from '../crypto/xaes-kdf.js';
import { headerTemplate, type HeaderTemplate } from '../format/header.js';
import type { Suite } from '../format/suites.js';
import type { DerivedKeySlot } from '../keys/data-key-source.js';

const NO_SALT = new Uint8Array(0);

/**
 * What the messages of a suite-v2 (`xaes`) data key share: the key commitment and the derivation key, from one
 * HKDF-SHA256 of the data key (RFC 5869; no salt, since the data key is already uniformly random, §3.3). A message's
 * content key is then XAES-256-GCM's derivation of the derivation key and the first 12 bytes of the message id: two
 * AES blocks, where format v1's per-message HKDF is three HMACs. The derivation key lives only inside the block cipher
 * (an OpenSSL context or a non-extractable CryptoKey); JavaScript keeps its CMAC subkey, which `dispose` zeroes.
 */
export class DataKeyMaterial {
  #k1: Uint8Array;
  #disposed = false;
  #template: HeaderTemplate | undefined;

  private constructor(
    readonly suite: Suite,
    readonly commitment: Uint8Array,
    k1: Uint8Array,
    private readonly blocks: { sync: SyncBlockCipher } | { async: BlockCipher },
  ) {
    this.#k1 = k1;
  }

  /** Derives the material on node:crypto, without promises. The data key is not kept. */
  static fromSync(sync: SyncCryptoBackend, suite: Suite, dataKey: Uint8Array): DataKeyMaterial {
    checkSuite(suite, dataKey);
    const okm = sync.hkdf(dataKey, NO_SALT, suite.hkdfInfo, suite.contentKeyBytes + suite.commitmentBytes);
    try {
      const cipher = sync.blockCipher(okm.subarray(0, suite.contentKeyBytes));
      const l = cipher.encryptBlocks(CMAC_ZERO_BLOCK);
      const k1 = cmacSubkey(l);
      l.fill(0);
      return new DataKeyMaterial(suite, okm.slice(suite.contentKeyBytes), k1, { sync: cipher });
    } finally {
      okm.fill(0);
    }
  }

  /** Derives the material on any backend. The data key is not kept. */
  static async fromBackend(backend: CryptoBackend, suite: Suite, dataKey: Uint8Array): Promise<DataKeyMaterial> {
    if (backend.sync !== undefined) return DataKeyMaterial.fromSync(backend.sync, suite, dataKey);
    checkSuite(suite, dataKey);
    const okm = await backend.hkdf(dataKey, NO_SALT, suite.hkdfInfo, suite.contentKeyBytes + suite.commitmentBytes);
    try {
      const cipher = await backend.blockCipher(okm.subarray(0, suite.contentKeyBytes));
      const l = await cipher.encryptBlocks(CMAC_ZERO_BLOCK);
      const k1 = cmacSubkey(l);
      l.fill(0);
      return new DataKeyMaterial(suite, okm.slice(suite.contentKeyBytes), k1, { async: cipher });
    } finally {
      okm.fill(0);
    }
  }

  /** The content key of the message with this id; the caller zeroes it. */
  contentKeySync(messageId: Uint8Array): Uint8Array {
    if (!('sync' in this.blocks)) throw new Error('this material was derived on an asynchronous backend');
    // The blocks are the CMAC subkey mixed with the message id: zeroed, like the subkey, once used.
    const inputs = this.#inputs(messageId);
    try {
      return this.blocks.sync.encryptBlocks(inputs);
    } finally {
      inputs.fill(0);
    }
  }

  /** {@link contentKeySync} on any backend. */
  async contentKey(messageId: Uint8Array): Promise<Uint8Array> {
    if ('sync' in this.blocks) return this.contentKeySync(messageId);
    const inputs = this.#inputs(messageId);
    try {
      return await this.blocks.async.encryptBlocks(inputs);
    } finally {
      inputs.fill(0);
    }
  }

  /**
   * The header template of messages with these fields, kept for the next message: a cached data key's messages
   * usually share their context and segment size as well as the wrapped key.
   */
  headerTemplate(fields: HeaderTemplate['fields']): HeaderTemplate {
    const kept = this.#template;
    if (kept !== undefined && kept.fields.suite === fields.suite && kept.fields.segmentSize === fields.segmentSize
      && kept.fields.wrappedKey === fields.wrappedKey && kept.fields.context === fields.context && fields.commitment === this.commitment) {
      return kept;
    }
    const template = headerTemplate(fields);
    if (fields.commitment === this.commitment) this.#template = template;
    return template;
  }

  /** Zeroes the CMAC subkey and refuses further derivations. */
  dispose(): void {
    this.#disposed = true;
    this.#k1.fill(0);
  }

  #inputs(messageId: Uint8Array): Uint8Array {
    if (this.#disposed) throw new Error('the data key material was disposed');
    return xaesKdfBlocks(this.#k1, messageId.subarray(0, XAES_KDF_NONCE_BYTES));
  }
}

function checkSuite(suite: Suite, dataKey: Uint8Array): void {
  if (suite.derivation !== 'xaes') throw new RangeError('data key material is for the xaes derivation only');
  if (dataKey.length !== suite.dataKeyBytes) throw new RangeError('data key of the wrong length');
}

/**
 * The material of a data key: the one its cache entry keeps if it has one, otherwise derived now and, when the key has
 * a slot, kept there. `owned` says whether the caller must dispose of it after use (a key without a slot).
 */
export function materialOf(
  sync: SyncCryptoBackend,
  suite: Suite,
  key: { readonly plaintext: Uint8Array; readonly derived?: DerivedKeySlot },
): { material: DataKeyMaterial; owned: boolean } {
  const held = key.derived?.value;
  if (held instanceof DataKeyMaterial && held.suite === suite) return { material: held, owned: false };
  const material = DataKeyMaterial.fromSync(sync, suite, key.plaintext);
  return { material, owned: !keep(key.derived, material) };
}

/** {@link materialOf} on any backend. */
export async function materialOfAsync(
  backend: CryptoBackend,
  suite: Suite,
  key: { readonly plaintext: Uint8Array; readonly derived?: DerivedKeySlot },
): Promise<{ material: DataKeyMaterial; owned: boolean }> {
  if (backend.sync !== undefined) return materialOf(backend.sync, suite, key);
  const held = key.derived?.value;
  if (held instanceof DataKeyMaterial && held.suite === suite) return { material: held, owned: false };
  const material = await DataKeyMaterial.fromBackend(backend, suite, key.plaintext);
  return { material, owned: !keep(key.derived, material) };
}

/** Puts the material in an empty slot; true if it is kept there. */
function keep(slot: DerivedKeySlot | undefined, material: DataKeyMaterial): boolean {
  if (slot === undefined || slot.value !== undefined) return false;
  slot.value = material;
  return true;
}
