// Where a replicated PutValue's time goes on a 3-manager cluster of real daemons (default raft
// timing): sequential writes through the leader's socket (and optionally N concurrent clients), with
// each daemon's log kept (--keep) for timing lines and, with SHOAL_CPU_PROF_DIR=DIR and
// NODE_OPTIONS="--import tsx --import ./scripts/bench/profile-cpu-hook.ts", one CPU profile per daemon
// covering the measured window of the last client count (SIGUSR2 starts and stops it).
// Run: node --import tsx scripts/bench/profile-write-path.ts [--seconds 3] [--clients 1,256] [--managers 3] [--keep]
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { ProcessCluster, waitForVoters, type NodeProcess } from "../lib/process-cluster.js";
import { argValue } from "./lib/args.js";
import { runLoad } from "./lib/load.js";
import { processCpuMs } from "./lib/proc-cpu.js";

/** CPU of a daemon in ms, to report CPU per write independent of machine load. */
const cpuMsOf = (node: NodeProcess): number => processCpuMs(node.child?.pid);

const seconds = Number(argValue("--seconds") ?? "3");
const clientsList = (argValue("--clients") ?? "1").split(",").map(Number);
const keep = process.argv.includes("--keep");
const managers = Number(argValue("--managers") ?? "3");
const VALUE = Buffer.alloc(256, 7);

const cluster = new ProcessCluster([]);
const results: unknown[] = [];
try {
  const names = Array.from({ length: managers }, (_, i) => `m${i + 1}`);
  const [m1] = await Promise.all(names.map((n) => cluster.add(n)));
  const { managerToken } = await cluster.init("m1");
  for (const name of names.slice(1)) await cluster.join(name, managerToken, m1!.addr);
  await waitForVoters(m1!, managers, { timeoutMs: 30_000 });
  const leader = await cluster.leader();
  const profiling = process.env["SHOAL_CPU_PROF_DIR"] !== undefined;
  const signalDaemons = (): void => {
    for (const n of cluster.nodes.values()) n.child?.kill("SIGUSR2");
  };
  // What the cluster costs with no writes at all (heartbeats, timers), to subtract by eye.
  const idleBefore = [...cluster.nodes.values()].map(cpuMsOf);
  await new Promise((r) => setTimeout(r, 2000));
  const idleCpuPercent = Object.fromEntries([...cluster.nodes.entries()].map(([name, n], j) => [name, Math.round(((cpuMsOf(n) - idleBefore[j]!) / 2000) * 100)]));
  for (const [i, clients] of clientsList.entries()) {
    const last = i === clientsList.length - 1;
    const pool = Array.from({ length: Math.min(clients, 16) }, () => leader.newControlClient());
    const startedMs = performance.now();
    const cpuBefore = process.cpuUsage();
    const daemonCpuBefore = [...cluster.nodes.values()].map(cpuMsOf);
    if (profiling && last) setTimeout(signalDaemons, 500);
    const load = await runLoad({
      concurrency: clients,
      durationMs: seconds * 1000,
      warmupMs: 500,
      op: async (worker, seq) => void (await leader.putValue(`p-${worker}-${seq % 1000}`, VALUE, 10_000, pool[worker % pool.length])),
    });
    if (profiling && last) signalDaemons();
    const cpu = process.cpuUsage(cpuBefore);
    const elapsedMs = performance.now() - startedMs;
    // Includes the warm-up, so divide by every write issued, not only the measured ones.
    const daemonCpuMs = [...cluster.nodes.values()].map((n, j) => cpuMsOf(n) - daemonCpuBefore[j]!);
    const writes = load.ops * ((elapsedMs) / load.measuredMs);
    results.push({
      clients,
      ...load,
      daemonCpuPercent: Object.fromEntries([...cluster.nodes.keys()].map((name, j) => [name, Math.round((daemonCpuMs[j]! / elapsedMs) * 100)])),
      daemonCpuMsPerWrite: Object.fromEntries([...cluster.nodes.keys()].map((name, j) => [name, Math.round((daemonCpuMs[j]! / writes) * 1000) / 1000])),       benchCpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / elapsedMs) * 100),
    });
    for (const c of pool) c.close();
  }
  if (profiling) await new Promise((r) => setTimeout(r, 1000)); // let the daemons write their profiles
  process.stdout.write(
    JSON.stringify({ bench: "profile-write-path", loadavg: readFileSync("/proc/loadavg", "utf8").trim(), leader: leader.name, idleCpuPercent, logs: keep ? cluster.root : undefined, results }) + "\n",
  );
} finally {
  if (keep) process.env["SHOAL_KEEP_E2E"] = "1";
  await cluster.close();
}
