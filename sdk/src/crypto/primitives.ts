/**
 * The primitives the envelope format needs. Two implementations exist: node:crypto, measured 3–4× faster for small
 * messages, and WebCrypto for runtimes without node:crypto. `defaultBackend` (backend.ts) is the one place that
 * chooses.
 */
export interface CryptoBackend {
  readonly name: 'node' | 'webcrypto';
  /** HKDF-SHA256 (RFC 5869): `length` bytes from `ikm`, salted with `salt`, bound to `info`. */
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  /** An AES-256-GCM cipher bound to one content key. */
  segmentCipher(key: Uint8Array): Promise<SegmentCipher>;
  randomBytes(length: number): Uint8Array;
  /** Compares in time that depends only on the lengths. */
  equalConstantTime(a: Uint8Array, b: Uint8Array): boolean;
}

/** AES-256-GCM under one content key, with 96-bit nonces and 128-bit tags. */
export interface SegmentCipher {
  /** The ciphertext followed by the tag. */
  seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** The plaintext, or the decryption error when the tag does not verify; nothing of an unverified segment. */
  open(nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Forgets the key as far as the runtime allows. */
  dispose(): void;
}

