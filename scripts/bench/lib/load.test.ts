// Checks the closed-loop load generator: percentile accuracy, closed-loop rate, error counting and the
// bounded drain. Lives beside the benchmark code (not in the CI suite, which collects test/ only).
// Run: node --import tsx --test --test-reporter=tap scripts/bench/lib/load.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { ShoalError } from "../../../src/base/errors.js";
import { SeededRandom } from "../../../src/base/random.js";
import { LatencyHistogram, runLoad } from "./load.js";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test("histogram percentiles stay within 0.5 % of the exact ones over a wide spread of latencies", () => {
  const random = new SeededRandom(42);
  const histogram = new LatencyHistogram();
  const samples = new Float64Array(200_000);
  for (let i = 0; i < samples.length; i++) {
    // Log-uniform from 10 µs to 10 s, like a latency distribution with a long tail.
    samples[i] = 0.01 * Math.pow(10, 6 * random.float());
    histogram.record(samples[i]!);
  }
  samples.sort();
  for (const p of [1, 50, 90, 99, 99.9]) {
    const exact = samples[Math.ceil((p / 100) * samples.length) - 1]!;
    const approx = histogram.percentileMs(p);
    assert.ok(Math.abs(approx - exact) / exact < 0.005, `p${p}: ${approx} vs exact ${exact}`);
  }
  assert.equal(histogram.percentileMs(100), samples[samples.length - 1]);
  assert.equal(histogram.count, samples.length);
  assert.equal(new LatencyHistogram().percentileMs(50), 0);
  assert.throws(() => histogram.record(-1), (e: unknown) => e instanceof ShoalError && e.code === "INVALID_ARGUMENT");
  assert.throws(() => histogram.percentileMs(101), (e: unknown) => e instanceof ShoalError && e.code === "INVALID_ARGUMENT");
});

test("a closed loop of 4 workers on a 20 ms operation runs at about 200 ops/s and stops by itself", async () => {
  const seen = new Set<number>();
  const t0 = performance.now();
  const result = await runLoad({
    concurrency: 4,
    durationMs: 1000,
    warmupMs: 200,
    op: async (worker, seq) => {
      seen.add(worker);
      assert.ok(seq >= 0);
      await sleep(20);
    },
  });
  const elapsedMs = performance.now() - t0;
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3]);
  assert.equal(result.errors, 0);
  assert.equal(result.abandoned, 0);
  // Upper bound is exact (at most 4 in flight, each ≥ 20 ms); the lower bound allows a busy machine.
  assert.ok(result.opsPerSecond <= 205 && result.opsPerSecond >= 60, `opsPerSecond ${result.opsPerSecond}`);
  assert.ok(result.p50Ms >= 19.5 && result.p50Ms <= result.p99Ms && result.p99Ms <= result.maxMs, JSON.stringify(result));
  assert.ok(elapsedMs < 1200 + 1000, `took ${elapsedMs} ms`);
});

test("failures are counted apart from successes, with the first error's message", async () => {
  const result = await runLoad({
    concurrency: 2,
    durationMs: 300,
    warmupMs: 0,
    errorBackoffMs: 0,
    op: async (_worker, seq) => {
      await sleep(2);
      if (seq % 2 === 1) throw new Error(`boom ${seq}`);
    },
  });
  assert.ok(result.errors > 0 && result.ops > 0, JSON.stringify(result));
  assert.ok(Math.abs(result.errors - result.ops) <= 4, `alternating ops and errors: ${result.ops} vs ${result.errors}`);
  assert.match(result.firstError ?? "", /^boom \d+$/);
});

test("an operation that never completes does not hang the run past the drain timeout", async () => {
  const t0 = performance.now();
  const result = await runLoad({ concurrency: 3, durationMs: 100, warmupMs: 0, drainTimeoutMs: 200, op: () => new Promise<void>(() => {}) });
  assert.ok(performance.now() - t0 < 1500);
  assert.equal(result.ops, 0);
  assert.equal(result.abandoned, 3);
  assert.equal(result.opsPerSecond, 0);
});

test("bad options are refused with INVALID_ARGUMENT", async () => {
  const op = async (): Promise<void> => {};
  for (const bad of [{ concurrency: 0 }, { concurrency: 1.5 }, { durationMs: 0 }, { warmupMs: -1 }, { durationMs: Number.NaN }]) {
    await assert.rejects(
      runLoad({ concurrency: 1, durationMs: 10, warmupMs: 0, op, ...bad }),
      (e: unknown) => e instanceof ShoalError && e.code === "INVALID_ARGUMENT",
      JSON.stringify(bad),
    );
  }
});
