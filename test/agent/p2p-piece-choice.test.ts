import assert from "node:assert/strict";
import { test } from "node:test";
import { hasBit, newBitfield, setBit } from "../../src/base/bitfield.js";
import { isShoalError } from "../../src/base/errors.js";
import { SeededRandom, type Random } from "../../src/base/random.js";
import { choosePieces, type PieceChoiceInput, type PieceChoicePeer } from "../../src/agent/p2p/piece-choice.js";

function bits(n: number, pieces: Iterable<number>): Uint8Array {
  const bf = newBitfield(n);
  for (const i of pieces) setBit(bf, i);
  return bf;
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

function input(over: Partial<PieceChoiceInput> & Pick<PieceChoiceInput, "pieceCount" | "peers">): PieceChoiceInput {
  return {
    have: newBitfield(over.pieceCount),
    inFlight: new Map(),
    maxInFlightPerPeer: 2,
    endgame: false,
    random: new SeededRandom(1),
    ...over,
  };
}

/** A random situation: some pieces held, some in flight, peers with random bitfields, some failed. */
function randomSituation(random: Random): PieceChoiceInput {
  const pieceCount = random.int(1, 80);
  const have = bits(pieceCount, range(0, pieceCount).filter(() => random.float() < 0.3));
  const peers: PieceChoicePeer[] = range(0, random.int(0, 9)).map((i) => ({
    id: `p${i}`,
    have: bits(pieceCount, range(0, pieceCount).filter(() => random.float() < 0.5)),
    inFlight: random.int(0, 4),
    ...(random.float() < 0.2 ? { failed: true } : {}),
  }));
  const inFlight = new Map<number, Set<string>>();
  for (const piece of range(0, pieceCount)) {
    if (hasBit(have, piece) || random.float() > 0.2 || peers.length === 0) continue;
    inFlight.set(piece, new Set([peers[random.int(0, peers.length)]!.id]));
  }
  const endgame = ([false, true, "auto"] as const)[random.int(0, 3)]!;
  return { pieceCount, have, inFlight, peers, maxInFlightPerPeer: random.int(1, 5), endgame, random };
}

test("over random situations: only pieces we lack, only from usable holders, within each peer's slots, no duplicates outside endgame", () => {
  const random = new SeededRandom(42);
  let requests = 0;
  let duplicates = 0;
  for (let round = 0; round < 2000; round++) {
    const inp = randomSituation(random);
    const out = choosePieces(inp);
    requests += out.length;
    const perPeer = new Map<string, number>();
    const pairs = new Set<string>();
    for (const { peer, piece } of out) {
      const p = inp.peers.find((x) => x.id === peer);
      assert.ok(p !== undefined, `unknown peer ${peer}`);
      assert.ok(p.failed !== true, "asked a failed peer");
      assert.ok(hasBit(p.have, piece), `asked ${peer} for piece ${piece} it does not hold`);
      assert.ok(!hasBit(inp.have, piece), `asked for piece ${piece} that we hold`);
      assert.ok(!(inp.inFlight.get(piece)?.has(peer) ?? false), "asked the same peer twice for one piece");
      assert.ok(!pairs.has(`${peer}/${piece}`), "the same request twice in one answer");
      pairs.add(`${peer}/${piece}`);
      perPeer.set(peer, (perPeer.get(peer) ?? 0) + 1);
    }
    for (const p of inp.peers) assert.ok((perPeer.get(p.id) ?? 0) + p.inFlight <= Math.max(p.inFlight, inp.maxInFlightPerPeer), `peer ${p.id} over its slots`);
    const pieces = out.map((r) => r.piece);
    const dup = pieces.length - new Set(pieces).size + pieces.filter((x) => inp.inFlight.has(x)).length;
    if (inp.endgame === false) assert.equal(dup, 0, "a duplicate request outside endgame");
    duplicates += dup;
  }
  // The loop must exercise both sides.
  assert.ok(requests > 1000 && duplicates > 50, `requests ${requests}, duplicates ${duplicates}`);
});

test("rarest first: the piece one peer holds is asked before those every peer holds", () => {
  const n = 16;
  const peers = [
    { id: "a", have: bits(n, range(0, n)), inFlight: 0 },
    { id: "b", have: bits(n, range(0, n).filter((i) => i !== 11)), inFlight: 0 },
    { id: "c", have: bits(n, range(0, n).filter((i) => i !== 11 && i !== 5)), inFlight: 0 },
  ];
  for (let seed = 1; seed <= 20; seed++) {
    const out = choosePieces(input({ pieceCount: n, peers, maxInFlightPerPeer: 1, random: new SeededRandom(seed) }));
    assert.equal(out.length, 3);
    assert.deepEqual(out[0], { peer: "a", piece: 11 });
    assert.equal(out[1]!.piece, 5);
    assert.ok(out[1]!.peer === "b", "piece 5 goes to the one of its holders still free");
  }
});

test("ties are broken at random: different seeds spread a node's first requests, one seed replays", () => {
  const n = 64;
  const peers = [{ id: "s", have: bits(n, range(0, n)), inFlight: 0 }];
  const first = new Set<number>();
  for (let seed = 1; seed <= 30; seed++) first.add(choosePieces(input({ pieceCount: n, peers, maxInFlightPerPeer: 1, random: new SeededRandom(seed) }))[0]!.piece);
  assert.ok(first.size > 15, `only ${first.size} distinct first pieces over 30 seeds`);
  const a = choosePieces(input({ pieceCount: n, peers, maxInFlightPerPeer: 4, random: new SeededRandom(9) }));
  const b = choosePieces(input({ pieceCount: n, peers, maxInFlightPerPeer: 4, random: new SeededRandom(9) }));
  assert.deepEqual(a, b);
});

test("requests spread over peers with free slots; a failed peer and a full peer get none", () => {
  const n = 32;
  const all = bits(n, range(0, n));
  const out = choosePieces(
    input({
      pieceCount: n,
      maxInFlightPerPeer: 3,
      peers: [
        { id: "a", have: all, inFlight: 0 },
        { id: "b", have: all, inFlight: 0 },
        { id: "bad", have: all, inFlight: 0, failed: true },
        { id: "full", have: all, inFlight: 3 },
      ],
    }),
  );
  assert.equal(out.length, 6);
  assert.deepEqual(out.map((r) => r.peer).sort(), ["a", "a", "a", "b", "b", "b"]);
  assert.equal(new Set(out.map((r) => r.piece)).size, 6);
});

test("nothing to ask: all held, nobody holds what we lack, or no free slot", () => {
  const n = 10;
  assert.deepEqual(choosePieces(input({ pieceCount: n, have: bits(n, range(0, n)), peers: [{ id: "a", have: bits(n, range(0, n)), inFlight: 0 }], endgame: true })), []);
  assert.deepEqual(choosePieces(input({ pieceCount: n, have: bits(n, range(0, 5)), peers: [{ id: "a", have: bits(n, range(0, 5)), inFlight: 0 }], endgame: "auto" })), []);
  assert.deepEqual(choosePieces(input({ pieceCount: n, peers: [{ id: "a", have: bits(n, range(0, n)), inFlight: 2 }] })), []);
});

test("auto endgame: once every missing piece is outstanding, each is also asked of another holder, never of the same one", () => {
  const n = 8;
  const have = bits(n, range(0, 6)); // 6 and 7 missing
  const all = bits(n, range(0, n));
  const peers = [
    { id: "a", have: all, inFlight: 1 },
    { id: "b", have: all, inFlight: 1 },
    { id: "c", have: all, inFlight: 0 },
  ];
  const inFlight = new Map([
    [6, new Set(["a"])],
    [7, new Set(["b"])],
  ]);
  const out = choosePieces(input({ pieceCount: n, have, peers, inFlight, endgame: "auto" }));
  assert.equal(out.length, 2);
  for (const r of out) assert.ok(!inFlight.get(r.piece)!.has(r.peer));
  assert.deepEqual(out.map((r) => r.piece).sort(), [6, 7]);
  // The unasked piece comes first; once it is asked every missing piece is outstanding, and then
  // the other one goes to its second holder in the same answer.
  const mixed = choosePieces(input({ pieceCount: n, have, peers: [{ id: "a", have: all, inFlight: 1 }, { id: "c", have: bits(n, [6]), inFlight: 1 }], inFlight: new Map([[6, new Set(["a"])]]), endgame: "auto" }));
  assert.deepEqual(mixed, [{ peer: "a", piece: 7 }, { peer: "c", piece: 6 }]);
  // With endgame off the same situation asks only for the unasked piece.
  assert.deepEqual(choosePieces(input({ pieceCount: n, have, peers: [{ id: "a", have: all, inFlight: 1 }, { id: "c", have: bits(n, [6]), inFlight: 1 }], inFlight: new Map([[6, new Set(["a"])]]) })), [{ peer: "a", piece: 7 }]);
});

test("auto endgame does not start while a missing piece is held by no peer (a seed still pulling)", () => {
  const n = 8;
  const have = bits(n, range(0, 5)); // 5, 6, 7 missing; no one holds 7 yet
  const peers = [
    { id: "a", have: bits(n, range(0, 7)), inFlight: 1 },
    { id: "b", have: bits(n, range(0, 7)), inFlight: 1 },
  ];
  const inFlight = new Map([
    [5, new Set(["a"])],
    [6, new Set(["b"])],
  ]);
  assert.deepEqual(choosePieces(input({ pieceCount: n, have, peers, inFlight, endgame: "auto" })), []);
  assert.equal(choosePieces(input({ pieceCount: n, have, peers, inFlight, endgame: true })).length, 2);
});

test("a bitfield of the wrong length is refused, not read past its end", () => {
  const bad = () => choosePieces(input({ pieceCount: 20, peers: [{ id: "a", have: newBitfield(8), inFlight: 0 }] }));
  assert.throws(bad, (e: unknown) => isShoalError(e, "INVALID_ARGUMENT") && /peer a/.test((e as Error).message));
  assert.throws(() => choosePieces(input({ pieceCount: 20, have: newBitfield(3), peers: [] })), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT"));
});
