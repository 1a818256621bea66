// One service's reconcile pass (pure: the store's objects in, a plan out). Replicated services keep one
// task per slot 1..replicas, global services one per eligible node. A task whose node is DOWN, gone or
// drained is replaced; a task that ended follows the restart policy; a task that no longer matches the
// spec is replaced by the rolling update (rolling-update.ts); old ended tasks beyond the history bound
// are deleted.
import {
  NodeAvailability,
  NodeState,
  ServiceMode,
  TaskState,
  type Node,
  type Service,
  type Task,
} from "../../proto/shoal/v1/objects.js";
import { isTerminalState, nodeOffersExecutor, placementFits, taskPlacement, type TaskPlacement } from "../../state/index.js";
import { emptyPlan, wakeAt, type ServicePlan, type WriteUnit } from "./plan.js";
import { restartDecision } from "./restart-policy.js";
import { planRollingUpdate } from "./rolling-update.js";
import { executorFor, newTask, serviceFingerprint, slotKeyOf, taskFingerprint, zoneFor, type SlotKey } from "./task-template.js";

/** Ended tasks kept per slot (or node) for `service ps`; older ones are deleted. */
export const TASK_HISTORY_PER_SLOT = 5;

export type ImageState =
  | { kind: "none" }
  | { kind: "unknown" }
  | { kind: "resolved"; digest: string }
  /** `fresh`: resolution failed in this pass (tasks are made REJECTED with the message); else wait for retryAtMs. */
  | { kind: "failed"; message: string; fresh: boolean; retryAtMs: number };

export interface ReconcileInput {
  service: Service;
  tasks: readonly Task[];
  nodes: ReadonlyMap<string, Node>;
  nowMs: number;
  image: ImageState;
  /** When the leader first saw the task RUNNING (recorded on first call). */
  runningSince(task: Task): number;
  /** The same, without recording: undefined if never seen RUNNING. */
  seenRunningAt(task: Task): number | undefined;
  /** IDs for new tasks (default: random). */
  newId?: () => string;
}

type GlobalEligibility = "run" | "keep" | "no";

