import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 8192;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/**
 * CSPRNG bytes, like `crypto.randomBytes`, served from a pool refilled by one `randomFillSync` per 8 KiB. A call into
 * OpenSSL per request costs more than the bytes; node's `randomUUID` pools the same way. Every byte handed out is
 * copied and then wiped from the pool, so no two callers ever see the same bytes.
 */
export function randomBytesPooled(length: number): Buffer {
  if (length > POOL_BYTES / 4) return randomFillSync(Buffer.allocUnsafe(length));
  if (offset + length > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.allocUnsafe(length);
  pool.copy(out, 0, offset, offset + length);
  pool.fill(0, offset, offset + length);
  offset += length;
  return out;
}
