// Drives the leader loops (orchestrator, scheduler, constraint enforcer) against an in-memory
// ObjectStore with a propose that applies at once and a ManualClock; plays the agents' part by
// writing task status the way the dispatcher would.
import { pino } from "pino";
import { advanceLoops, settleLoops } from "../../cluster-sim/loop-driver.js";
import { ManualClock } from "../../src/base/clock.js";
import { SeededRandom } from "../../src/base/random.js";
import { applyAtOnce } from "../../src/manager/leadership/apply-at-once.js";
import { LeaderLoops } from "../../src/manager/leadership/leader-loops.js";
import { orchestratorLoop, type ImageResolver } from "../../src/manager/orchestrator/orchestrator.js";
import { schedulerLoop } from "../../src/manager/scheduler/scheduler.js";
import { constraintEnforcerLoop } from "../../src/manager/constraintenforcer/constraint-enforcer.js";
import {
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  Service,
  ServiceSpec,
  TaskState,
  type Task,
} from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore, type LeaderLoopFactory, type StoreTransaction } from "../../src/state/index.js";

/** A valid 25-character ID that reads as its name in failures. */
export function idOf(name: string): string {
  const clean = name.toLowerCase().replace(/[^0-9a-z]/g, "");
  return (clean + "z".repeat(25)).slice(0, 25);
}

export interface NodeOptions {
  zone?: string;
  labels?: Record<string, string>;
  engineLabels?: Record<string, string>;
  executors?: string[];
  state?: NodeState;
  availability?: NodeAvailability;
  hostname?: string;
  role?: NodeRole;
}

export function makeNode(name: string, o: NodeOptions = {}): Node {
  const labels = { ...(o.labels ?? {}) };
  if (o.zone !== undefined) labels.zone = o.zone;
  return Node.fromPartial({
    id: idOf(name),
    spec: { availability: o.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE, labels, desiredRole: o.role ?? NodeRole.NODE_ROLE_WORKER },
    role: o.role ?? NodeRole.NODE_ROLE_WORKER,
    description: { hostname: o.hostname ?? name, executors: o.executors ?? ["runc", "process"], engineLabels: o.engineLabels ?? {} },
    status: { state: o.state ?? NodeState.NODE_STATE_READY },
  });
}

export const DIGEST_A = "sha256:" + "a".repeat(64);

export class Harness {
  readonly clock = new ManualClock(1_700_000_000_000);
  readonly store = new ObjectStore({ clock: this.clock });
  readonly direct = applyAtOnce(this.store, this.clock);
  readonly resolved: string[] = [];
  resolver: ImageResolver = async (image) => {
    this.resolved.push(image);
    return { digest: DIGEST_A };
  };
  readonly loops: LeaderLoops;

  /** `extra`: more loops beside the workload ones (the prefetch loop's tests). */
  constructor(extra: readonly LeaderLoopFactory[] = []) {
    this.loops = new LeaderLoops({
      store: this.store,
      propose: this.direct.propose,
      clock: this.clock,
      random: new SeededRandom(7),
      logger: pino({ level: "silent" }),
      loops: [orchestratorLoop({ resolveImage: (image) => this.resolver(image) }), schedulerLoop(), constraintEnforcerLoop, ...extra],
    });
  }

  async start(): Promise<void> {
    this.loops.leaderChanged(true, this.direct.term);
    await this.settle();
  }

  settle(): Promise<void> {
    return settleLoops(this.loops);
  }

  /** Moves the clock in steps, letting the loops run at every timer that falls due. */
  advance(ms: number): Promise<void> {
    return advanceLoops(this.clock, this.loops, ms);
  }

  async write(build: (tx: StoreTransaction) => void): Promise<void> {
    const result = this.store.apply(this.store.prepare(build, { now: new Date(this.clock.nowMs()) }), { index: this.store.lastAppliedIndex + 1 });
    if (!result.ok) throw result.error;
    await this.settle();
  }

  async addNodes(...nodes: Node[]): Promise<void> {
    await this.write((tx) => nodes.forEach((n) => tx.createNode(n)));
  }

  async updateNode(name: string, edit: (n: Node) => void): Promise<void> {
    await this.write((tx) => {
      const n = tx.getNode(idOf(name))!;
      edit(n);
      tx.updateNode(n);
    });
  }

  async createService(spec: Partial<ServiceSpec>): Promise<string> {
    const id = idOf("svc" + spec.name);
    await this.write((tx) => tx.createService(Service.fromPartial({ id, spec: { replicas: 1, ...spec } })));
    return id;
  }

  async updateService(id: string, edit: (s: Service) => void): Promise<void> {
    await this.write((tx) => {
      const s = tx.getService(id)!;
      edit(s);
      tx.updateService(s);
    });
  }

  tasks(serviceId?: string): Task[] {
    return this.store.listTasks(serviceId === undefined ? {} : { serviceId });
  }

  /** Tasks meant to run (desired RUNNING), sorted by slot. */
  live(serviceId: string): Task[] {
    return this.tasks(serviceId)
      .filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING)
      .sort((a, b) => a.slot - b.slot || (a.nodeId < b.nodeId ? -1 : 1));
  }

  /** What an agent reports: a task's status moves to `state`. */
  async report(taskId: string, state: TaskState, message = "", exitCode = 0): Promise<void> {
    await this.write((tx) => {
      const t = tx.getTask(taskId)!;
      t.status = { ...t.status!, state, message, exitCode, timestamp: new Date(this.clock.nowMs()) };
      tx.updateTask(t);
    });
  }

  /** Every agent does its job: assigned tasks meant to run start RUNNING, tasks told to stop report SHUTDOWN. */
  async agentsRun(options: { except?: (t: Task) => boolean } = {}): Promise<void> {
    const changes = this.tasks().filter((t) => {
      if (options.except?.(t) === true) return false;
      const state = t.status!.state;
      if (t.nodeId === "" || state >= TaskState.TASK_STATE_COMPLETE) return false;
      if (t.desiredState >= TaskState.TASK_STATE_SHUTDOWN) return true;
      const node = this.store.getNode(t.nodeId);
      return node?.status?.state === NodeState.NODE_STATE_READY && state >= TaskState.TASK_STATE_ASSIGNED && state < TaskState.TASK_STATE_RUNNING;
    });
    if (changes.length === 0) return;
    // One proposal per task, as separate agents' reports would be.
    for (const c of changes) {
      this.store.apply(
        this.store.prepare((tx) => {
          const t = tx.getTask(c.id)!;
          const state = t.desiredState >= TaskState.TASK_STATE_SHUTDOWN ? TaskState.TASK_STATE_SHUTDOWN : TaskState.TASK_STATE_RUNNING;
          t.status = { ...t.status!, state, message: "", timestamp: new Date(this.clock.nowMs()) };
          tx.updateTask(t);
        }),
        { index: this.store.lastAppliedIndex + 1 },
      );
    }
    await this.settle();
  }

  stop(): void {
    this.loops.stop();
  }
}
