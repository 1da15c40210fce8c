import { inspect } from 'node:util';
import { randomBytes } from 'node:crypto';

const REDACTED = '[REDACTED]';

/**
 * Secret key material. It prints as `[REDACTED]` through `JSON.stringify`, `util.inspect` and string
 * conversion, and can be zeroed. Code that needs the bytes borrows them with {@link SecretBytes.use}.
 */
export class SecretBytes {
  #bytes: Buffer;
  #zeroed = false;

  private constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  /** Takes ownership of `bytes`: the caller must not keep or reuse the buffer. */
  static adopt(bytes: Buffer): SecretBytes {
    return new SecretBytes(bytes);
  }

  static random(length: number): SecretBytes {
    return new SecretBytes(randomBytes(length));
  }

  get length(): number {
    return this.#bytes.length;
  }

  get isZeroed(): boolean {
    return this.#zeroed;
  }

  /** Lends the bytes to `fn` for the duration of the call. `fn` must not keep a reference. */
  use<T>(fn: (bytes: Buffer) => T): T {
    if (this.#zeroed) throw new Error('SecretBytes used after it was zeroed');
    return fn(this.#bytes);
  }

  /** A copy the caller owns, for handing secret bytes out of the service (a data key's plaintext). */
  copyInsecure(): Buffer {
    return Buffer.from(this.use((bytes) => bytes));
  }

  zero(): void {
    this.#bytes.fill(0);
    this.#zeroed = true;
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `SecretBytes(${REDACTED})`;
  }
}
