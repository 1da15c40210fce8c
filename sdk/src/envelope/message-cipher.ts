import type { CryptoBackend, SegmentCipher } from '../crypto/primitives.js';
import { DecryptionError, InvalidArgumentError } from '../errors.js';
import type { MessageHeader } from '../format/header.js';
import type { Suite } from '../format/suites.js';

/** The segment index is a u32 in the nonce, so a message has at most this many segments. */
export const MAX_SEGMENTS = 0xffffffff;

/**
 * The nonce of segment `index`: seven zero bytes, the index as a big-endian u32, and a final flag (1 for the last
 * segment, else 0). This is the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, as in Tink's
 * streaming AEAD and age: a segment moved, dropped, or presented as the last one fails its tag. The zero prefix is
 * safe because every message has its own content key.
 */
export function segmentNonce(index: number, final: boolean): Uint8Array {
  const nonce = new Uint8Array(12);
  nonce[7] = index >>> 24;
  nonce[8] = (index >>> 16) & 0xff;
  nonce[9] = (index >>> 8) & 0xff;
  nonce[10] = index & 0xff;
  nonce[11] = final ? 1 : 0;
  return nonce;
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

  private constructor(
    readonly header: MessageHeader,
    readonly cipher: SegmentCipher,
  ) {}

  /** For a new message: the caller has derived the keys and written the commitment into the header. */
  static async forEncryption(backend: CryptoBackend, header: MessageHeader, contentKey: Uint8Array): Promise<MessageCipher> {
    return new MessageCipher(header, await backend.segmentCipher(contentKey));
  }

  /**
   * For a received message: derives the keys from the data key and checks the commitment before any segment is
   * opened. A mismatch is the decryption error.
   */
  static async forDecryption(backend: CryptoBackend, header: MessageHeader, dataKey: Uint8Array): Promise<MessageCipher> {
    const { contentKey, commitment } = await deriveMessageKeys(backend, header.suite, dataKey, header.messageId);
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
    const nonce = segmentNonce(this.#next, final);
    this.#next += 1;
    this.#finished = final;
    return nonce;
  }
}
