// Root CA rotation (issue 11's benchmark): 1 manager + N workers as real daemon processes (default
// raft timing). Each round writes PutValue in a closed loop on the manager's socket for a baseline
// window, then starts `ca --rotate` (detached) and keeps writing until the manager reports the
// rotation over. Reported per round: the time to converge (rotate call -> the leader reports no
// rotation, and -> every node's trust bundle on disk is the new root alone), and the write
// throughput during the rotation as a ratio to the baseline's. Medians over the rounds are printed
// with them. No target beyond reporting (scripts/bench/targets.json "caRotation").
// Every node is its own `shoal daemon` process, also at 50 workers (`--workers 50`): one idle
// daemon takes about 100 MiB of RSS, so 51 of them fit in a few GiB; what a 2-core machine lacks
// is CPU, so the nodes start and join in batches of --start-batch. The RSS of every daemon is
// sampled after the cluster is ready and at the end of each rotation (sum, median, max).
// Liveness: the bench gives up with a JSON error line and exit code 2 when the manager process
// exits at any point (a dead manager once left it polling for ever) or when the whole run passes
// --max-ms; every daemon is SIGKILLed on exit (scripts/lib/process-cluster.ts).
// Run: node --import tsx scripts/bench/ca-rotation.ts [--workers 8] [--rounds 3] [--clients 16] [--baseline-ms 3000] [--start-batch 8] [--max-ms 2400000]
import * as grpc from "@grpc/grpc-js";
import { randomBytes, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { splitPemBundle } from "../../src/ca/index.js";
import { ControlClient } from "../../src/proto/shoal/v1/control.js";
import { freePort, NodeProcess, ProcessCluster } from "../lib/process-cluster.js";
import { sleep, waitFor } from "../lib/wait.js";
import { argNumber } from "./lib/args.js";

const workers = argNumber("--workers", 8);
const rounds = argNumber("--rounds", 3);
const clients = argNumber("--clients", 16);
const baselineMs = argNumber("--baseline-ms", 3000);
const startBatch = argNumber("--start-batch", 8);
const maxMs = argNumber("--max-ms", 40 * 60_000);
const CALL_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 180_000;
const value = randomBytes(256);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function loadAvg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

/** The 1-minute load average (the first field of /proc/loadavg). */
function loadAvg1(): number {
  return Number(loadAvg().split(" ")[0]);
}

/** Resident set size of a running daemon in MiB (VmRSS of /proc/PID/status), undefined when gone. */
function rssMiB(node: NodeProcess): number | undefined {
  const pid = node.child?.pid;
  if (pid === undefined || !node.running) return undefined;
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Math.round(Number(match[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

function rssOf(nodes: NodeProcess[]): { totalMiB: number; medianMiB: number; maxMiB: number; managerMiB: number | undefined; sampled: number } {
  const all = nodes.map(rssMiB);
  const values = all.filter((v): v is number => v !== undefined);
  return {
    totalMiB: values.reduce((a, b) => a + b, 0),
    medianMiB: values.length === 0 ? 0 : median(values),
    maxMiB: values.length === 0 ? 0 : Math.max(...values),
    managerMiB: all[0],
    sampled: values.length,
  };
}

/** Runs `each` over `items`, `size` at a time (a 2-core machine does not start 50 daemons at once). */
async function inBatches<T, R>(items: T[], size: number, each: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(each))));
  return out;
}

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();
}

/** Closed-loop writers on `pool` until `until` resolves; writes/s and failures over that window. */
async function writeUntil(pool: ControlClient[], until: Promise<unknown>): Promise<{ opsPerSecond: number; ops: number; failures: number; ms: number }> {
  let stop = false;
  let ops = 0;
  let failures = 0;
  const started = performance.now();
  const loop = async (w: number): Promise<void> => {
    for (let seq = 0; !stop; seq++) {
      try {
        await new Promise<void>((ok, fail) =>
          pool[w % pool.length]!.putValue({ key: `bench/${w}/${seq % 1000}`, value }, new grpc.Metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (err) => (err ? fail(err) : ok())),
        );
        if (!stop) ops++;
      } catch {
        failures++;
      }
    }
  };
  const loops = Array.from({ length: clients }, (_, w) => loop(w));
  await until;
  const ms = performance.now() - started;
  stop = true;
  await Promise.all(loops);
  return { opsPerSecond: Math.round((ops / ms) * 1000), ops, failures, ms: Math.round(ms) };
}

/** Ends the run with a JSON error line (exit 2): the exit hooks of process-cluster kill every daemon. */
function giveUp(reason: string): never {
  process.stdout.write(JSON.stringify({ bench: "ca-rotation", error: reason, loadAvg: loadAvg() }) + "\n");
  process.exit(2);
}
setTimeout(() => giveUp(`the run passed --max-ms ${maxMs}`), maxMs).unref();

const loadAvgBefore = loadAvg();
const loadAvg1Before = loadAvg1();
const cluster = new ProcessCluster([]);
let closing = false;
try {
  const names = ["m1", ...Array.from({ length: workers }, (_, i) => `w${i + 1}`)];
  const setupStarted = performance.now();
  // Started here rather than with cluster.add for a longer start timeout: 50 daemons loading on 2
  // shared cores take longer than the e2e tests' 30 s each.
  const nodes = await inBatches(names, startBatch, async (name) => {
    const node = new NodeProcess(name, cluster.root, await freePort(), []);
    cluster.nodes.set(name, node);
    await node.start(START_TIMEOUT_MS);
    return node;
  });
  const m1 = nodes[0]!;
  // Started first and SIGKILLed only by cluster.close(): an exit before that is a failed run.
  void m1.exited.then((status) => {
    if (!closing) giveUp(`the manager's daemon exited (${status.code ?? status.signal}) during the run; see ${m1.logFile}`);
  });
  const { workerToken } = await cluster.init("m1");
  await inBatches(nodes.slice(1), startBatch, (w) => cluster.join(w.name, workerToken, m1.addr));
  await cluster.waitReady(m1, nodes.length, 60_000 + 2_000 * nodes.length);
  const setupMs = Math.round(performance.now() - setupStarted);
  const pool = Array.from(
    { length: Math.min(clients, 8) },
    (_, i) => new ControlClient(`unix://${m1.socketPath}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "shoal.bench_channel": i }),
  );
  const trustsAlone = (node: NodeProcess, fingerprint: string): boolean => {
    try {
      const roots = splitPemBundle(readFileSync(join(node.dataDir, "certificates/root-ca.crt"), "utf8"));
      return roots.length === 1 && fingerprintOf(roots[0]!) === fingerprint;
    } catch {
      return false;
    }
  };
  try {
    await writeUntil(pool, sleep(2000)); // warm-up, unmeasured
    const rssReady = rssOf(nodes);
    const results = [];
    for (let round = 0; round < rounds; round++) {
      const baseline = await writeUntil(pool, sleep(baselineMs));
      const loadAvg1AtRotate = loadAvg1();
      let convergeMs = 0;
      let allNodesMs = 0;
      const t0 = performance.now();
      const rotation = (async () => {
        const started = await m1.client.rotateRootCa({ caCertPem: Buffer.alloc(0), caKeyPem: Buffer.alloc(0) });
        const target = started.status?.rotation?.target?.fingerprint ?? "";
        await waitFor("the rotation to finish", async () => (await m1.client.getRootCa()).rotation === undefined || undefined, 300_000, 50);
        convergeMs = performance.now() - t0;
        return target;
      })();
      const during = await writeUntil(pool, rotation);
      const target = await rotation;
      await waitFor("every node to trust the new root alone", () => nodes.every((n) => trustsAlone(n, target)) || undefined, 120_000, 50);
      allNodesMs = performance.now() - t0;
      results.push({
        round,
        convergeMs: Math.round(convergeMs),
        everyNodeTrustsNewRootMs: Math.round(allNodesMs),
        baselineWritesPerSecond: baseline.opsPerSecond,
        duringWritesPerSecond: during.opsPerSecond,
        writeRatio: Math.round((during.opsPerSecond / Math.max(1, baseline.opsPerSecond)) * 100) / 100,
        failedWritesDuring: during.failures,
        failedWritesBaseline: baseline.failures,
        loadAvg1AtRotate,
        loadAvg1AtEnd: loadAvg1(),
        rssAtEnd: rssOf(nodes),
      });
      await sleep(1000); // let the last renewals' sessions settle before the next baseline
    }
    process.stdout.write(
      JSON.stringify({
        bench: "ca-rotation",
        nodes: nodes.length,
        managers: 1,
        workers,
        processes: "one shoal daemon process per node",
        startBatch,
        setupMs,
        rssReady,
        clients,
        baselineMs,
        rounds: results,
        convergeMsMedian: median(results.map((r) => r.convergeMs)),
        everyNodeTrustsNewRootMsMedian: median(results.map((r) => r.everyNodeTrustsNewRootMs)),
        writeRatioMedian: median(results.map((r) => r.writeRatio)),
        loadAvgBefore,
        loadAvg1Before,
        loadAvgAfter: loadAvg(),
        loadAvg1After: loadAvg1(),
      }) + "\n",
    );
  } finally {
    for (const c of pool) c.close();
  }
} finally {
  closing = true;
  await cluster.close();
}
