/**
 * The key derivation of XAES-256-GCM (C2SP XAES-256-GCM): NIST SP 800-108r1's KDF in counter mode with AES-256-CMAC
 * as the PRF, restricted to one-block inputs so that each CMAC is a single AES call. From a key K and a 12-byte
 * nonce N:
 *
 *   L = AES-256_K(0¹²⁸), K1 = the CMAC subkey of L (NIST SP 800-38B §6.1)
 *   M1 = 0x00 0x01 'X' 0x00 ‖ N,  M2 = 0x00 0x02 'X' 0x00 ‖ N
 *   Kₓ = AES-256_K(M1 ⊕ K1) ‖ AES-256_K(M2 ⊕ K1)
 *
 * K1 depends on K only, so it is computed once per key; a derivation is then two AES blocks.
 */
export const XAES_KDF_NONCE_BYTES = 12;
const BLOCK_BYTES = 16;
/** The reduction constant of GF(2¹²⁸) in CMAC's doubling (NIST SP 800-38B §5.3). */
const R128 = 0x87;
/** The 'X' of M1 and M2: the derivation's label. */
const LABEL = 0x58;

/** The block whose encryption is L. */
export const CMAC_ZERO_BLOCK: Uint8Array = new Uint8Array(BLOCK_BYTES);

/** K1 = L · x in GF(2¹²⁸): L shifted left by one bit, and 0x87 folded in when its top bit was set. */
export function cmacSubkey(l: Uint8Array): Uint8Array {
  if (l.length !== BLOCK_BYTES) throw new RangeError('L is one block');
  const k1 = new Uint8Array(BLOCK_BYTES);
  for (let i = 0; i < BLOCK_BYTES - 1; i++) k1[i] = ((l[i]! << 1) | (l[i + 1]! >>> 7)) & 0xff;
  k1[BLOCK_BYTES - 1] = ((l[BLOCK_BYTES - 1]! << 1) & 0xff) ^ (l[0]! & 0x80 ? R128 : 0);
  return k1;
}

/** M1 ⊕ K1 ‖ M2 ⊕ K1 for the nonce: the two blocks whose AES-256 encryptions are the derived key. */
export function xaesKdfBlocks(k1: Uint8Array, nonce: Uint8Array): Uint8Array {
  if (nonce.length !== XAES_KDF_NONCE_BYTES) throw new RangeError('the XAES KDF nonce is 12 bytes');
  const blocks = new Uint8Array(2 * BLOCK_BYTES);
  for (let counter = 1; counter <= 2; counter++) {
    const offset = (counter - 1) * BLOCK_BYTES;
    blocks[offset + 1] = counter;
    blocks[offset + 2] = LABEL;
    blocks.set(nonce, offset + 4);
    for (let i = 0; i < BLOCK_BYTES; i++) blocks[offset + i] = blocks[offset + i]! ^ k1[i]!;
  }
  return blocks;
}
