// Benchmark: 3 RaftNodes in one process over the loopback transport, each with its own encrypted
// LevelDB (every Ready persisted in one fsynced batch). Committed proposals/s and latency for 1 and
// 64 concurrent proposers. Prints one JSON object.
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { TestCluster, utf8 } from "../../test/raftnode/harness.js";

const durationMs = Number(process.env.BENCH_MS ?? 3000);
const payload = "x".repeat(256);

async function run(cluster: TestCluster, proposers: number): Promise<Record<string, number>> {
  const leader = await cluster.waitForLeader(10_000);
  const latenciesMs: number[] = [];
  const until = performance.now() + durationMs;
  let committed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: proposers }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        await leader.propose(utf8(payload), { timeoutMs: 10_000 });
        latenciesMs.push(performance.now() - t0);
        committed++;
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  latenciesMs.sort((a, b) => a - b);
  const pct = (p: number): number => Number((latenciesMs[Math.min(latenciesMs.length - 1, Math.floor(p * latenciesMs.length))] ?? 0).toFixed(3));
  return { proposers, committed, committedPerSec: Math.round(committed / elapsedS), p50Ms: pct(0.5), p99Ms: pct(0.99) };
}

/** The disk's own fsync latency, printed beside the results: it bounds everything above. */
function fsyncBaseline(): { fsyncP50Ms: number; fsyncP99Ms: number } {
  const dir = mkdtempSync(join(tmpdir(), "shoal-fsync-"));
  const fd = openSync(join(dir, "probe"), "w");
  const samples: number[] = [];
  const block = Buffer.alloc(512, 7);
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    writeSync(fd, block);
    fsyncSync(fd);
    samples.push(performance.now() - t0);
  }
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
  samples.sort((a, b) => a - b);
  return { fsyncP50Ms: Number(samples[100]!.toFixed(3)), fsyncP99Ms: Number(samples[198]!.toFixed(3)) };
}

const cluster = new TestCluster({ tickMs: 100, electionTicks: 10, snapshotIntervalEntries: 10_000, logEntriesForSlowFollowers: 1000 });
try {
  await cluster.bootstrap([1n, 2n, 3n]);
  const one = await run(cluster, 1);
  const many = await run(cluster, 64);
  console.log(
    JSON.stringify({
      bench: "raftnode-durable",
      nodes: 3,
      payloadBytes: payload.length,
      fsync: true,
      disk: fsyncBaseline(),
      durationMsPerCase: durationMs,
      oneProposer: one,
      sixtyFourProposers: many,
    }),
  );
} finally {
  await cluster.close();
}
