// The leader loops under a seeded schedule of faults: the real orchestrator, scheduler and
// constraint enforcer (src/manager/), started and stopped by the real LeaderLoops, on an in-memory
// ObjectStore whose proposals apply at once, with a manual clock, seeded randomness and seeded task
// IDs, so that a seed replays exactly. The simulation plays everyone else: operators (create, scale,
// update and remove services; relabel, drain and reactivate nodes), the dispatcher (nodes go DOWN
// and come back), the agents (assigned tasks start after a delay, some fail, stopped tasks report
// SHUTDOWN) and raft (leadership moves: the old term's proposals are refused, new loops start).
//
// The prefetch loop runs too (its image source answers at once): every order it has on the board is
// for a node of the store in the zone of the job's tasks, names candidates of that zone only, and
// carries the registry header only when it is a seed's.
//
// Checked after every step: a task is only ever assigned to a node of its own zone, at the moment of
// assignment; a replicated slot (or a global service's node) has at most one task meant to run; a
// slot keeps at most TASK_HISTORY_PER_SLOT ended tasks; the prefetch orders keep to their zone. After the faults stop, the loops must
// converge: every service runs as many tasks of its current spec (of either spec, while its update
// is paused) as its zone's eligible nodes allow, each on such a node.
import { pino } from "pino";
import { advanceLoops, settleLoops } from "./loop-driver.js";
import { ManualClock } from "../src/base/clock.js";
import { bytesToBase36 } from "../src/base/ids.js";
import { SeededRandom } from "../src/base/random.js";
import { applyAtOnce } from "../src/manager/leadership/apply-at-once.js";
import { LeaderLoops } from "../src/manager/leadership/leader-loops.js";
import { constraintEnforcerLoop } from "../src/manager/constraintenforcer/constraint-enforcer.js";
import { orchestratorLoop } from "../src/manager/orchestrator/orchestrator.js";
import { TASK_HISTORY_PER_SLOT } from "../src/manager/orchestrator/reconcile.js";
import { schedulerLoop } from "../src/manager/scheduler/scheduler.js";
import { createRootCA, type RootCA } from "../src/ca/index.js";
import type { PrefetchImageSource } from "../src/manager/prefetch/image-source.js";
import { PrefetchJobViews } from "../src/manager/prefetch/job-views.js";
import { PrefetchOrderBoard } from "../src/manager/prefetch/order-board.js";
import { prefetchLoop } from "../src/manager/prefetch/prefetch-loop.js";
import { prefetchJobId } from "../src/manager/prefetch/wanted-jobs.js";
import {
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  RestartCondition,
  Service,
  ServiceMode,
  TaskState,
  UpdateState,
  type Task,
} from "../src/proto/shoal/v1/objects.js";
import { DEFAULT_ZONE, isTerminalState, nodeZone, ObjectStore, type LeaderLoopFactory, type StoreTransaction } from "../src/state/index.js";

export interface WorkloadSimOptions {
  seed: number;
  /** Fault steps before the healing phase. */
  steps?: number;
  /** An extra leader loop, run beside the real ones (planted bugs, to show the checks can fail). */
  extraLoop?: LeaderLoopFactory;
  /** The prefetch loop's order board (a planted bug may write to it too). */
  board?: PrefetchOrderBoard;
}

export interface WorkloadSimResult {
  seed: number;
  ok: boolean;
  violation?: string;
  /** What the run did (to show that it exercised the loops). */
  stats: { steps: number; leaderChanges: number; tasksCreated: number; assignments: number; relabels: number; nodeDowns: number; failures: number; prefetchOrders: number };
}

const ZONES = ["a", "b", ""];
const NODE_COUNT = 6;
const STEP_MS = 500;
const SETTLE_MS = 120_000;

function nodeName(i: number): string {
  return `node${i}`.padEnd(25, "z");
}

class Violation extends Error {}

/** One seeded run. */
export async function runWorkloadSim(opts: WorkloadSimOptions): Promise<WorkloadSimResult> {
  const sim = new WorkloadSim(opts.seed, opts.extraLoop, opts.board ?? new PrefetchOrderBoard());
  const stats = sim.stats;
  try {
    await sim.run(opts.steps ?? 120);
    return { seed: opts.seed, ok: true, stats };
  } catch (err) {
    if (!(err instanceof Violation)) throw err;
    return { seed: opts.seed, ok: false, violation: err.message, stats };
  } finally {
    sim.stop();
  }
}

