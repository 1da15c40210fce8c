/**
 * Holds a fake repository's lookups after they read, until released, so a test can race a lookup against a write
 * (a revocation) that lands while it is in flight.
 */
export class LookupGate {
  #hold: Promise<void> | undefined;

  /** Awaited by a lookup after it read: passes at once unless the gate is closed. */
  async pass(): Promise<void> {
    if (this.#hold !== undefined) await this.#hold;
  }

  /** Closes the gate; the returned function opens it and lets every held lookup go on. */
  close(): () => void {
    let release!: () => void;
    this.#hold = new Promise((resolve) => (release = resolve));
    return () => {
      this.#hold = undefined;
      release();
    };
  }
}

/** Byte-wise, as the databases compare text columns. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
