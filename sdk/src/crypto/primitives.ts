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
  /** AES-256 of single blocks under one key, for key derivation only. */
  blockCipher(key: Uint8Array): Promise<BlockCipher>;
  randomBytes(length: number): Uint8Array;
  /** Compares in time that depends only on the lengths. */
  equalConstantTime(a: Uint8Array, b: Uint8Array): boolean;
  /**
   * The same primitives without promises, where the runtime has them (node:crypto). A message under a cached data
   * key then encrypts or decrypts in one synchronous call: each await cost about as much as a primitive at 1 KiB.
   */
  readonly sync?: SyncCryptoBackend;
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

/** AES-256 under one key applied to each 16-byte block on its own (no chaining). Never for data: for derivation. */
export interface BlockCipher {
  encryptBlocks(blocks: Uint8Array): Promise<Uint8Array>;
}

/** {@link CryptoBackend} without promises. */
export interface SyncCryptoBackend {
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  blockCipher(key: Uint8Array): SyncBlockCipher;
  /**
   * Seals one segment under `key`: the ciphertext then the tag, written into `out` at `offset`, which must have room
   * for the plaintext's length plus 16.
   */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, out: Uint8Array, offset: number): void;
  /** A segment cipher whose plaintext may be fed in pieces: for streams, which never hold a segment in one buffer. */
  sealer(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array): IncrementalSeal;
  /** Opens one segment: the plaintext, or the decryption error when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array;
  /** {@link sealer} for opening: the plaintext pieces are released by the caller only once `verify` has passed. */
  opener(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array): IncrementalOpen;
}

/** {@link BlockCipher} without promises. */
export interface SyncBlockCipher {
  encryptBlocks(blocks: Uint8Array): Uint8Array;
}

/** One segment sealed piece by piece. */
export interface IncrementalSeal {
  /** The ciphertext of this piece of plaintext. */
  update(plaintext: Uint8Array): Uint8Array;
  /** The tag, once every piece has been given. */
  finish(): Uint8Array;
}

/** One segment opened piece by piece. */
export interface IncrementalOpen {
  /** The plaintext of this piece, unauthenticated until {@link verify} passes. */
  update(ciphertext: Uint8Array): Uint8Array;
  /** Throws the decryption error unless `tag` is the segment's tag. */
  verify(tag: Uint8Array): void;
}
