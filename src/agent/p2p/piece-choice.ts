// Which pieces to ask of which peers next: a pure function that the fetch loop calls after every
// piece completes (or fails), and the simulator calls at the same points for a thousand nodes.
//
// Rarest first (over the bitfields of the peers we know), so that a piece only a few peers hold is
// copied before those peers are busy or gone, and so that the zone's copies of each piece multiply
// evenly. Ties are broken with the injected Random so that nodes seeing the same bitfields do not
// all ask for the same piece. Never more than maxInFlightPerPeer requests outstanding to one peer,
// never a failed (timed-out, corrupt, revoked) peer, one request per piece except in endgame, where
// a piece already in flight is also asked of another holder so that one slow peer does not hold up
// the last pieces.
import { bitfieldBytes, countBits, hasBit } from "../../base/bitfield.js";
import { ShoalError } from "../../base/errors.js";
import type { Random } from "../../base/random.js";

export interface PieceChoicePeer {
  id: string;
  /** The pieces this peer holds (its last Have answer), in BitTorrent bit order. */
  have: Uint8Array;
  /** Requests outstanding to this peer now. */
  inFlight: number;
  /** Timed out, served a bad piece, or refused us: never asked again in this job. */
  failed?: boolean;
}

export interface PieceChoiceInput {
  pieceCount: number;
  /** The pieces we hold, verified. */
  have: Uint8Array;
  /** Piece index -> the peers it is outstanding at. */
  inFlight: ReadonlyMap<number, ReadonlySet<string>>;
  peers: ReadonlyArray<PieceChoicePeer>;
  maxInFlightPerPeer: number;
  /** true: always add duplicate requests; "auto": once every missing piece is in flight. */
  endgame: boolean | "auto";
  random: Random;
}

export interface PieceRequest {
  peer: string;
  piece: number;
}

function checkInput(input: PieceChoiceInput): void {
  const bytes = bitfieldBytes(input.pieceCount);
  if (input.have.length !== bytes) throw new ShoalError("INVALID_ARGUMENT", `our bitfield has ${input.have.length} bytes, ${bytes} expected for ${input.pieceCount} pieces`);
  for (const peer of input.peers) {
    if (peer.have.length !== bytes) throw new ShoalError("INVALID_ARGUMENT", `peer ${peer.id}'s bitfield has ${peer.have.length} bytes, ${bytes} expected for ${input.pieceCount} pieces`);
  }
  if (!Number.isInteger(input.maxInFlightPerPeer) || input.maxInFlightPerPeer < 1) throw new RangeError(`maxInFlightPerPeer must be a positive integer, got ${input.maxInFlightPerPeer}`);
}

/**
 * The requests to send now, rarest piece first. O(pieces × peers) for the rarity count (by bytes,
 * skipping pieces we hold) plus O(requests × peers) for the peer choice.
 */
export function choosePieces(input: PieceChoiceInput): PieceRequest[] {
  checkInput(input);
  const { pieceCount, have, inFlight, random } = input;
  const peers = input.peers;
  const free = peers.map((p) => (p.failed === true ? 0 : Math.max(0, input.maxInFlightPerPeer - p.inFlight)));
  let totalFree = free.reduce((a, b) => a + b, 0);
  if (totalFree === 0) return [];

  const asked = (piece: number): boolean => (inFlight.get(piece)?.size ?? 0) > 0;
  const rarity = countHolders(input);
  // Pieces that can be asked for now, bucketed by how many usable peers hold them.
  const buckets: number[][] = [];
  for (let piece = 0; piece < pieceCount; piece++) {
    const holders = rarity[piece]!;
    if (holders === 0 || asked(piece) || hasBit(have, piece)) continue;
    (buckets[holders] ??= []).push(piece);
  }

  const out: PieceRequest[] = [];
  const chosen = new Set<number>();
  for (let holders = 1; holders < buckets.length && totalFree > 0; holders++) {
    const bucket = buckets[holders];
    if (bucket === undefined) continue;
    // Draw the bucket in random order, lazily: usually only a slot or two is free.
    for (let left = bucket.length; left > 0 && totalFree > 0; left--) {
      const k = random.int(0, left);
      const piece = bucket[k]!;
      bucket[k] = bucket[left - 1]!;
      const p = pickPeer(input, free, piece, undefined);
      if (p < 0) continue;
      out.push({ peer: peers[p]!.id, piece });
      chosen.add(piece);
      free[p]!--;
      totalFree--;
    }
  }

  if (totalFree > 0 && inEndgame(input, chosen)) addDuplicates(input, free, chosen, out);
  return out;
}

