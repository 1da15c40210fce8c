/**
 * Bytes received but not yet used, kept as the chunks they came in. Taking a segment that lies inside one chunk is a
 * view, not a copy, so streaming large chunks costs no extra copies.
 */
export class ByteQueue {
  readonly #chunks: Uint8Array[] = [];
  #head = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The first `count` bytes, removed from the queue. */
  take(count: number): Uint8Array {
    if (count > this.#length) throw new RangeError('not enough bytes queued');
    const first = this.#chunks[0];
    if (first !== undefined && first.length - this.#head >= count) {
      const view = first.subarray(this.#head, this.#head + count);
      this.#consume(count);
      return view;
    }
    // Not zero-filled: the loop writes all `count` bytes before it is returned. Not from Buffer's shared pool either,
    // because it may hold plaintext.
    const out = Buffer.allocUnsafeSlow(count);
    let filled = 0;
    while (filled < count) {
      const chunk = this.#chunks[0]!;
      const n = Math.min(count - filled, chunk.length - this.#head);
      out.set(chunk.subarray(this.#head, this.#head + n), filled);
      filled += n;
      this.#consume(n);
    }
    return out;
  }

  /**
   * The first `count` bytes, removed from the queue, as views of the chunks they lie in: for a consumer that takes
   * them piece by piece, such as a cipher, and so needs no copy even when they span chunks.
   */
  takeViews(count: number): Uint8Array[] {
    if (count > this.#length) throw new RangeError('not enough bytes queued');
    const views: Uint8Array[] = [];
    let left = count;
    while (left > 0) {
      const chunk = this.#chunks[0]!;
      const n = Math.min(left, chunk.length - this.#head);
      views.push(chunk.subarray(this.#head, this.#head + n));
      left -= n;
      this.#consume(n);
    }
    return views;
  }

  /** The first `count` bytes, left in the queue. */
  peek(count: number): Uint8Array {
    const taken = this.take(count);
    if (this.#head > 0) {
      this.#chunks[0] = this.#chunks[0]!.subarray(this.#head);
      this.#head = 0;
    }
    this.#chunks.unshift(taken);
    this.#length += count;
    return taken;
  }

  #consume(count: number): void {
    this.#length -= count;
    this.#head += count;
    while (this.#chunks.length > 0 && this.#head >= this.#chunks[0]!.length) {
      this.#head -= this.#chunks[0]!.length;
      this.#chunks.shift();
    }
  }
}
