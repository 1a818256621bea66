// Benchmark: place 10,000 tasks (100 services x 100 replicas, 5 zones, constraints on node and engine
// labels) on 1,000 nodes with spread. Prints one JSON object with
//   pure:      the placement function alone (tasks/s),
//   inMemory:  the scheduler loop placing pending tasks and committing them in batches into an
//              in-memory store (proposals applied at once),
//   raft:      a real single-manager daemon in this process (raft over the encrypted LevelDB store):
//              100 `service create` calls through the control API -> all 10,000 tasks ASSIGNED
//              (orchestrator + scheduler + every raft commit);
//   raftPlace: the same daemon set-up with every node paused while the 10,000 tasks are made; then
//              one proposal makes the nodes active -> all tasks ASSIGNED (the scheduler's place and
//              commit through raft, with the orchestrator's no-op pass over the node change).
// Target (issue 9): place and commit 10,000 tasks in <= 1 s.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { SeededRandom } from "../../src/base/random.js";
import { DaemonClient } from "../../src/cli/daemon-client.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { applyAtOnce } from "../../src/manager/leadership/apply-at-once.js";
import { LeaderLoops } from "../../src/manager/leadership/leader-loops.js";
import type { Manager } from "../../src/manager/manager.js";
import { newTask } from "../../src/manager/orchestrator/task-template.js";
import { schedule } from "../../src/manager/scheduler/placement.js";
import { schedulerLoop } from "../../src/manager/scheduler/scheduler.js";
import { Node, NodeAvailability, NodeRole, NodeState, Service, ServiceSpec, TaskState, type Task } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore, type StoreTransaction } from "../../src/state/index.js";
import { freePort } from "../lib/process-cluster.js";
import { waitFor } from "../lib/wait.js";

const NODES = Number(process.env.BENCH_NODES ?? 1000);
const SERVICES = Number(process.env.BENCH_SERVICES ?? 100);
const REPLICAS = Number(process.env.BENCH_REPLICAS ?? 100);
const ZONES = ["a", "b", "c", "d", "e"];

function id(prefix: string, i: number): string {
  return (prefix + i.toString().padStart(10, "0")).padEnd(25, "x").slice(0, 25);
}

function makeNodes(availability = NodeAvailability.NODE_AVAILABILITY_ACTIVE): Node[] {
  return Array.from({ length: NODES }, (_, i) =>
    Node.fromPartial({
      id: id("n", i),
      spec: { labels: { zone: ZONES[i % ZONES.length]!, disk: i % 3 === 0 ? "hdd" : "ssd" }, desiredRole: NodeRole.NODE_ROLE_WORKER, availability },
      role: NodeRole.NODE_ROLE_WORKER,
      description: { hostname: `host-${i}`, executors: ["runc", "process"], engineLabels: { arch: i % 2 === 0 ? "amd64" : "arm64" } },
      status: { state: NodeState.NODE_STATE_READY },
    }),
  );
}

function serviceSpec(s: number): ServiceSpec {
  const constraints = s % 3 === 0 ? ["node.labels.disk!=hdd"] : s % 3 === 1 ? ["engine.labels.arch==amd64"] : [];
  return ServiceSpec.fromPartial({ name: `svc-${s}`, replicas: REPLICAS, zone: ZONES[s % ZONES.length]!, constraints });
}

function makeServices(): Service[] {
  return Array.from({ length: SERVICES }, (_, s) => Service.fromPartial({ id: id("s", s), spec: serviceSpec(s), specVersion: 1n }));
}

function makeTasks(services: Service[]): Task[] {
  return services.flatMap((service) =>
    Array.from({ length: REPLICAS }, (_, r) => newTask(service, { slot: r + 1, nodeId: "", imageDigest: "", nowMs: 0, restartCount: 0 })),
  );
}

function pure(): Record<string, number> {
  const nodes = makeNodes();
  const tasks = makeTasks(makeServices());
  const runs: number[] = [];
  let assigned = 0;
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    assigned = schedule(nodes, tasks, []).assignments.length;
    runs.push(performance.now() - t0);
  }
  runs.sort((a, b) => a - b);
  const median = runs[Math.floor(runs.length / 2)]!;
  return { tasks: tasks.length, nodes: nodes.length, assigned, medianMs: round(median), tasksPerSec: Math.round(tasks.length / (median / 1000)) };
}