class WorkloadSim {
  readonly stats = { steps: 0, leaderChanges: 0, tasksCreated: 0, assignments: 0, relabels: 0, nodeDowns: 0, failures: 0, prefetchOrders: 0 };
  private rootCA: RootCA | undefined;
  private readonly clock = new ManualClock(1_700_000_000_000);
  private readonly rng: SeededRandom;
  private readonly idRng: SeededRandom;
  private readonly store = new ObjectStore({ clock: this.clock });
  private readonly direct = applyAtOnce(this.store, this.clock);
  private readonly loops: LeaderLoops;
  private serviceSeq = 0;
  /** Task ID → when its agent will report it RUNNING (or FAILED). */
  private readonly startsAt = new Map<string, { atMs: number; fails: boolean }>();

  constructor(
    seed: number,
    extraLoop: LeaderLoopFactory | undefined,
    private readonly board: PrefetchOrderBoard,
  ) {
    this.rng = new SeededRandom(seed);
    this.idRng = new SeededRandom(seed ^ 0x5eed);
    this.loops = new LeaderLoops({
      store: this.store,
      propose: this.direct.propose,
      clock: this.clock,
      random: new SeededRandom(seed ^ 0x100),
      logger: pino({ level: "silent" }),
      loops: [
        orchestratorLoop({ resolveImage: async () => ({ digest: `sha256:${"a".repeat(64)}` }) }),
        schedulerLoop(),
        constraintEnforcerLoop,
        prefetchLoop({ images: SIM_IMAGES, board, views: new PrefetchJobViews(), clusterId: "simcluster".padEnd(25, "c"), grantSigner: () => this.rootCA!, pieceSize: 1024 * 1024 }),
        ...(extraLoop === undefined ? [] : [extraLoop]),
      ],
      newId: () => this.newId(),
    });
    // Zone safety is checked where it matters: when a task gets a node.
    this.store.watch(
      { tables: ["tasks"], kinds: ["create", "update"] },
      {
        onEvent: (event) => {
          if (event.kind === "reset" || event.table !== "tasks") return;
          const task = event.object as Task;
          const before = event.oldObject as Task | undefined;
          if (event.kind === "create") this.stats.tasksCreated++;
          if (task.nodeId === "" || before?.nodeId === task.nodeId) return;
          this.stats.assignments++;
          const node = this.store.getNode(task.nodeId);
          if (node === undefined) throw new Violation(`task ${task.id} was assigned to unknown node ${task.nodeId}`);
          const zone = nodeZone(node);
          if (zone !== zoneOf(task.zone)) {
            const mode = this.store.getService(task.serviceId)?.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL ? "global" : "replicated";
            this.fail(`${mode} task ${task.id} (${event.kind}, ${TaskState[task.status?.state ?? 0]}) of zone "${zoneOf(task.zone)}" was assigned to ${node.id} of zone "${zone}"`);
          }
        },
      },
    );
  }

  private violation: string | undefined;

  private fail(message: string): void {
    this.violation ??= `${message} (t=${this.clock.nowMs() - 1_700_000_000_000} ms)`;
  }

