// Simulator throughput: seeds per minute of 5-node runs under the full fault schedule. Prints JSON.
// Usage: node --import tsx scripts/bench/sim-seeds.ts [seedCount=60]
import { performance } from "node:perf_hooks";
import { runSeeds } from "../../cluster-sim/batch.js";

const seedCount = Number(process.argv[2] ?? 60);
if (!Number.isInteger(seedCount) || seedCount < 1) throw new RangeError(`seed count must be a positive integer, got ${process.argv[2]}`);
const firstSeed = 100_001;
const startedMs = performance.now();
const summary = await runSeeds({ firstSeed, seedCount, nodeCounts: [5] });
const wallMs = performance.now() - startedMs;
process.stdout.write(
  JSON.stringify({
    bench: "sim-seeds",
    nodes: 5,
    seeds: seedCount,
    passed: summary.passed,
    failed: summary.failed.map((r) => ({ seed: r.seed, violation: r.violation })),
    wallMs: Math.round(wallMs),
    seedsPerMinute: Math.round((seedCount / wallMs) * 60_000),
    eventsPerSecond: Math.round(summary.events / (wallMs / 1000)),
    opsPerSeed: Math.round(summary.ops / seedCount),
    electionsPerSeed: +(summary.elections / seedCount).toFixed(2),
    crashesPerSeed: +(summary.crashes / seedCount).toFixed(2),
  }) + "\n",
);
