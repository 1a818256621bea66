// PutValue throughput and latency on a 3-manager Shoal cluster of real daemon processes (default
// raft timing), next to a 3-member TLS etcd (scripts/bench/etcd/put.ts) running at the same time.
// Both sides use the same closed loop (scripts/bench/lib/load.ts): 1 and 256 workers writing
// 256-byte values to keys bench/<worker>/<seq mod 1000>, worker w on connection w mod
// min(clients, 16). Shoal's workers call Control.PutValue on the leader's socket; etcd's call KV.Put
// over mutual TLS, connection i dialling member i mod 3.
//
// The two run in alternating rounds (Shoal then etcd, then etcd then Shoal, ...) with both clusters
// up throughout, because on a shared 2-core machine the speed of the machine drifts by ±15 % over a
// minute: measuring one side after the other compared two different machines. Each round gives a
// ratio Shoal writes/s ÷ etcd writes/s; ratioAt1 / ratioAt256 are the medians over the rounds (the
// issue's target: ratioAt256 ≥ 1), and each side's `results` is its median round. An unmeasured
// 3-second run of each side comes first (JIT warm-up).
// Run: node --import tsx scripts/bench/cluster-write.ts [--duration-ms 5000] [--warmup-ms 1000] [--clients 1,256] [--rounds 3] [--no-etcd]
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { ControlClient, type PutValueResponse } from "../../src/proto/shoal/v1/control.js";
import { ProcessCluster, waitForVoters, type NodeProcess } from "../lib/process-cluster.js";
import { DEFAULT_CHANNELS_FOR, EtcdPutSession, putResult, type EtcdPutMeasurement, type EtcdPutResult } from "./etcd/put.js";
import { argValue } from "./lib/args.js";
import { runLoad } from "./lib/load.js";
import { processCpuMs, totalCpuMs } from "./lib/proc-cpu.js";

const durationMs = Number(argValue("--duration-ms") ?? 5000);
const warmupMs = Number(argValue("--warmup-ms") ?? 1000);
const clientsList = (argValue("--clients") ?? "1,256").split(",").map(Number);
const rounds = Number(argValue("--rounds") ?? 3);
const withEtcd = !process.argv.includes("--no-etcd");
const VALUE_BYTES = 256;
const CALL_TIMEOUT_MS = 10_000;

/** The etcd baseline's result shape, plus the leader daemon's CPU, so the two print side by side. */
interface ShoalResult extends EtcdPutResult {
  /** CPU of the leader's daemon during the run, in % of one core (from /proc). */
  leaderCpuPercent: number;
}

