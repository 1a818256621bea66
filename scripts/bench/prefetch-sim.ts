// Benchmark: the P2P prefetch in the bandwidth simulation (cluster-sim/prefetch.ts) — 1 GiB to 100
// and to 1,000 nodes of one zone (B = 1 Gbit/s up and down per node, RTT 1 ms, 4 MiB pieces, the
// registry at 10 Gbit/s), with the real planner and piece choice. Prints one JSON object: per size,
// p50/p99/max completion against T_pipe = S/B + ceil(log2(N+1))·(c/B + RTT), origin and peer
// bytes, and the wall time of the run; against the targets of issue 10 (scripts/bench/targets.json
// "prefetchSim": p50 <= 1.15 × T_pipe, p99 <= 1.5 × T_pipe).
// Run: nice -n 10 node --import tsx scripts/bench/prefetch-sim.ts [--seed 1] [--nodes 1000] [--size-mib 1024]
import { performance } from "node:perf_hooks";
import { argNumber, argValue } from "./lib/args.js";
import { runPrefetchSim } from "../../cluster-sim/prefetch.js";

const MIB = 1024 * 1024;
const TARGET_P50_OVER_TPIPE = 1.15;
const TARGET_P99_OVER_TPIPE = 1.5;

const seed = argNumber("--seed", 1);
const sizeBytes = argNumber("--size-mib", 1024) * MIB;
const sizes = argValue("--nodes") !== undefined ? [argNumber("--nodes", 1000)] : [100, 1000];
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

const runs = sizes.map((nodes) => {
  const startedMs = performance.now();
  const r = runPrefetchSim({ seed, zones: { a: nodes }, blobBytes: sizeBytes, pieceBytes: 4 * MIB, nodeBytesPerMs: 125_000, originBytesPerMs: 1_250_000, rttMs: 1 });
  const wallMs = Math.round(performance.now() - startedMs);
  const s = r.stats;
  return {
    nodes,
    ok: r.ok,
    ...(r.violation !== undefined ? { violation: r.violation } : {}),
    p50Ms: Math.round(s.p50Ms),
    p99Ms: Math.round(s.p99Ms),
    maxMs: Math.round(s.maxMs),
    tPipeMs: Math.round(s.tPipeMs),
    p50OverTPipe: round3(s.p50Ms / s.tPipeMs),
    p99OverTPipe: round3(s.p99Ms / s.tPipeMs),
    originBytes: s.originBytes,
    originCopies: round3(s.originBytes / sizeBytes),
    peerBytes: s.peerBytes,
    wastedBytes: s.wastedBytes,
    events: s.events,
    wallMs,
    meetsTarget: r.ok && s.p50Ms <= TARGET_P50_OVER_TPIPE * s.tPipeMs && s.p99Ms <= TARGET_P99_OVER_TPIPE * s.tPipeMs,
  };
});

process.stdout.write(
  JSON.stringify(
    {
      bench: "prefetch-sim",
      seed,
      sizeBytes,
      model: { nodeBitsPerSecond: 1e9, originBitsPerSecond: 1e10, rttMs: 1, pieceBytes: 4 * MIB },
      target: { p50OverTPipe: TARGET_P50_OVER_TPIPE, p99OverTPipe: TARGET_P99_OVER_TPIPE },
      runs,
    },
    null,
    2,
  ) + "\n",
);
if (runs.some((r) => !r.ok)) process.exitCode = 1;