  private newId(): string {
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i += 4) {
      const v = this.idRng.int(0, 2 ** 32);
      bytes[i] = v >>> 24;
      bytes[i + 1] = (v >>> 16) & 0xff;
      bytes[i + 2] = (v >>> 8) & 0xff;
      bytes[i + 3] = v & 0xff;
    }
    return bytesToBase36(bytes, 25);
  }

  stop(): void {
    this.loops.stop();
  }

  async run(steps: number): Promise<void> {
    this.rootCA = await createRootCA({ clock: this.clock });
    await this.write((tx) => {
      for (let i = 0; i < NODE_COUNT; i++) {
        tx.createNode(
          Node.fromPartial({
            id: nodeName(i),
            spec: { availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, labels: ZONES[i % ZONES.length] === "" ? {} : { zone: ZONES[i % ZONES.length]! }, desiredRole: NodeRole.NODE_ROLE_WORKER },
            role: NodeRole.NODE_ROLE_WORKER,
            description: { hostname: `n${i}`, executors: ["process", "runc"], engineLabels: {} },
            status: { state: NodeState.NODE_STATE_READY, addr: `127.0.0.1:${7000 + i}` },
          }),
        );
      }
    });
    this.loops.leaderChanged(true, this.direct.term);
    for (let i = 0; i < steps; i++) {
      this.stats.steps++;
      await this.fault();
      await this.agents(true);
      await this.advance(STEP_MS);
      this.check();
    }
    await this.heal();
    await this.converge();
  }

  // ---- the world ---------------------------------------------------------------------------

  private async fault(): Promise<void> {
    const r = this.rng.float();
    const services = this.store.listServices().filter((s) => !s.pendingDelete);
    const nodes = this.store.listNodes();
    const node = nodes[this.rng.int(0, nodes.length)]!;
    if (r < 0.12 && services.length < 5) {
      const zone = ZONES[this.rng.int(0, ZONES.length)]!;
      const global = this.rng.float() < 0.25;
      const name = `svc${++this.serviceSeq}`;
      await this.write((tx) =>
        tx.createService(
          Service.fromPartial({
            id: name.padEnd(25, "s"),
            spec: {
              name,
              mode: global ? ServiceMode.SERVICE_MODE_GLOBAL : ServiceMode.SERVICE_MODE_REPLICATED,
              replicas: global ? 0 : this.rng.int(1, 5),
              zone,
              container: { image: "127.0.0.1:5000/app:1", command: ["sleep", "600"], env: ["V=1"] },
              restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: BigInt(this.rng.int(1, 4) * 100), maxAttempts: 0, windowMs: 0n },
              updateConfig: { parallelism: this.rng.int(1, 3), delayMs: 0n, monitorMs: 1000n, failureAction: 0, maxFailureRatio: 0 },
            },
          }),
        ),
      );
    } else if (r < 0.22 && services.length > 0) {
      const s = services[this.rng.int(0, services.length)]!;
      const scale = s.spec!.mode === ServiceMode.SERVICE_MODE_REPLICATED && this.rng.float() < 0.5;
      await this.editService(s.id, (x) => {
        if (scale) x.spec!.replicas = this.rng.int(0, 6);
        else x.spec!.container!.env = [`V=${this.rng.int(2, 1000)}`];
      });
    } else if (r < 0.26 && services.length > 0) {
      const s = services[this.rng.int(0, services.length)]!;
      await this.editService(s.id, (x) => (x.pendingDelete = true));
    } else if (r < 0.36) {
      this.stats.relabels++;
      const zone = ZONES[this.rng.int(0, ZONES.length)]!;
      await this.editNode(node.id, (n) => {
        n.spec!.labels = zone === "" ? {} : { zone };
      });
    } else if (r < 0.46) {
      const down = node.status?.state !== NodeState.NODE_STATE_DOWN;
      if (down) this.stats.nodeDowns++;
      await this.editNode(node.id, (n) => (n.status = { ...n.status!, state: down ? NodeState.NODE_STATE_DOWN : NodeState.NODE_STATE_READY }));
    } else if (r < 0.52) {
      const availability = [NodeAvailability.NODE_AVAILABILITY_ACTIVE, NodeAvailability.NODE_AVAILABILITY_PAUSE, NodeAvailability.NODE_AVAILABILITY_DRAIN][this.rng.int(0, 3)]!;
      await this.editNode(node.id, (n) => (n.spec!.availability = availability));
    } else if (r < 0.6) {
      // Leadership moves: the old term's loops stop (their proposals are refused from now on) and
      // the new leader's start from the same replicated state.
      this.stats.leaderChanges++;
      this.loops.leaderChanged(false, this.direct.term);
      this.direct.term++;
      await this.settle();
      this.loops.leaderChanged(true, this.direct.term);
    }
    await this.settle();
  }

  /** The agents: tasks on READY nodes start a little after assignment (some fail); stopped ones report SHUTDOWN. */
  private async agents(mayFail: boolean): Promise<void> {
    const now = this.clock.nowMs();
    for (const t of this.store.listTasks()) {
      const state = t.status?.state ?? TaskState.TASK_STATE_NEW;
      if (t.nodeId === "" || state >= TaskState.TASK_STATE_COMPLETE) continue;
      const node = this.store.getNode(t.nodeId);
      if (node === undefined || node.status?.state !== NodeState.NODE_STATE_READY) continue;
      if (t.desiredState >= TaskState.TASK_STATE_SHUTDOWN) {
        await this.report(t.id, TaskState.TASK_STATE_SHUTDOWN);
        continue;
      }
      if (state < TaskState.TASK_STATE_ASSIGNED) continue;
      if (state < TaskState.TASK_STATE_RUNNING) {
        let plan = this.startsAt.get(t.id);
        if (plan === undefined) this.startsAt.set(t.id, (plan = { atMs: now + this.rng.int(0, 1500), fails: mayFail && this.rng.float() < 0.1 }));
        if (now < plan.atMs || (t.startAfter !== undefined && now < t.startAfter.getTime())) continue;
        if (plan.fails) this.stats.failures++;
        await this.report(t.id, plan.fails ? TaskState.TASK_STATE_FAILED : TaskState.TASK_STATE_RUNNING);
      } else if (mayFail && this.rng.float() < 0.01) {
        this.stats.failures++;
        await this.report(t.id, TaskState.TASK_STATE_FAILED);
      }
    }
  }

  /** Faults end: every node READY and active; leadership stays. */
  private async heal(): Promise<void> {
    for (const n of this.store.listNodes()) {
      await this.editNode(n.id, (x) => {
        x.status = { ...x.status!, state: NodeState.NODE_STATE_READY };
        x.spec!.availability = NodeAvailability.NODE_AVAILABILITY_ACTIVE;
      });
    }
  }

  private async converge(): Promise<void> {
    const deadline = this.clock.nowMs() + SETTLE_MS;
    let last = "";
    while (this.clock.nowMs() < deadline) {
      await this.agents(false);
      await this.advance(STEP_MS);
      this.check();
      last = this.unconverged();
      if (last === "") return;
    }
    throw new Violation(`did not converge within ${SETTLE_MS} ms after the faults ended: ${last}`);
  }

  /** "" when every service runs what it should, else what is missing. */
  private unconverged(): string {
    const jobs = this.board.jobs();
    if (jobs.length > 0) return `prefetch jobs still ordered once every task runs: ${jobs.join(", ")}`;
    const nodes = this.store.listNodes();
    for (const s of this.store.listServices()) {
      const tasks = this.store.listTasks({ serviceId: s.id });
      if (s.pendingDelete) return `service ${s.spec!.name} is still being removed (${tasks.length} tasks left)`;
      const zone = zoneOf(s.spec!.zone);
      const eligible = nodes.filter((n) => nodeZone(n) === zone);
      const want = s.spec!.mode === ServiceMode.SERVICE_MODE_GLOBAL ? eligible.length : eligible.length === 0 ? 0 : s.spec!.replicas;
      const running = tasks.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING && t.status?.state === TaskState.TASK_STATE_RUNNING);
      // A paused update (one of its tasks failed: the default failure action) stays paused until an
      // operator acts, as in Swarm: its slots keep running the old spec or the new one.
      const paused = s.updateStatus?.state === UpdateState.UPDATE_STATE_PAUSED || s.updateStatus?.state === UpdateState.UPDATE_STATE_ROLLBACK_PAUSED;
      const current = running.filter((t) => paused || t.specVersion === s.specVersion || sameSpec(t, s));
      if (current.length !== want) {
        const shown = tasks.map((t) => `${t.slot || t.nodeId.slice(0, 6)}:v${t.specVersion}:${TaskState[t.desiredState].slice(11)}/${TaskState[t.status?.state ?? 0].slice(11)}${t.restartDeclined ? ":declined" : ""}${t.nodeId !== "" ? `@${t.nodeId.slice(0, 5)}` : ""}`);
        return `service ${s.spec!.name} (zone ${zone}, ${want} wanted, spec v${s.specVersion}, update ${s.updateStatus?.state ?? "-"}) has ${current.length} running tasks of its spec: ${shown.join(" ")}`;
      }
      for (const t of current) {
        const node = nodes.find((n) => n.id === t.nodeId);
        if (node === undefined || nodeZone(node) !== zone) return `task ${t.id} of ${s.spec!.name} runs on ${t.nodeId}, not a zone-${zone} node`;
      }
    }
    return "";
  }

  /** Safety, after every step. */
  private check(): void {
    if (this.violation !== undefined) throw new Violation(this.violation);
    this.checkPrefetchOrders();
    for (const s of this.store.listServices()) {
      const bySlot = new Map<string, Task[]>();
      for (const t of this.store.listTasks({ serviceId: s.id })) {
        const key = s.spec!.mode === ServiceMode.SERVICE_MODE_GLOBAL ? t.nodeId : String(t.slot);
        bySlot.set(key, [...(bySlot.get(key) ?? []), t]);
      }
      for (const [key, list] of bySlot) {
        const live = list.filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING);
        if (live.length > 1) throw new Violation(`service ${s.spec!.name} slot ${key} has ${live.length} tasks meant to run: ${live.map((t) => t.id).join(", ")}`);
        // Ended tasks beyond the history bound are deleted (tasks told to stop on a DOWN node stay
        // until it reports or is removed: they are not history yet).
        const ended = list.filter((t) => isTerminalState(t.status?.state ?? TaskState.TASK_STATE_NEW));
        if (ended.length > TASK_HISTORY_PER_SLOT) throw new Violation(`service ${s.spec!.name} slot ${key} keeps ${ended.length} ended tasks (history bound ${TASK_HISTORY_PER_SLOT})`);
      }
    }
  }

  /** Every order on the board: a node of the store, of the zone of the job's tasks; candidates of that zone; the header for seeds only. */
  private checkPrefetchOrders(): void {
    const tasks = this.store.listTasks();
    for (const node of this.store.listNodes()) {
      for (const entry of this.board.ordersFor(node.id)) {
        this.stats.prefetchOrders++;
        const { order } = entry;
        const jobTasks = tasks.filter((t) => prefetchJobId(t.serviceId, t.specVersion, t.spec?.imageDigest ?? "") === order.jobId);
        const jobZones = new Set(jobTasks.map((t) => zoneOf(t.zone)));
        if (entry.zone !== nodeZone(node)) throw new Violation(`prefetch order of job ${order.jobId} for ${node.id} of zone "${nodeZone(node)}" was planned for zone "${entry.zone}"`);
        if (!jobZones.has(entry.zone) || jobZones.size !== 1) throw new Violation(`prefetch order of job ${order.jobId} for ${node.id} is in zone "${entry.zone}", its tasks are in ${[...jobZones].join(", ") || "no zone"}`);
        if (!order.seed && order.registryAuthorization !== "") throw new Violation(`prefetch order of job ${order.jobId} gives the registry header to ${node.id}, not a seed`);
        for (const c of order.candidates) {
          const peer = this.store.getNode(c.nodeId);
          if (peer === undefined || nodeZone(peer) !== entry.zone) throw new Violation(`prefetch order of job ${order.jobId} for ${node.id} names candidate ${c.nodeId} outside zone "${entry.zone}"`);
        }
      }
    }
  }

  // ---- plumbing ------------------------------------------------------------------------------

  private async write(build: (tx: StoreTransaction) => void): Promise<void> {
    const result = this.store.apply(this.store.prepare(build, { now: new Date(this.clock.nowMs()) }), { index: this.store.lastAppliedIndex + 1 });
    if (!result.ok) throw result.error;
    await this.settle();
  }

  private async editService(id: string, edit: (s: Service) => void): Promise<void> {
    if (this.store.getService(id) === undefined) return;
    await this.write((tx) => {
      const s = tx.getService(id)!;
      edit(s);
      tx.updateService(s);
    });
  }

  private editNode(id: string, edit: (n: Node) => void): Promise<void> {
    return this.write((tx) => {
      const n = tx.getNode(id)!;
      edit(n);
      tx.updateNode(n);
    });
  }

  private async report(taskId: string, state: TaskState): Promise<void> {
    if (this.store.getTask(taskId) === undefined) return;
    await this.write((tx) => {
      const t = tx.getTask(taskId)!;
      t.status = { ...t.status!, state, message: "", exitCode: state === TaskState.TASK_STATE_FAILED ? 1 : 0, timestamp: new Date(this.clock.nowMs()) };
      tx.updateTask(t);
    });
  }

  private settle(): Promise<void> {
    return settleLoops(this.loops);
  }

  private advance(ms: number): Promise<void> {
    return advanceLoops(this.clock, this.loops, ms);
  }
}

/** The prefetch loop's image source in the simulation: a manifest of one config and one 3 MiB layer, and a seed header. */
const SIM_IMAGES: PrefetchImageSource = {
  image: async () => ({
    manifest: Buffer.from('{"schemaVersion":2}'),
    blobs: [
      { digest: `sha256:${"c".repeat(64)}`, size: 512 },
      { digest: `sha256:${"d".repeat(64)}`, size: 3 * 1024 * 1024 + 1 },
    ],
  }),
  seedAccess: async () => ({ authorization: "Basic c2ltOnNpbQ==" }),
};

function zoneOf(zone: string): string {
  return zone === "" ? DEFAULT_ZONE : zone;
}

/** A task made from the service's current container spec (the version moves on a scale too). */
function sameSpec(t: Task, s: Service): boolean {
  return JSON.stringify(t.spec?.env ?? []) === JSON.stringify(s.spec?.container?.env ?? []);
}