/** Per piece, how many usable peers hold it (0 for a piece we hold). */
function countHolders(input: PieceChoiceInput): Uint16Array | Uint32Array {
  const { pieceCount, have, peers } = input;
  const counts = peers.length < 0xffff ? new Uint16Array(pieceCount) : new Uint32Array(pieceCount);
  for (const peer of peers) {
    if (peer.failed === true) continue;
    const bf = peer.have;
    for (let byte = 0; byte < bf.length; byte++) {
      let bits = bf[byte]! & ~have[byte]! & 0xff;
      while (bits !== 0) {
        const top = 31 - Math.clz32(bits); // 7 = piece byte*8, 0 = piece byte*8+7
        const piece = byte * 8 + (7 - top);
        if (piece < pieceCount) counts[piece]!++;
        bits &= ~(1 << top);
      }
    }
  }
  return counts;
}

/**
 * A peer with a free slot that holds `piece` and has not been asked for it: the one with the most
 * free slots (spreading our requests over our peers), ties at random. -1 when none.
 */
function pickPeer(input: PieceChoiceInput, free: number[], piece: number, alreadyAsked: ReadonlySet<string> | undefined): number {
  let best = -1;
  let ties = 0;
  for (let p = 0; p < input.peers.length; p++) {
    const slots = free[p]!;
    if (slots === 0) continue;
    const peer = input.peers[p]!;
    if (!hasBit(peer.have, piece) || alreadyAsked?.has(peer.id) === true) continue;
    if (best < 0 || slots > free[best]!) {
      best = p;
      ties = 1;
    } else if (slots === free[best]!) {
      ties++;
      if (input.random.int(0, ties) === 0) best = p;
    }
  }
  return best;
}

/** Endgame when asked for, or ("auto") when every missing piece is in flight or was just asked for. */
function inEndgame(input: PieceChoiceInput, chosen: ReadonlySet<number>): boolean {
  if (input.endgame === false) return false;
  if (input.endgame === true) return true;
  const missing = input.pieceCount - countBits(input.have);
  if (missing === 0) return false;
  let outstanding = chosen.size;
  for (const [piece, peers] of input.inFlight) {
    if (peers.size > 0 && !chosen.has(piece) && piece >= 0 && piece < input.pieceCount && !hasBit(input.have, piece)) outstanding++;
  }
  return outstanding === missing;
}

/**
 * One more request for each outstanding piece, the pieces asked of the fewest peers first (ties at
 * random), each to a holder not yet asked for it. One per piece per call: the caller calls again on
 * every completion, so the duplicates grow only while pieces stay outstanding.
 */
function addDuplicates(input: PieceChoiceInput, free: number[], chosen: ReadonlySet<number>, out: PieceRequest[]): void {
  const byPiece = new Map<number, Set<string>>();
  for (const [piece, peers] of input.inFlight) {
    if (peers.size > 0 && piece >= 0 && piece < input.pieceCount && !hasBit(input.have, piece)) byPiece.set(piece, new Set(peers));
  }
  for (const r of out) if (chosen.has(r.piece)) (byPiece.get(r.piece) ?? byPiece.set(r.piece, new Set()).get(r.piece)!).add(r.peer);
  const pending = [...byPiece.entries()].map(([piece, peers]) => ({ piece, peers, key: input.random.float() }));
  pending.sort((a, b) => a.peers.size - b.peers.size || a.key - b.key);
  let totalFree = free.reduce((a, b) => a + b, 0);
  for (const { piece, peers } of pending) {
    if (totalFree === 0) return;
    const p = pickPeer(input, free, piece, peers);
    if (p < 0) continue;
    out.push({ peer: input.peers[p]!.id, piece });
    free[p]!--;
    totalFree--;
  }
}
