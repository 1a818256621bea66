// Benchmark: durable raft log appends (one sync batch per save, with a hard state) for 1, 16 and
// 64 entries per save, next to the disk's own sync latency measured directly (append 256 B, then
// fsync, or fdatasync as LevelDB uses for its write-ahead log), which bounds saves per second.
// Prints JSON.
import { closeSync, fdatasyncSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, RaftLogStorage, type RaftLogEntry } from "../../src/storage/index.js";
import { percentile } from "./lib/stats.js";

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const ENTRY_BYTES = 256;

/** A percentile in ms, to the microsecond. */
function percentileMs(samplesMs: number[], p: number): number {
  return Math.round(percentile(samplesMs, p) * 1000) / 1000;
}

function measureSync(sync: (fd: number) => void): { samples: number; p50Ms: number; p99Ms: number; perSec: number } {
  const dir = mkdtempSync(join(tmpdir(), "shoal-bench-fsync-"));
  const fd = openSync(join(dir, "probe"), "w");
  const block = randomBytes(256);
  const samples: number[] = [];
  const start = performance.now();
  while (performance.now() - start < DURATION_MS) {
    const t0 = performance.now();
    writeSync(fd, block);
    sync(fd);
    samples.push(performance.now() - t0);
  }
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
  samples.sort((a, b) => a - b);
  const total = samples.reduce((a, b) => a + b, 0);
  return { samples: samples.length, p50Ms: percentileMs(samples, 50), p99Ms: percentileMs(samples, 99), perSec: Math.round(samples.length / (total / 1000)) };
}

async function measureLog(entriesPerSave: number) {
  const dir = mkdtempSync(join(tmpdir(), "shoal-bench-raftlog-"));
  const key = DataKey.generate();
  const store = await EncryptedStore.open(dir, { current: key });
  const log = await RaftLogStorage.open(store);
  const payload = randomBytes(ENTRY_BYTES);
  let next = 1;
  const latencies: number[] = [];
  const save = async (): Promise<void> => {
    const entries: RaftLogEntry[] = [];
    for (let i = 0; i < entriesPerSave; i++) entries.push({ index: next + i, term: 1, type: 0, data: payload });
    const t0 = performance.now();
    await log.save({ entries, hardState: { term: 1, vote: 1n, commit: next - 1 } });
    latencies.push(performance.now() - t0);
    next += entriesPerSave;
  };
  for (let i = 0; i < 20; i++) await save();
  latencies.length = 0;
  const start = performance.now();
  while (performance.now() - start < DURATION_MS) await save();
  const seconds = (performance.now() - start) / 1000;
  await store.close();
  key.dispose();
  rmSync(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    entriesPerSave,
    savesPerSec: Math.round(latencies.length / seconds),
    entriesPerSec: Math.round((latencies.length * entriesPerSave) / seconds),
    saveP50Ms: percentileMs(latencies, 50),
    saveP99Ms: percentileMs(latencies, 99),
  };
}

const diskBefore = { fsync: measureSync(fsyncSync), fdatasync: measureSync(fdatasyncSync) };
const cases = [];
for (const n of [1, 16, 64]) cases.push(await measureLog(n));
const diskAfter = { fsync: measureSync(fsyncSync), fdatasync: measureSync(fdatasyncSync) };
console.log(
  JSON.stringify({
    bench: "raftlog-append",
    entryBytes: ENTRY_BYTES,
    durationMsPerCase: DURATION_MS,
    disk: { before: diskBefore, after: diskAfter },
    cases,
  }),
);