/** The slot's live task (desired RUNNING or earlier), if any: at most one per slot. */
export function currentTask(slot: readonly Task[]): Task | undefined {
  return slot.find((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING);
}

function createdMs(task: Task): number {
  return task.meta?.createdAt?.getTime() ?? 0;
}

/** Newest first: by creation time, then restart count (a slot's line of restarts counts up), then ID. */
function newestFirst(a: Task, b: Task): number {
  return createdMs(b) - createdMs(a) || b.restartCount - a.restartCount || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

export function reconcileService(input: ReconcileInput): ServicePlan {
  const { service, nowMs } = input;
  const spec = service.spec!;
  const plan = emptyPlan();
  const global = spec.mode === ServiceMode.SERVICE_MODE_GLOBAL;
  const fingerprint = serviceFingerprint(service);
  const dirty = (t: Task): boolean => taskFingerprint(t) !== fingerprint;

  const slots = new Map<SlotKey, Task[]>();
  for (const task of input.tasks) {
    const key = slotKeyOf(service, task);
    let list = slots.get(key);
    if (list === undefined) slots.set(key, (list = []));
    list.push(task);
  }
  for (const list of slots.values()) list.sort(newestFirst);

  // Which slots should hold a task.
  const wanted = new Map<SlotKey, { slot: number; nodeId: string; eligibility: GlobalEligibility }>();
  if (global) {
    const placement = servicePlacement(service);
    for (const node of input.nodes.values()) {
      const eligibility = globalEligibility(service, placement, node);
      if (eligibility !== "no") wanted.set(`node:${node.id}`, { slot: 0, nodeId: node.id, eligibility });
    }
  } else {
    for (let slot = 1; slot <= spec.replicas; slot++) wanted.set(`slot:${slot}`, { slot, nodeId: "", eligibility: "run" });
  }

  /** Returns the replacement, or undefined when it cannot be made now (image not known yet). */
  const make = (where: { slot: number; nodeId: string }, restartCount: number, startAfterMs?: number): Task | undefined => {
    let digest = "";
    let rejected: string | undefined;
    switch (input.image.kind) {
      case "none":
        break;
      case "resolved":
        digest = input.image.digest;
        break;
      case "unknown":
        plan.needsImage = true;
        return undefined;
      case "failed":
        if (!input.image.fresh) {
          wakeAt(plan, input.image.retryAtMs);
          return undefined;
        }
        rejected = input.image.message;
        break;
    }
    return newTask(service, { slot: where.slot, nodeId: where.nodeId, imageDigest: digest, nowMs, startAfterMs, restartCount, rejected, id: input.newId?.() });
  };

  const dirtyKeys: SlotKey[] = [];
  const keys = new Set<SlotKey>([...wanted.keys(), ...slots.keys()]);
  for (const key of keys) {
    const slotTasks = slots.get(key) ?? [];
    const where = wanted.get(key);
    const cur = currentTask(slotTasks);
    if (where === undefined) {
      // Scaled down, or (global) the node no longer qualifies.
      if (cur !== undefined) plan.units.push(stopUnit(cur, input.nodes));
      continue;
    }
    if (cur !== undefined) {
      const node = cur.nodeId === "" ? undefined : input.nodes.get(cur.nodeId);
      const moveReason =
        cur.nodeId !== "" && node === undefined
          ? "removed"
          : node?.status?.state === NodeState.NODE_STATE_DOWN
            ? "down"
            : !global && node?.spec?.availability === NodeAvailability.NODE_AVAILABILITY_DRAIN
              ? "drained"
              : undefined;
      if (moveReason !== undefined) {
        // A move is not a restart: no delay, and the restart count is carried over.
        const unit = stopUnit(cur, input.nodes);
        const replacement = make(where, cur.restartCount);
        if (replacement !== undefined) unit.creates.push(replacement);
        plan.units.push(unit);
        continue;
      }
      if (isTerminalState(cur.status?.state ?? TaskState.TASK_STATE_NEW)) {
        const decision = restartDecision(spec.restartPolicy, cur, slotTasks, nowMs);
        if (!decision.restart) {
          plan.units.push({ creates: [], updates: [{ ...cur, desiredState: TaskState.TASK_STATE_SHUTDOWN, restartDeclined: true }], removes: [] });
          continue;
        }
        const replacement = make(where, dirty(cur) ? 0 : cur.restartCount + 1, nowMs + decision.delayMs);
        if (replacement === undefined) continue; // keep the ended task as the slot's until the image is known
        plan.units.push({ creates: [replacement], updates: [{ ...cur, desiredState: TaskState.TASK_STATE_SHUTDOWN }], removes: [] });
        continue;
      }
      if (dirty(cur)) dirtyKeys.push(key);
      continue;
    }
    if (where.eligibility === "keep") continue; // a paused node gets no new task
    // At most one task of a slot is marked declined: the slot's last (a new task clears the mark).
    const declined = slotTasks.find((t) => t.restartDeclined);
    if (declined !== undefined && !dirty(declined)) continue;
    // Empty slot, its last task was stopped by a manager (constraint enforcer), or a new spec after a
    // declined restart. The restart count carries over within one spec.
    const restartCount = Math.max(0, ...slotTasks.filter((t) => !dirty(t) && !t.restartDeclined).map((t) => t.restartCount));
    const created = make(where, restartCount);
    if (created === undefined) continue;
    const unit: WriteUnit = { creates: [created], updates: [], removes: [] };
    if (declined !== undefined) unit.updates.push({ ...declined, restartDeclined: false });
    plan.units.push(unit);
  }

  planRollingUpdate(input, plan, slots, dirtyKeys, make, dirty);
  trimHistory(plan, slots, wanted, input.nodes);
  return plan;
}

function servicePlacement(service: Service): TaskPlacement {
  return taskPlacement({ zone: zoneFor(service), constraints: service.spec!.constraints });
}

function globalEligibility(service: Service, placement: TaskPlacement, node: Node): GlobalEligibility {
  if (node.status?.state === NodeState.NODE_STATE_DOWN) return "no";
  const availability = node.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE;
  if (availability === NodeAvailability.NODE_AVAILABILITY_DRAIN) return "no";
  if (!nodeOffersExecutor(node, executorFor(service))) return "no";
  if (!placementFits(placement, node).ok) return "no";
  return availability === NodeAvailability.NODE_AVAILABILITY_PAUSE ? "keep" : "run";
}

/** Desired SHUTDOWN; a task on a removed node is ORPHANED, one never assigned is SHUTDOWN at once. */
export function stopUnit(task: Task, nodes: ReadonlyMap<string, Node>): WriteUnit {
  const stopped: Task = { ...task, desiredState: Math.max(task.desiredState, TaskState.TASK_STATE_SHUTDOWN) };
  const state = task.status?.state ?? TaskState.TASK_STATE_NEW;
  if (!isTerminalState(state)) {
    if (task.nodeId === "") stopped.status = { ...task.status!, state: TaskState.TASK_STATE_SHUTDOWN, message: "shut down before it was assigned" };
    else if (!nodes.has(task.nodeId)) stopped.status = { ...task.status!, state: TaskState.TASK_STATE_ORPHANED, message: `node ${task.nodeId} was removed` };
  }
  return { creates: [], updates: [stopped], removes: [] };
}

/**
 * Keeps the last TASK_HISTORY_PER_SLOT ended tasks of each slot that still exists; deletes older
 * ones, and every ended task of a slot that is gone. Tasks shut down on a removed node become ORPHANED.
 */
function trimHistory(plan: ServicePlan, slots: Map<SlotKey, Task[]>, wanted: Map<SlotKey, unknown>, nodes: ReadonlyMap<string, Node>): void {
  const touched = new Set<string>();
  for (const unit of plan.units) for (const t of unit.updates) touched.add(t.id);
  for (const [key, list] of slots) {
    let kept = 0;
    const keep = wanted.has(key) ? TASK_HISTORY_PER_SLOT : 0;
    for (const task of list) {
      if (touched.has(task.id) || task.desiredState < TaskState.TASK_STATE_SHUTDOWN) continue;
      const state = task.status?.state ?? TaskState.TASK_STATE_NEW;
      if (!isTerminalState(state)) {
        if (task.nodeId === "" || !nodes.has(task.nodeId)) plan.units.push(stopUnit(task, nodes));
        continue;
      }
      if (kept < keep) {
        kept++;
        continue;
      }
      plan.units.push({ creates: [], updates: [], removes: [task] });
    }
  }
}

export { wakeAt };
