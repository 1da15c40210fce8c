/**
 * The algorithm suites of the envelope format. This is the only table that maps a suite id to its parameters;
 * no other module switches on suite ids.
 */
export interface Suite {
  /** The 16-bit id written into every message header. */
  readonly id: number;
  readonly name: string;
  /** The format version whose header carries this suite; a header of another version naming it is refused. */
  readonly formatVersion: 1 | 2;
  /**
   * How the content key and the commitment come from the data key:
   * - `per-message-hkdf` (v1): one HKDF-SHA256 per message, salted with the message id, gives both;
   * - `xaes` (v2): one HKDF-SHA256 per data key gives a derivation key and the commitment, and each message's content
   *   key is XAES-256-GCM's key derivation (AES-256 in CMAC counter mode) of the derivation key and its message id.
   */
  readonly derivation: 'per-message-hkdf' | 'xaes';
  /** Bytes of the data key the service issues. */
  readonly dataKeyBytes: number;
  /** Bytes of the per-message content key derived from the data key. */
  readonly contentKeyBytes: number;
  /** Bytes of the key commitment stored in the header. */
  readonly commitmentBytes: number;
  /** Bytes of the random per-message id in the header. */
  readonly messageIdBytes: number;
  readonly nonceBytes: number;
  readonly tagBytes: number;
  /** HKDF `info`: a label and the suite id, so no two suites can ever derive the same keys. */
  readonly hkdfInfo: Uint8Array;
}

/** A label's UTF-8 bytes, then the suite id as a u16. */
const hkdfInfo = (label: string, id: number): Uint8Array => Uint8Array.from([...new TextEncoder().encode(label), id >>> 8, id & 0xff]);

/**
 * Format v1: AES-256-GCM with a per-message content key and a key commitment, both from HKDF-SHA256 over the data
 * key salted with the 32-byte message id. A random 256-bit salt per message means a cached data key can encrypt any
 * number of messages without approaching the GCM limits of NIST SP 800-38D §8.3: every message has its own key, so
 * the segment counter is a safe nonce. Read, and written only when asked for (tests, vectors).
 */
export const SUITE_AES256_GCM_HKDF_SHA256_COMMIT: Suite = Object.freeze({
  id: 0x0001,
  name: 'AES-256-GCM/HKDF-SHA256/commit',
  formatVersion: 1,
  derivation: 'per-message-hkdf',
  dataKeyBytes: 32,
  contentKeyBytes: 32,
  commitmentBytes: 32,
  messageIdBytes: 32,
  nonceBytes: 12,
  tagBytes: 16,
  hkdfInfo: hkdfInfo('keyhold-sdk/v1 derive', 0x0001),
});

/**
 * Format v2: the same AES-256-GCM segments, a per-message content key and a key commitment, at a fraction of the
 * cost per message (docs/envelope-format.md explains why). HKDF-SHA256 over the data key runs once per data key and
 * gives a derivation key and the commitment; each message's content key is derived from the derivation key and the
 * first 12 bytes of its random 24-byte message id by XAES-256-GCM's KDF (C2SP XAES-256-GCM, NIST SP 800-108r1
 * counter mode with AES-256-CMAC), and the other 12 bytes randomise every segment nonce. Each segment is therefore
 * an XAES-256-GCM ciphertext under the derivation key, and the header's commitment makes the message key-committing.
 */
export const SUITE_AES256_GCM_XAES_HKDF_SHA256_COMMIT: Suite = Object.freeze({
  id: 0x0002,
  name: 'AES-256-GCM/XAES-KDF/HKDF-SHA256/commit',
  formatVersion: 2,
  derivation: 'xaes',
  dataKeyBytes: 32,
  contentKeyBytes: 32,
  commitmentBytes: 32,
  messageIdBytes: 24,
  nonceBytes: 12,
  tagBytes: 16,
  hkdfInfo: hkdfInfo('keyhold-sdk/v2 derive', 0x0002),
});

const SUITES: ReadonlyMap<number, Suite> = new Map([SUITE_AES256_GCM_HKDF_SHA256_COMMIT, SUITE_AES256_GCM_XAES_HKDF_SHA256_COMMIT].map((suite) => [suite.id, suite]));

/** The suite every new message uses. Only committing suites exist, so there is no policy to get wrong. */
export const DEFAULT_SUITE = SUITE_AES256_GCM_XAES_HKDF_SHA256_COMMIT;

/** The suite with this id, or undefined for an id this version does not know. */
export function suiteById(id: number): Suite | undefined {
  return SUITES.get(id);
}
