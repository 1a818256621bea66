// PutValue throughput and latency on a 3-manager Shoal cluster of real daemon processes (default
// raft timing), next to a 3-member TLS etcd measured in the same run (scripts/bench/etcd/put.ts), so
// both see the same machine load. Both sides use the same closed loop (scripts/bench/lib/load.ts):
// 1 and 256 workers writing 256-byte values to keys bench/<worker>/<seq mod 1000>, worker w on
// connection w mod min(clients, 16). Shoal's workers call Control.PutValue on the leader's socket;
// etcd's call KV.Put over mutual TLS, connection i dialling member i mod 3. Prints one JSON object
// with ratioAt1 / ratioAt256 = Shoal writes/s ÷ etcd writes/s (the target: ratioAt256 ≥ 1).
// Run: node --import tsx scripts/bench/cluster-write.ts [--duration-ms 5000] [--warmup-ms 1000] [--clients 1,256] [--no-etcd]
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { ControlClient, type PutValueResponse } from "../../src/proto/shoal/v1/control.js";
import { ProcessCluster, waitFor, type NodeProcess } from "../../test/e2e/cluster.js";
import { DEFAULT_CHANNELS_FOR, measureEtcdPuts, perWrite, type EtcdPutResult } from "./etcd/put.js";
import { runLoad } from "./lib/load.js";
import { processCpuMs, totalCpuMs } from "./lib/proc-cpu.js";

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const durationMs = Number(argValue("--duration-ms") ?? 5000);
const warmupMs = Number(argValue("--warmup-ms") ?? 1000);
const clientsList = (argValue("--clients") ?? "1,256").split(",").map(Number);
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

/** One socket connection per client: distinct options keep grpc-js from sharing one subchannel. */
function controlClients(leader: NodeProcess, count: number): ControlClient[] {
  return Array.from(
    { length: count },
    (_, i) => new ControlClient(`unix://${leader.socketPath}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "shoal.bench_channel": i }),
  );
}

async function measureShoal(): Promise<{ results: ShoalResult[]; loadAvgBefore: string; loadAvgAfter: string }> {
  const cluster = new ProcessCluster([]);
  try {
    const [m1] = await Promise.all(["m1", "m2", "m3"].map((n) => cluster.add(n)));
    const { managerToken } = await cluster.init("m1");
    await cluster.join("m2", managerToken, m1!.addr);
    await cluster.join("m3", managerToken, m1!.addr);
    await waitFor("3 voters", async () => (await m1!.client.listNodes()).filter((n) => n.managerStatus?.voter).length === 3 || undefined, 30_000);
    const leader = await cluster.leader();
    const value = randomBytes(VALUE_BYTES);
    const loadAvgBefore = loadAvg();
    const results: ShoalResult[] = [];
    for (const clients of clientsList) {
      const channels = DEFAULT_CHANNELS_FOR(clients);
      const pool = controlClients(leader, channels);
      try {
        const cpuBefore = process.cpuUsage();
        const leaderCpuBeforeMs = cpuMsOf(leader);
        const daemonPids = [...cluster.nodes.values()].map((n) => n.child?.pid);
        const serverCpuBeforeMs = totalCpuMs(daemonPids);
        const wallBeforeMs = performance.now();
        const load = await runLoad({
          concurrency: clients,
          durationMs,
          warmupMs,
          op: (worker, seq) =>
            new Promise<void>((ok, fail) =>
              pool[worker % channels]!.putValue(
                { key: `bench/${worker}/${seq % 1000}`, value },
                new grpc.Metadata(),
                { deadline: Date.now() + CALL_TIMEOUT_MS },
                (err: grpc.ServiceError | null, _res?: PutValueResponse) => (err ? fail(err) : ok()),
              ),
            ),
        });
        const wallMs = performance.now() - wallBeforeMs;
        const cpu = process.cpuUsage(cpuBefore);
        const serverCpuMs = totalCpuMs(daemonPids) - serverCpuBeforeMs;
        results.push({
          clients,
          channels,
          ops: load.ops,
          errors: load.errors,
          opsPerSecond: load.opsPerSecond,
          p50Ms: load.p50Ms,
          p90Ms: load.p90Ms,
          p99Ms: load.p99Ms,
          maxMs: load.maxMs,
          clientCpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / wallMs) * 1000) / 10,
          clientCpuMsPerWrite: perWrite((cpu.user + cpu.system) / 1000, load.completedOps),
          serverCpuMsPerWrite: perWrite(serverCpuMs, load.completedOps),
          leaderCpuPercent: Math.round(((cpuMsOf(leader) - leaderCpuBeforeMs) / wallMs) * 1000) / 10,
          ...(load.firstError !== undefined ? { firstError: load.firstError } : {}),
        });
      } finally {
        for (const c of pool) c.close();
      }
    }
    return { results, loadAvgBefore, loadAvgAfter: loadAvg() };
  } finally {
    await cluster.close();
  }
}

const shoal = await measureShoal();
const etcd = withEtcd ? await measureEtcdPuts({ clientsList, durationMs, warmupMs, valueBytes: VALUE_BYTES }) : { skipped: "--no-etcd" };
const out: Record<string, unknown> = { bench: "cluster-write", durationMs, warmupMs, valueBytes: VALUE_BYTES, shoal, etcd };
if (!("skipped" in etcd)) {
  const ratio = (clients: number): number | undefined => {
    const s = shoal.results.find((r) => r.clients === clients);
    const e = etcd.results.find((r) => r.clients === clients);
    return s !== undefined && e !== undefined ? Math.round((s.opsPerSecond / Math.max(1, e.opsPerSecond)) * 100) / 100 : undefined;
  };
  out["ratioAt1"] = ratio(1);
  out["ratioAt256"] = ratio(256);
}
process.stdout.write(JSON.stringify(out) + "\n");
