/**
 * The algorithm suites of the envelope format. This is the only table that maps a suite id to its parameters;
 * no other module switches on suite ids.
 */
export interface Suite {
  /** The 16-bit id written into every message header. */
  readonly id: number;
  readonly name: string;
  /** Bytes of the data key the service issues. */
  readonly dataKeyBytes: number;
  /** Bytes of the per-message content key derived from the data key. */
  readonly contentKeyBytes: number;
  /** Bytes of the key commitment stored in the header. */
  readonly commitmentBytes: number;
  readonly nonceBytes: number;
  readonly tagBytes: number;
  /** HKDF `info`: a label and the suite id, so no two suites can ever derive the same keys. */
  readonly hkdfInfo: Uint8Array;
}

/**
 * AES-256-GCM with a per-message content key and a key commitment, both from HKDF-SHA256 over the data key salted
 * with the 32-byte message id. A random 256-bit salt per message means a cached data key can encrypt any number of
 * messages without approaching the GCM limits of NIST SP 800-38D §8.3: every message has its own key, so the
 * segment counter is a safe nonce.
 */
export const SUITE_AES256_GCM_HKDF_SHA256_COMMIT: Suite = Object.freeze({
  id: 0x0001,
  name: 'AES-256-GCM/HKDF-SHA256/commit',
  dataKeyBytes: 32,
  contentKeyBytes: 32,
  commitmentBytes: 32,
  nonceBytes: 12,
  tagBytes: 16,
  hkdfInfo: Uint8Array.from([...new TextEncoder().encode('keyhold-sdk/v1 derive'), 0x00, 0x01]),
});

const SUITES: ReadonlyMap<number, Suite> = new Map([[SUITE_AES256_GCM_HKDF_SHA256_COMMIT.id, SUITE_AES256_GCM_HKDF_SHA256_COMMIT]]);

/** The suite every new message uses. Only committing suites exist, so there is no policy to get wrong. */
export const DEFAULT_SUITE = SUITE_AES256_GCM_HKDF_SHA256_COMMIT;

/** The suite with this id, or undefined for an id this version does not know. */
export function suiteById(id: number): Suite | undefined {
  return SUITES.get(id);
}
