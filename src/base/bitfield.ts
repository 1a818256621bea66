// Piece bitfields of the P2P prefetch (Have answers, a node's own progress), in BitTorrent's bit
// order: piece i is bit (0x80 >> (i & 7)) of byte i >> 3, so a bitfield is the same bytes on the
// wire and in memory, and a reader of BEP 3 reads ours without a table.
import { ShoalError } from "./errors.js";

/** Pieces of a blob of `size` bytes cut every `pieceSize` bytes (the last one shorter); 0 for an empty blob. */
export function pieceCountOf(size: number, pieceSize: number): number {
  return Math.ceil(size / pieceSize);
}

/** Bytes needed for `pieceCount` bits. */
export function bitfieldBytes(pieceCount: number): number {
  if (!Number.isSafeInteger(pieceCount) || pieceCount < 0) throw new RangeError(`bad piece count ${pieceCount}`);
  return (pieceCount + 7) >> 3;
}

/** An all-clear bitfield for `pieceCount` pieces. */
export function newBitfield(pieceCount: number): Uint8Array {
  return new Uint8Array(bitfieldBytes(pieceCount));
}

// An index past the last byte would read as "not held" and a write to it would vanish: a caller
// that asks about a piece the blob does not have has a bug, so it is told at once.
function checkIndex(bf: Uint8Array, index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= bf.length * 8) {
    throw new RangeError(`piece index ${index} outside a bitfield of ${bf.length * 8} bits`);
  }
}

export function hasBit(bf: Uint8Array, index: number): boolean {
  checkIndex(bf, index);
  return (bf[index >> 3]! & (0x80 >> (index & 7))) !== 0;
}

export function setBit(bf: Uint8Array, index: number): void {
  checkIndex(bf, index);
  bf[index >> 3]! |= 0x80 >> (index & 7);
}

export function clearBit(bf: Uint8Array, index: number): void {
  checkIndex(bf, index);
  bf[index >> 3]! &= ~(0x80 >> (index & 7)) & 0xff;
}

const POPCOUNT = new Uint8Array(256).map((_, b) => {
  let n = 0;
  for (let v = b; v !== 0; v &= v - 1) n++;
  return n;
});

/** How many bits are set. */
export function countBits(bf: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bf.length; i++) n += POPCOUNT[bf[i]!]!;
  return n;
}

/** Whether all of the first `pieceCount` bits are set. */
export function isComplete(bf: Uint8Array, pieceCount: number): boolean {
  return bf.length === bitfieldBytes(pieceCount) && countBits(bf) === pieceCount;
}

/**
 * Checks a bitfield that came from a peer (a Have answer): it must have exactly the bytes for
 * `pieceCount` pieces and no bit set past the last piece (BEP 3 requires the spare bits clear), so
 * that a peer cannot claim pieces that do not exist. Throws INVALID_ARGUMENT otherwise.
 */
export function checkPeerBitfield(bf: Uint8Array, pieceCount: number): Uint8Array {
  const want = bitfieldBytes(pieceCount);
  if (bf.length !== want) throw new ShoalError("INVALID_ARGUMENT", `a bitfield for ${pieceCount} pieces has ${want} bytes, got ${bf.length}`);
  const spare = want * 8 - pieceCount;
  if (spare > 0 && (bf[want - 1]! & ((1 << spare) - 1)) !== 0) {
    throw new ShoalError("INVALID_ARGUMENT", `a bitfield for ${pieceCount} pieces has bits set past the last piece`);
  }
  return bf;
}
