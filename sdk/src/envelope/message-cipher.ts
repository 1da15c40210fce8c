import type { CryptoBackend, SegmentCipher, SyncCryptoBackend } from '../crypto/primitives.js';
import { DecryptionError, InvalidArgumentError } from '../errors.js';
import type { MessageHeader } from '../format/header.js';
import type { Suite } from '../format/suites.js';
import type { DerivedKeySlot } from '../keys/data-key-source.js';
import { materialOf, materialOfAsync } from './data-key-material.js';

/** The segment index is a u32 in the nonce, so a message has at most this many segments. */
export const MAX_SEGMENTS = 0xffffffff;

/**
 * The nonce of segment `index`: the message's nonce base with the index as a big-endian u32 and a final flag (1 for
 * the last segment, else 0) folded into its last five bytes. This is the STREAM construction of Hoang, Reyhanitabar,
 * Rogaway and Vizár, as in Tink's streaming AEAD and age: a segment moved, dropped, or presented as the last one fails
 * its tag. The base is zero in format v1, whose content key is unique per message; in v2 it is the last 12 bytes of
 * the message id, as XAES-256-GCM's nonce, so even two messages whose 96-bit derivation inputs collided would not
 * share a nonce.
 */
export function segmentNonce(base: Uint8Array, index: number, final: boolean): Uint8Array {
  const nonce = Uint8Array.prototype.slice.call(base);
  nonce[7] = nonce[7]! ^ (index >>> 24);
  nonce[8] = nonce[8]! ^ ((index >>> 16) & 0xff);
  nonce[9] = nonce[9]! ^ ((index >>> 8) & 0xff);
  nonce[10] = nonce[10]! ^ (index & 0xff);
  nonce[11] = nonce[11]! ^ (final ? 1 : 0);
  return nonce;
}

const ZERO_NONCE_BASE = new Uint8Array(12);

/** The nonce base of a message: see {@link segmentNonce}. */
export function nonceBase(header: { readonly suite: Suite; readonly messageId: Uint8Array }): Uint8Array {
  const { suite, messageId } = header;
  return suite.derivation === 'xaes' ? messageId.subarray(messageId.length - suite.nonceBytes) : ZERO_NONCE_BASE;
}

/**
 * The content key and the key commitment of one message: HKDF-SHA256 over the data key, salted with the message id,
 * first `contentKeyBytes` for the key, then `commitmentBytes` for the commitment. The commitment in the header ties
 * the message to one data key, so no ciphertext decrypts to different plaintexts under two keys (the "invisible
 * salamanders" attack on non-committing AEADs).
 */
export async function deriveMessageKeys(
  backend: CryptoBackend,
  suite: Suite,
  dataKey: Uint8Array,
  messageId: Uint8Array,
): Promise<{ contentKey: Uint8Array; commitment: Uint8Array }> {
  if (suite.derivation !== 'per-message-hkdf') throw new RangeError('deriveMessageKeys is format v1\'s derivation');
  if (dataKey.length !== suite.dataKeyBytes) throw new RangeError('data key of the wrong length');
  const okm = await backend.hkdf(dataKey, messageId, suite.hkdfInfo, suite.contentKeyBytes + suite.commitmentBytes);
  // Copies rather than subarrays: V8 keeps a typed array this small inside its object, and the first subarray would
  // move it to a separately allocated buffer, which costs more than the two copies. Uint8Array's own slice, because a
  // Buffer's slice is a view, which the fill below would zero.
  const contentKey = Uint8Array.prototype.slice.call(okm, 0, suite.contentKeyBytes);
  const commitment = Uint8Array.prototype.slice.call(okm, suite.contentKeyBytes);
  okm.fill(0);
  return { contentKey, commitment };
}

/** Seals or opens the segments of one message, in order. */
export class MessageCipher {
  #next = 0;
  #finished = false;
  readonly #nonceBase: Uint8Array;

  private constructor(
    readonly header: MessageHeader,
    readonly cipher: SegmentCipher,
  ) {
    this.#nonceBase = nonceBase(header);
  }

