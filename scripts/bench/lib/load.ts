// Closed-loop load generator for the write benchmarks: N workers each issue one operation, wait for
// it, and issue the next, so throughput and latency are measured the way etcd's `benchmark` tool does.
// Latencies go into a log-bucketed histogram (bounded memory, < 0.5 % relative error).
import { performance } from "node:perf_hooks";
import { ShoalError } from "../../../src/base/errors.js";

export interface LoadOptions {
  /** Number of workers, each with at most one operation in flight. */
  concurrency: number;
  /** Length of the measured window after the warm-up. */
  durationMs: number;
  /** Operations completing during the warm-up are issued but not counted. */
  warmupMs: number;
  /** One operation; `seq` counts up from 0 per worker. A rejection counts as an error. */
  op: (workerIndex: number, seq: number) => Promise<void>;
  /** After the window closes, how long to wait for in-flight operations before giving up on them. */
  drainTimeoutMs?: number;
  /** A worker whose operation fails waits this long before its next one, so a dead server is not spun on. */
  errorBackoffMs?: number;
}

export interface LoadResult {
  concurrency: number;
  /** Operations that completed successfully inside the measured window. */
  ops: number;
  /** Operations that failed inside the measured window. */
  errors: number;
  opsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The measured window (completions are counted by timestamp, so this is durationMs). */
  measuredMs: number;
  /** Operations still in flight when the drain timeout expired (0 normally). */
  abandoned: number;
  /** Every successful operation of the run, warm-up and drain included: divide CPU measured around the whole run by this. */
  completedOps: number;
  /** The first error's message, to tell a misconfiguration from overload. */
  firstError?: string;
}

const MAX_CONCURRENCY = 100_000;

/**
 * Log-bucketed latency histogram: bucket i holds values in [min·g^i, min·g^(i+1)) with g = 1.005, so
 * 1 µs .. 1000 s takes ~4,200 buckets whatever the sample count; a percentile is reported as its
 * bucket's geometric midpoint (error below 0.25 %), and p100 as the exact maximum.
 */
export class LatencyHistogram {
  private static readonly MIN_MS = 0.001;
  private static readonly MAX_MS = 1_000_000;
  private static readonly GROWTH = 1.005;
  private static readonly LOG_GROWTH = Math.log(LatencyHistogram.GROWTH);
  private readonly counts: Float64Array;
  private total = 0;
  private maxSeenMs = 0;

  constructor() {
    const buckets = Math.ceil(Math.log(LatencyHistogram.MAX_MS / LatencyHistogram.MIN_MS) / LatencyHistogram.LOG_GROWTH) + 1;
    this.counts = new Float64Array(buckets);
  }

  get count(): number {
    return this.total;
  }

  get maxMs(): number {
    return this.maxSeenMs;
  }

  record(valueMs: number): void {
    if (!Number.isFinite(valueMs) || valueMs < 0) throw new ShoalError("INVALID_ARGUMENT", `latency ${valueMs} ms is not a finite non-negative number`);
    const clamped = Math.min(Math.max(valueMs, LatencyHistogram.MIN_MS), LatencyHistogram.MAX_MS);
    const index = Math.min(this.counts.length - 1, Math.floor(Math.log(clamped / LatencyHistogram.MIN_MS) / LatencyHistogram.LOG_GROWTH));
    this.counts[index]! += 1;
    this.total += 1;
    if (valueMs > this.maxSeenMs) this.maxSeenMs = valueMs;
  }

  /** The value at percentile `p` (0..100): the smallest bucket whose cumulative count reaches p %. 0 when empty. */
  percentileMs(p: number): number {
    if (!(p >= 0 && p <= 100)) throw new ShoalError("INVALID_ARGUMENT", `percentile ${p} is outside 0..100`);
    if (this.total === 0) return 0;
    if (p === 100) return this.maxSeenMs;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const midpoint = LatencyHistogram.MIN_MS * Math.pow(LatencyHistogram.GROWTH, i + 0.5);
        // The top bucket's midpoint can exceed what was seen; never report above the true max.
        return Math.min(midpoint, this.maxSeenMs);
      }
    }
    return this.maxSeenMs;
  }
}

function round3(valueMs: number): number {
  return Math.round(valueMs * 1000) / 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs the closed loop for warmupMs + durationMs, waits for in-flight operations (bounded), and reports. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { concurrency, durationMs, warmupMs, op } = options;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const errorBackoffMs = options.errorBackoffMs ?? 10;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new ShoalError("INVALID_ARGUMENT", `concurrency must be an integer in 1..${MAX_CONCURRENCY}, got ${concurrency}`);
  }
  for (const [name, value] of [["durationMs", durationMs], ["warmupMs", warmupMs], ["drainTimeoutMs", drainTimeoutMs], ["errorBackoffMs", errorBackoffMs]] as const) {
    if (!Number.isFinite(value) || value < 0) throw new ShoalError("INVALID_ARGUMENT", `${name} must be a finite number >= 0, got ${value}`);
  }
  if (durationMs === 0) throw new ShoalError("INVALID_ARGUMENT", "durationMs must be > 0 to measure anything");

  const histogram = new LatencyHistogram();
  let ops = 0;
  let completedOps = 0;
  let errors = 0;
  let inFlight = 0;
  let firstError: string | undefined;
  const startMs = performance.now();
  const measureFromMs = startMs + warmupMs;
  const stopAtMs = measureFromMs + durationMs;

  const worker = async (workerIndex: number): Promise<void> => {
    for (let seq = 0; performance.now() < stopAtMs; seq++) {
      const t0 = performance.now();
      let failed = false;
      inFlight++;
      try {
        await op(workerIndex, seq);
      } catch (err) {
        failed = true;
        if (firstError === undefined) firstError = err instanceof Error ? err.message : String(err);
      } finally {
        inFlight--;
      }
      const t1 = performance.now();
      if (!failed) completedOps++;
      // Count completions inside the window: in a steady closed loop this equals the issue rate.
      if (t1 >= measureFromMs && t1 < stopAtMs) {
        if (failed) errors++;
        else {
          ops++;
          histogram.record(t1 - t0);
        }
      }
      if (failed && errorBackoffMs > 0) await sleep(errorBackoffMs);
    }
  };

  const workers = Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
  // Workers stop issuing at stopAtMs; a hung operation must not hang the benchmark, so the drain is bounded.
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    workers.then(() => true),
    new Promise<boolean>((resolve) => {
      drainTimer = setTimeout(() => resolve(false), warmupMs + durationMs + drainTimeoutMs);
    }),
  ]);
  clearTimeout(drainTimer);
  // Completions are counted by their timestamp inside [measureFromMs, stopAtMs), so the window is
  // exactly durationMs of wall time even when timers run late.
  const measuredMs = durationMs;
  return {
    concurrency,
    ops,
    errors,
    opsPerSecond: measuredMs > 0 ? Math.round((ops / measuredMs) * 1000 * 10) / 10 : 0,
    p50Ms: round3(histogram.percentileMs(50)),
    p90Ms: round3(histogram.percentileMs(90)),
    p99Ms: round3(histogram.percentileMs(99)),
    maxMs: round3(histogram.maxMs),
    measuredMs: round3(measuredMs),
    abandoned: drained ? 0 : inFlight,
    completedOps,
    ...(firstError !== undefined ? { firstError } : {}),
  };
}
