import type { CanonicalContext } from '../format/encryption-context.js';

/**
 * A data key as the service issued it. `plaintext` belongs to whoever received this object, who zeroes it after use;
 * sources and caches only ever hand out copies.
 */
export interface DataKey {
  readonly keyName: string;
  readonly keyId: string;
  readonly keyVersion: number;
  /** The service's `kh1` ciphertext of the data key, binary. */
  readonly wrapped: Uint8Array;
  readonly plaintext: Uint8Array;
  /**
   * Counts plaintext bytes encrypted under this key as they are, for a stream whose length was not known when the
   * key was handed out. Only cached keys have it.
   */
  readonly charge?: (bytes: number) => void;
  /** Where a cache keeps what is derived from this key once for all its messages; see {@link DerivedKeySlot}. */
  readonly derived?: DerivedKeySlot;
}

/**
 * What the envelope derives from a data key independently of any message (format v2's derivation key and
 * commitment), kept with a cache entry so it is derived once per data key rather than once per message. The cache
 * disposes of the value when the entry goes, and leaves a marker that keeps the slot from being filled again; a key
 * straight from the service has no slot.
 */
export interface DerivedKeySlot {
  value: { dispose(): void } | undefined;
}

/** The plaintext of a wrapped data key, with the key it belongs to. */
export interface UnwrappedDataKey {
  readonly keyName: string;
  readonly keyId: string;
  readonly plaintext: Uint8Array;
  /** See {@link DataKey.derived}. */
  readonly derived?: DerivedKeySlot;
}

/** Options every call to a source takes. */
export interface SourceCallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/** Options of `generate`. */
export interface GenerateOptions extends SourceCallOptions {
  /** The length of the message the key will encrypt, when known before it starts. */
  readonly plaintextLength?: number;
}

/**
 * Where data keys come from and go back to: the service, a cache in front of it, or a fake in tests. The envelope
 * code takes this interface, as Tink's envelope AEAD takes its key-encryption key as just another `Aead`.
 */
export interface DataKeySource {
  /** A new data key of `keyName`, bound to `context`. */
  generate(keyName: string, context: CanonicalContext, options?: GenerateOptions): Promise<DataKey>;
  /** The plaintext of a wrapped data key (a copy the caller zeroes), or the decryption error. */
  unwrap(wrapped: Uint8Array, context: CanonicalContext, options?: SourceCallOptions): Promise<UnwrappedDataKey>;
}
