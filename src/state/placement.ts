// Where a task may run: one pure rule, shared by the scheduler (placing), the constraint enforcer
// (evicting) and the dispatcher (re-checking before it sends anything), so they cannot disagree.
import { NodeAvailability, NodeState, type Node, type Task } from "../proto/shoal/v1/objects.js";
import { DEFAULT_ZONE, matchConstraint, nodeZone, parseConstraint, type Constraint } from "./constraints.js";

export type PlacementFit = { ok: true } | { ok: false; reason: string };

/** A task's security zone: `task.zone`, where "" means the default zone. */
export function taskZone(task: Pick<Task, "zone">): string {
  return task.zone === "" ? DEFAULT_ZONE : task.zone;
}

/** A task's placement rule with its constraints parsed once (the scheduler checks many nodes). */
export interface TaskPlacement {
  zone: string;
  constraints: { expr: string; parsed: Constraint }[];
}

/** Parses the task's constraints; throws INVALID_ARGUMENT on one that does not parse. */
export function taskPlacement(task: Pick<Task, "zone" | "constraints">): TaskPlacement {
  return { zone: taskZone(task), constraints: task.constraints.map((expr) => ({ expr, parsed: parseConstraint(expr) })) };
}

/**
 * Zone first (DESIGN rule 7: a task of zone Z only on a node whose manager-set `zone` label is Z, a
 * default-zone task only on a node without one), then every constraint. Engine labels may satisfy a
 * constraint but never a zone: the zone comes only from `node.spec.labels.zone`.
 */
export function placementFits(placement: TaskPlacement, node: Node): PlacementFit {
  const zone = nodeZone(node);
  if (zone !== placement.zone) return { ok: false, reason: `node is in zone ${zone}, the task's zone is ${placement.zone}` };
  for (const c of placement.constraints) {
    if (!matchConstraint(node, c.parsed)) return { ok: false, reason: `node does not satisfy ${c.expr}` };
  }
  return { ok: true };
}

/** Does node N satisfy task T's zone and constraints? A constraint that does not parse never fits. */
export function taskFitsNode(task: Task, node: Node): PlacementFit {
  let placement: TaskPlacement;
  try {
    placement = taskPlacement(task);
  } catch (err) {
    return { ok: false, reason: `the task has an invalid constraint (${err instanceof Error ? err.message : String(err)})` };
  }
  return placementFits(placement, node);
}

/** The executors a node reported; a node that reported none has "process" only when it said so. */
export function nodeOffersExecutor(node: Node, executor: string): boolean {
  const wanted = executor === "" ? "process" : executor;
  return (node.description?.executors ?? []).includes(wanted);
}

/** Whether the scheduler may give the node new tasks: READY and `active` (pause and drain: none). */
export function nodeTakesNewTasks(node: Node): PlacementFit {
  const state = node.status?.state ?? NodeState.NODE_STATE_UNKNOWN;
  if (state !== NodeState.NODE_STATE_READY) return { ok: false, reason: `node is ${nodeStateName(state)}` };
  const availability = node.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE;
  if (availability === NodeAvailability.NODE_AVAILABILITY_PAUSE) return { ok: false, reason: "node is paused" };
  if (availability === NodeAvailability.NODE_AVAILABILITY_DRAIN) return { ok: false, reason: "node is drained" };
  return { ok: true };
}

export function nodeStateName(state: NodeState): string {
  switch (state) {
    case NodeState.NODE_STATE_READY:
      return "ready";
    case NodeState.NODE_STATE_DOWN:
      return "down";
    case NodeState.NODE_STATE_DISCONNECTED:
      return "disconnected";
    default:
      return "not ready";
  }
}
