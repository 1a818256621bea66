// The prefetch bandwidth simulation at CI size (cluster-sim/prefetch.ts): two zones, a blob of a
// few pieces with a short last one, revocations and a corrupt peer; every checker passes on a run
// of seeds, each checker fails on a planted bug, and a seed replays exactly. No figure is asserted
// against a speed target (scripts/bench/prefetch-sim.ts measures those); completion times are only
// bounded far above T_pipe as a liveness guard.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SeededRandom } from "../src/base/random.js";
import { planPrefetch } from "../src/manager/prefetch/plan.js";
import { runPrefetchSim, type PrefetchSimOptions } from "./prefetch.js";

const MIB = 1024 * 1024;

function options(seed: number, over: Partial<PrefetchSimOptions> = {}): PrefetchSimOptions {
  return {
    seed,
    zones: { a: 14, b: 5 },
    blobBytes: 40 * MIB + 12_345,
    pieceBytes: 4 * MIB,
    nodeBytesPerMs: 125_000, // 1 Gbit/s
    originBytesPerMs: 1_250_000,
    rttMs: 1,
    ...over,
  };
}

test("seeds of two zones with revocations and a corrupt peer: all checks pass, every eligible node completes", () => {
  const failures: string[] = [];
  let refused = 0;
  let replans = 0;
  for (let seed = 1; seed <= 12; seed++) {
    // Node 3 (zone a) is revoked early, node 16 (zone b) mid-way; node 6 serves corrupt pieces.
    const r = runPrefetchSim(options(seed, { revoke: [{ node: 3, atMs: 40 }, { node: 16, atMs: 200 }], corrupt: [6] }));
    if (!r.ok) failures.push(`seed ${seed}: ${r.violation}`);
    refused += r.stats.refusedRequests;
    replans += r.stats.replans;
    assert.ok(r.stats.maxMs < 20 * r.stats.tPipeMs, `seed ${seed} took ${r.stats.maxMs} ms (liveness guard)`);
    assert.ok(r.stats.originBytesByZone.a! >= 40 * MIB && r.stats.originBytesByZone.b! >= 40 * MIB, "each zone pulls its own copy");
  }
  assert.deepEqual(failures, []);
  // The faults took effect: the revoked nodes kept asking and were refused, and the manager replanned.
  assert.ok(refused > 0, "no request was refused");
  assert.ok(replans >= 12 * 3, `only ${replans} plans`);
});

test("without faults one copy per seed comes from the origin and the rest from peers", () => {
  const r = runPrefetchSim(options(5, { zones: { a: 40 } }));
  assert.ok(r.ok, r.violation);
  assert.equal(r.stats.nodes, 40);
  // 40 targets: defaultSeedsFor gives 2 seeds, each pulling the blob once.
  assert.equal(r.stats.originBytes, 2 * (40 * MIB + 12_345));
  assert.ok(r.stats.peerBytes >= 38 * (40 * MIB + 12_345));
});

test("a seed revoked mid-pull is replaced: the new seed pulls what it lacks, every other node completes", () => {
  // The simulation's first plan draws from a fresh SeededRandom(seed): the same call finds its seed.
  const targets = Array.from({ length: 14 }, (_, i) => ({ nodeId: `a${i}`, zone: "a", addr: `a${i}`, revoked: false, down: false, excluded: false, load: 0 }));
  const seedId = planPrefetch({ jobId: "job", targets, random: new SeededRandom(3) }).nodes.find((n) => n.role === "seed")!.nodeId;
  const r = runPrefetchSim(options(3, { zones: { a: 14 }, revoke: [{ node: Number(seedId.slice(1)), atMs: 150 }] }));
  assert.ok(r.ok, r.violation);
  const size = 40 * MIB + 12_345;
  // The first seed got part of the blob before it was cut off; the replacement pulled the rest (and
  // what it had not got from peers), so the origin sent more than one copy and at most two.
  assert.ok(r.stats.originBytesByZone.a! > size && r.stats.originBytesByZone.a! <= 2 * size, String(r.stats.originBytesByZone.a));
});

test("a seed replays exactly", () => {
  const a = runPrefetchSim(options(9, { revoke: [{ node: 2, atMs: 100 }], corrupt: [4] }));
  const b = runPrefetchSim(options(9, { revoke: [{ node: 2, atMs: 100 }], corrupt: [4] }));
  assert.deepEqual(a, b);
});

test("the checks can fail: each planted bug is caught by its checker", () => {
  const corrupt = runPrefetchSim(options(1, { corrupt: [2, 6], planted: { skipPieceVerification: true } }));
  assert.equal(corrupt.ok, false);
  assert.match(corrupt.violation!, /committed a corrupt copy/);
  const revoked = runPrefetchSim(options(1, { revoke: [{ node: 3, atMs: 40 }], planted: { serveRevoked: true } }));
  assert.equal(revoked.ok, false);
  assert.match(revoked.violation!, /revoked a3 received piece/);
  const zones = runPrefetchSim(options(1, { planted: { crossZoneCandidate: true } }));
  assert.equal(zones.ok, false);
  assert.match(zones.violation!, /across zones/);
  // A model that cannot finish in its time budget fails the completion check.
  const slow = runPrefetchSim(options(1, { maxVirtualMs: 100 }));
  assert.equal(slow.ok, false);
  assert.match(slow.violation!, /did not complete/);
});