  /** For a new message: the caller has derived the keys and written the commitment into the header. */
  static async forEncryption(backend: CryptoBackend, header: MessageHeader, contentKey: Uint8Array): Promise<MessageCipher> {
    return new MessageCipher(header, await backend.segmentCipher(contentKey));
  }

  /**
   * For a received message: derives the keys from the data key and checks the commitment before any segment is
   * opened. A mismatch is the decryption error.
   */
  static async forDecryption(backend: CryptoBackend, header: MessageHeader, dataKey: DataKeyBytes): Promise<MessageCipher> {
    const { contentKey, commitment } = await keysOf(backend, header, dataKey);
    try {
      if (!backend.equalConstantTime(commitment, header.commitment)) throw new DecryptionError();
      return new MessageCipher(header, await backend.segmentCipher(contentKey));
    } finally {
      contentKey.fill(0);
    }
  }

  /** Seals the next segment. Only the last segment may be shorter than the segment size, or empty. */
  async seal(plaintext: Uint8Array, final: boolean): Promise<Uint8Array> {
    if (this.#finished || this.#next >= MAX_SEGMENTS) throw new InvalidArgumentError('the message is longer than the format allows');
    const nonce = this.#advance(final);
    // `return await`, not `return`: an async function that returns a promise takes two more microtask turns.
    return await this.cipher.seal(nonce, plaintext, this.header.bytes);
  }

  /** Opens the next segment; the caller knows whether it is the last one from where the input ends. */
  async open(sealed: Uint8Array, final: boolean): Promise<Uint8Array> {
    const nonce = this.#advance(final);
    return await this.cipher.open(nonce, sealed, this.header.bytes);
  }

  get segmentsDone(): number {
    return this.#next;
  }

  dispose(): void {
    this.cipher.dispose();
  }

  #advance(final: boolean): Uint8Array {
    if (this.#finished || this.#next >= MAX_SEGMENTS) throw new DecryptionError();
    const nonce = segmentNonce(this.#nonceBase, this.#next, final);
    this.#next += 1;
    this.#finished = final;
    return nonce;
  }
}

/** A data key as decryption gets it: its plaintext, and the slot of its cache entry if it came from a cache. */
export type DataKeyBytes = Uint8Array | { readonly plaintext: Uint8Array; readonly derived?: DerivedKeySlot };

/** The content key of a received message and the commitment its data key gives, for either derivation. */
async function keysOf(backend: CryptoBackend, header: MessageHeader, dataKey: DataKeyBytes): Promise<{ contentKey: Uint8Array; commitment: Uint8Array }> {
  const key = dataKey instanceof Uint8Array ? { plaintext: dataKey } : dataKey;
  if (header.suite.derivation === 'per-message-hkdf') return deriveMessageKeys(backend, header.suite, key.plaintext, header.messageId);
  const { material, owned } = await materialOfAsync(backend, header.suite, key);
  try {
    return { contentKey: await material.contentKey(header.messageId), commitment: material.commitment };
  } finally {
    if (owned) material.dispose();
  }
}

/**
 * {@link keysOf} without promises: the content key (which the caller zeroes), the commitment to check, and `release`,
 * which the caller calls when done with both.
 */
export function messageKeysSync(sync: SyncCryptoBackend, header: MessageHeader, dataKey: DataKeyBytes): { contentKey: Uint8Array; commitment: Uint8Array; release(): void } {
  const key = dataKey instanceof Uint8Array ? { plaintext: dataKey } : dataKey;
  const { suite } = header;
  if (suite.derivation === 'per-message-hkdf') {
    const okm = sync.hkdf(key.plaintext, header.messageId, suite.hkdfInfo, suite.contentKeyBytes + suite.commitmentBytes);
    return { contentKey: okm.subarray(0, suite.contentKeyBytes), commitment: okm.subarray(suite.contentKeyBytes), release: () => okm.fill(0) };
  }
  const { material, owned } = materialOf(sync, suite, key);
  return { contentKey: material.contentKeySync(header.messageId), commitment: material.commitment, release: () => owned && material.dispose() };
}

/** The plaintext of a data key as decryption gets it. */
export function dataKeyPlaintext(dataKey: DataKeyBytes): Uint8Array {
  return dataKey instanceof Uint8Array ? dataKey : dataKey.plaintext;
}