async function inMemory(): Promise<Record<string, number>> {
  const clock = new ManualClock(1_700_000_000_000);
  const store = new ObjectStore({ clock });
  const direct = applyAtOnce(store, clock);
  const services = makeServices();
  const tasks = makeTasks(services);
  const put = (build: (tx: StoreTransaction) => void): void => void store.apply(store.prepare(build), { index: store.lastAppliedIndex + 1 });
  for (const chunk of chunks(makeNodes(), 500)) put((tx) => chunk.forEach((n) => tx.createNode(n)));
  put((tx) => services.forEach((s) => tx.createService(s)));
  for (const chunk of chunks(tasks, 500)) put((tx) => chunk.forEach((t) => tx.createTask(t)));
  const loops = new LeaderLoops({ store, propose: direct.propose, clock, random: new SeededRandom(1), logger: pino({ level: "silent" }), loops: [schedulerLoop()] });
  const before = direct.proposals;
  const t0 = performance.now();
  loops.leaderChanged(true, direct.term);
  await loops.idle();
  const ms = performance.now() - t0;
  const assigned = store.listTasks().filter((t) => t.status?.state === TaskState.TASK_STATE_ASSIGNED).length;
  loops.stop();
  return { tasks: tasks.length, assigned, proposals: direct.proposals - before, placeAndCommitMs: round(ms) };
}

async function raft(placeOnly: boolean): Promise<Record<string, number>> {
  const root = mkdtempSync(join(tmpdir(), "shoal-bench-sched-"));
  const daemon = await startDaemon({
    dataDir: join(root, "m1"),
    listenAddr: `127.0.0.1:${await freePort()}`,
    logger: pino({ level: "silent" }),
    // The nodes below never heartbeat: a long period keeps the dispatcher from marking them DOWN mid-run.
    heartbeatPeriodMs: 3_600_000,
  });
  const client = new DaemonClient(daemon.socketPath);
  try {
    await client.init({ autolock: false, certExpirySeconds: 0n, advertiseAddr: "", tickMs: 0, electionTicks: 0, heartbeatTicks: 0 });
    // The bench reaches into the daemon for the manager's store and propose: nodes cannot be made
    // through the control API (they join), and this keeps 1,000 joins out of the measurement.
    const manager = (daemon as unknown as { manager: Manager }).manager;
    await waitFor("the manager to lead", () => manager.isLeader, 15_000);
    const availability = placeOnly ? NodeAvailability.NODE_AVAILABILITY_PAUSE : NodeAvailability.NODE_AVAILABILITY_ACTIVE;
    for (const chunk of chunks(makeNodes(availability), 500)) await manager.ctx.propose((tx) => chunk.forEach((n) => tx.createNode(n)));
    const total = SERVICES * REPLICAS;
    let assigned = 0;
    let doneAt = 0;
    const watch = manager.store.watch(
      { tables: ["tasks"] },
      {
        onEvent: (e) => {
          if (e.kind !== "update") return;
          const task = e.object as Task;
          if (task.status?.state === TaskState.TASK_STATE_ASSIGNED && e.oldObject !== undefined && (e.oldObject as Task).status?.state === TaskState.TASK_STATE_PENDING) {
            if (++assigned === total) doneAt = performance.now();
          }
        },
      },
    );
    let indexBefore = manager.store.lastAppliedIndex;
    let t0 = performance.now();
    await Promise.all(Array.from({ length: SERVICES }, (_, s) => client.createService({ spec: serviceSpec(s) })));
    const createdMs = performance.now() - t0;
    if (placeOnly) {
      // Every task made (and pending with its reason) before the nodes open.
      await waitFor("every task to be made and pending", () => {
        const tasks = manager.store.listTasks();
        return tasks.length === total && tasks.every((t) => t.status?.message.includes("paused")) ? true : undefined;
      }, 120_000, 50);
      indexBefore = manager.store.lastAppliedIndex;
      t0 = performance.now();
      await manager.ctx.propose((tx) => {
        for (const n of manager.store.listNodes()) {
          if (n.spec?.availability !== NodeAvailability.NODE_AVAILABILITY_PAUSE) continue;
          n.spec.availability = NodeAvailability.NODE_AVAILABILITY_ACTIVE;
          tx.updateNode(n);
        }
      });
    }
    await waitFor("every task to be assigned", () => doneAt > 0, 120_000, 5);
    watch.close();
    return {
      services: SERVICES,
      tasks: total,
      assigned,
      ...(placeOnly ? { nodesActiveToAllAssignedMs: round(doneAt - t0) } : { serviceCreateCallsMs: round(createdMs), createToAllAssignedMs: round(doneAt - t0) }),
      raftEntries: manager.store.lastAppliedIndex - indexBefore,
    };
  } finally {
    client.close();
    await daemon.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function round(ms: number): number {
  return Number(ms.toFixed(1));
}

const skipRaft = process.env.BENCH_SKIP_RAFT === "1";
const result = {
  bench: "scheduler",
  targetMs: 1000,
  pure: pure(),
  inMemory: await inMemory(),
  raft: skipRaft ? undefined : await raft(false),
  raftPlace: skipRaft ? undefined : await raft(true),
};
console.log(JSON.stringify(result));
process.exit(0);