function loadAvg(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

const cpuMsOf = (node: NodeProcess): number => processCpuMs(node.child?.pid);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The round whose throughput is the median (the lower middle one for an even count). */
function medianRound<T extends { opsPerSecond: number }>(results: T[]): T {
  const sorted = [...results].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** One socket connection per client: distinct options keep grpc-js from sharing one subchannel. */
function controlClients(leader: NodeProcess, count: number): ControlClient[] {
  return Array.from(
    { length: count },
    (_, i) => new ControlClient(`unix://${leader.socketPath}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "grpc.enable_channelz": 0, "shoal.bench_channel": i }),
  );
}

/** A running 3-manager Shoal cluster that can be measured several times. */
class ShoalPutSession {
  private readonly value = randomBytes(VALUE_BYTES);

  private constructor(
    private readonly cluster: ProcessCluster,
    private readonly leader: NodeProcess,
  ) {}

  static async start(): Promise<ShoalPutSession> {
    const cluster = new ProcessCluster([]);
    try {
      const [m1] = await Promise.all(["m1", "m2", "m3"].map((n) => cluster.add(n)));
      const { managerToken } = await cluster.init("m1");
      await cluster.join("m2", managerToken, m1!.addr);
      await cluster.join("m3", managerToken, m1!.addr);
      await waitForVoters(m1!, 3, { timeoutMs: 30_000 });
      return new ShoalPutSession(cluster, await cluster.leader());
    } catch (err) {
      await cluster.close();
      throw err;
    }
  }

  async measure(clients: number, durationMs: number, warmupMs: number): Promise<ShoalResult> {
    const channels = DEFAULT_CHANNELS_FOR(clients);
    const pool = controlClients(this.leader, channels);
    try {
      const cpuBefore = process.cpuUsage();
      const leaderCpuBeforeMs = cpuMsOf(this.leader);
      const daemonPids = [...this.cluster.nodes.values()].map((n) => n.child?.pid);
      const serverCpuBeforeMs = totalCpuMs(daemonPids);
      const wallBeforeMs = performance.now();
      const load = await runLoad({
        concurrency: clients,
        durationMs,
        warmupMs,
        op: (worker, seq) =>
          new Promise<void>((ok, fail) =>
            pool[worker % channels]!.putValue(
              { key: `bench/${worker}/${seq % 1000}`, value: this.value },
              new grpc.Metadata(),
              { deadline: Date.now() + CALL_TIMEOUT_MS },
              (err: grpc.ServiceError | null, _res?: PutValueResponse) => (err ? fail(err) : ok()),
            ),
          ),
      });
      const wallMs = performance.now() - wallBeforeMs;
      return {
        ...putResult(clients, channels, load, { clientCpu: process.cpuUsage(cpuBefore), wallMs, serverCpuMs: totalCpuMs(daemonPids) - serverCpuBeforeMs }),
        leaderCpuPercent: Math.round(((cpuMsOf(this.leader) - leaderCpuBeforeMs) / wallMs) * 1000) / 10,
      };
    } finally {
      for (const c of pool) c.close();
    }
  }

  stop(): Promise<void> {
    return this.cluster.close();
  }
}

if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error(`--rounds must be an integer in 1..20, got ${rounds}`);
const loadAvgBefore = loadAvg();
const shoal = await ShoalPutSession.start();
let etcd: EtcdPutSession | { skipped: string } = { skipped: "--no-etcd" };
try {
  if (withEtcd) etcd = await EtcdPutSession.start({ valueBytes: VALUE_BYTES });
  const etcdSession = etcd instanceof EtcdPutSession ? etcd : undefined;
  const shoalRounds = new Map<number, ShoalResult[]>();
  const etcdRounds = new Map<number, EtcdPutResult[]>();
  const ratios = new Map<number, number[]>();
  // One unmeasured run of each side first: the daemons' JIT needs more than a round's warm-up
  // to settle (the first round of a fresh cluster ran 10-15 % slow), and etcd's process has none.
  const busiest = Math.max(...clientsList);
  await shoal.measure(busiest, 3000, 0);
  await etcdSession?.measure(busiest, 3000, 0);
  for (const clients of clientsList) {
    shoalRounds.set(clients, []);
    etcdRounds.set(clients, []);
    ratios.set(clients, []);
    for (let round = 0; round < rounds; round++) {
      // Alternate which side goes first, so neither always runs on a machine warmed (or tired) by the other.
      let s: ShoalResult;
      let e: EtcdPutResult | undefined;
      if (round % 2 === 0 || etcdSession === undefined) {
        s = await shoal.measure(clients, durationMs, warmupMs);
        e = await etcdSession?.measure(clients, durationMs, warmupMs);
      } else {
        e = await etcdSession.measure(clients, durationMs, warmupMs);
        s = await shoal.measure(clients, durationMs, warmupMs);
      }
      shoalRounds.get(clients)!.push(s);
      if (e !== undefined) {
        etcdRounds.get(clients)!.push(e);
        ratios.get(clients)!.push(Math.round((s.opsPerSecond / Math.max(1, e.opsPerSecond)) * 100) / 100);
      }
    }
  }
  const out: Record<string, unknown> = {
    bench: "cluster-write",
    durationMs,
    warmupMs,
    rounds,
    valueBytes: VALUE_BYTES,
    shoal: {
      results: clientsList.map((c) => medianRound(shoalRounds.get(c)!)),
      rounds: Object.fromEntries(clientsList.map((c) => [c, shoalRounds.get(c)!.map((r) => r.opsPerSecond)])),
      loadAvgBefore,
      loadAvgAfter: loadAvg(),
    },
  };
  if (etcdSession !== undefined) {
    const summary: EtcdPutMeasurement & { rounds?: unknown } = await etcdSession.summary(durationMs, warmupMs, clientsList.map((c) => medianRound(etcdRounds.get(c)!)));
    summary.rounds = Object.fromEntries(clientsList.map((c) => [c, etcdRounds.get(c)!.map((r) => r.opsPerSecond)]));
    out["etcd"] = summary;
    for (const c of clientsList) out[`ratiosAt${c}`] = ratios.get(c);
    for (const c of clientsList) out[`ratioAt${c}`] = Math.round(median(ratios.get(c)!) * 100) / 100;
  } else {
    out["etcd"] = etcd;
  }
  process.stdout.write(JSON.stringify(out) + "\n");
} finally {
  if (etcd instanceof EtcdPutSession) await etcd.stop();
  await shoal.stop();
}
