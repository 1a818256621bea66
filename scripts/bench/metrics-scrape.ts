// Benchmark: the cost of one Prometheus scrape of a manager holding 1,000 tasks (10 services of
// 100, in every task state, on 50 nodes in 3 zones), as `--metrics-addr` serves it. A one-manager
// daemon in this process, without the workload loops (the tasks are put through raft as written
// and stay as they are). Reported, as the median of `--scrapes` (default 20) after 3 warm-up ones:
//   collect:  CPU (process.cpuUsage, user + system) and wall time of building the scrape's text
//             (every collector reads the store, then prom-client renders the text) — the daemon's
//             cost of a scrape;
//   http:     CPU and wall time of GET /metrics over loopback HTTP from this same process, so the
//             CPU includes the client's side of the request as well.
// Run: node --import tsx scripts/bench/metrics-scrape.ts [--tasks 1000] [--scrapes 20]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { DaemonMetrics } from "../../src/daemon/metrics/daemon-metrics.js";
import type { Manager } from "../../src/manager/manager.js";
import { newTask } from "../../src/manager/orchestrator/task-template.js";
import { Node, NodeAvailability, NodeRole, NodeState, Service, ServiceSpec, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { freePort } from "../lib/process-cluster.js";
import { waitFor } from "../lib/wait.js";
import { argNumber } from "./lib/args.js";

const TASKS = argNumber("--tasks", 1000);
const SCRAPES = argNumber("--scrapes", 20);
const NODES = 50;
const ZONES = ["default", "pci", "edge"];
const PER_SERVICE = 100;
const STATES = Object.values(TaskState).filter((v): v is TaskState => typeof v === "number" && v >= 0);

const id = (prefix: string, i: number): string => prefix + i.toString(36).padStart(24, "0");
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;

function cpuMs(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "shoal-bench-metrics-"));
  const daemon = await startDaemon({
    dataDir: join(root, "m1"),
    listenAddr: `127.0.0.1:${await freePort()}`,
    logger: pino({ level: "silent" }),
    workloadLoops: false,
    // The nodes below never heartbeat: a long period keeps the dispatcher from marking them DOWN mid-run.
    heartbeatPeriodMs: 3_600_000,
    metricsAddr: "127.0.0.1:0",
  });
  const client = new DaemonClient(daemon.socketPath);
  try {
    await client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
    // The bench reaches into the daemon for the manager's propose (nodes cannot be made through the
    // control API: they join) and for its metrics (to time the collection apart from HTTP).
    const manager = daemon.nodeManager as Manager;
    const metrics = (daemon as unknown as { metrics: DaemonMetrics }).metrics;
    await waitFor("the manager to lead", () => manager.isLeader, 15_000);
    const nodes = Array.from({ length: NODES }, (_, i) =>
      Node.fromPartial({
        id: id("n", i),
        spec: { labels: { zone: ZONES[i % ZONES.length]! }, desiredRole: NodeRole.NODE_ROLE_WORKER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
        role: NodeRole.NODE_ROLE_WORKER,
        description: { hostname: `host-${i}`, executors: ["process"] },
        status: { state: i % 10 === 0 ? NodeState.NODE_STATE_DOWN : NodeState.NODE_STATE_READY },
      }),
    );
    await manager.ctx.propose((tx) => nodes.forEach((n) => tx.createNode(n)));
    const services = Array.from({ length: Math.ceil(TASKS / PER_SERVICE) }, (_, s) =>
      Service.fromPartial({ id: id("s", s), spec: ServiceSpec.fromPartial({ name: `svc-${s}`, replicas: PER_SERVICE, container: { command: ["sleep", "1000"] } }), specVersion: 1n }),
    );
    await manager.ctx.propose((tx) => services.forEach((s) => tx.createService(s)));
    for (const [s, service] of services.entries()) {
      const count = Math.min(PER_SERVICE, TASKS - s * PER_SERVICE);
      const tasks = Array.from({ length: count }, (_, r) => {
        const task = newTask(service, { slot: r + 1, nodeId: nodes[(s * PER_SERVICE + r) % NODES]!.id, imageDigest: "", nowMs: Date.now(), restartCount: 0 });
        task.status = { ...task.status!, state: STATES[(s * PER_SERVICE + r) % STATES.length]! };
        return task;
      });
      await manager.ctx.propose((tx) => tasks.forEach((t) => tx.createTask(t)));
    }
    const port = daemon.metricsPort!;
    const url = `http://127.0.0.1:${port}/metrics`;
    let text = "";
    for (let i = 0; i < 3; i++) text = await (await fetch(url)).text();
    const tasksSeen = [...text.matchAll(/^shoal_tasks\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    if (tasksSeen !== TASKS) throw new Error(`the scrape counts ${tasksSeen} tasks, not ${TASKS}`);

    const collect = { cpuMs: [] as number[], wallMs: [] as number[] };
    const http = { cpuMs: [] as number[], wallMs: [] as number[] };
    for (let i = 0; i < SCRAPES; i++) {
      let cpu = process.cpuUsage();
      let t0 = performance.now();
      await metrics.text();
      collect.wallMs.push(performance.now() - t0);
      collect.cpuMs.push(cpuMs(cpu));
      cpu = process.cpuUsage();
      t0 = performance.now();
      const res = await fetch(url);
      await res.text();
      http.wallMs.push(performance.now() - t0);
      http.cpuMs.push(cpuMs(cpu));
    }
    console.log(
      JSON.stringify({
        bench: "metrics-scrape",
        tasks: TASKS,
        nodes: NODES + 1,
        scrapes: SCRAPES,
        scrapeBytes: Buffer.byteLength(text),
        samples: text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length,
        collect: { medianCpuMs: round(median(collect.cpuMs)), medianWallMs: round(median(collect.wallMs)), maxWallMs: round(Math.max(...collect.wallMs)) },
        http: { medianCpuMs: round(median(http.cpuMs)), medianWallMs: round(median(http.wallMs)), maxWallMs: round(Math.max(...http.wallMs)) },
      }),
    );
  } finally {
    client.close();
    await daemon.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
