// Pure placement: which node each pending task goes to. Only READY, active nodes of the task's zone
// that offer its executor and satisfy its constraints are candidates; among them the one with the
// fewest tasks of the same service, then the fewest tasks overall, then the lowest node ID (spread).
// A task that no node fits stays pending with a reason that says why.
import { TaskState, type Node, type Task } from "../../proto/shoal/v1/objects.js";
import { isTerminalState, nodeOffersExecutor, nodeTakesNewTasks, nodeZone, placementFits, taskPlacement, type TaskPlacement } from "../../state/index.js";

export interface Assignment {
  taskId: string;
  nodeId: string;
}

export interface PendingReason {
  taskId: string;
  reason: string;
}

export interface ScheduleResult {
  assignments: Assignment[];
  pending: PendingReason[];
}

/** Tasks the scheduler should place: pending and meant to run. */
export function isSchedulable(task: Task): boolean {
  return task.status?.state === TaskState.TASK_STATE_PENDING && task.desiredState <= TaskState.TASK_STATE_RUNNING;
}

/** Tasks that occupy a node for spreading: assigned there and not ended. */
export function occupiesNode(task: Task): boolean {
  return task.nodeId !== "" && !isTerminalState(task.status?.state ?? TaskState.TASK_STATE_NEW) && !isSchedulable(task);
}

interface Group {
  placement: TaskPlacement | { error: string };
  executor: string;
  serviceId: string;
  tasks: Task[];
}

/**
 * `nodes`: every node (any order); `tasks`: the tasks to place (see isSchedulable; a task with a
 * node_id, as a global service's, is checked against that node only); `existing`: tasks already on
 * nodes (see occupiesNode), counted for spreading.
 */
export function schedule(nodes: readonly Node[], tasks: readonly Task[], existing: readonly Task[]): ScheduleResult {
  const sorted = [...nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const indexById = new Map<string, number>();
  sorted.forEach((n, i) => indexById.set(n.id, i));
  const total = new Int32Array(sorted.length);
  const perService = new Map<string, Int32Array>();
  const serviceCounts = (serviceId: string): Int32Array => {
    let counts = perService.get(serviceId);
    if (counts === undefined) perService.set(serviceId, (counts = new Int32Array(sorted.length)));
    return counts;
  };
  for (const task of existing) {
    const i = indexById.get(task.nodeId);
    if (i === undefined) continue;
    total[i]!++;
    serviceCounts(task.serviceId)[i]!++;
  }
  const ready = sorted.map((n) => nodeTakesNewTasks(n));
  const zones = sorted.map((n) => nodeZone(n));

  const groups = new Map<string, Group>();
  const result: ScheduleResult = { assignments: [], pending: [] };
  for (const task of tasks) {
    const executor = task.executor === "" ? "process" : task.executor;
    if (task.nodeId !== "") {
      placeOnGivenNode(task, executor);
      continue;
    }
    const key = `${task.serviceId}\u0000${task.zone}\u0000${executor}\u0000${task.constraints.join("\u0000")}`;
    let group = groups.get(key);
    if (group === undefined) {
      let placement: Group["placement"];
      try {
        placement = taskPlacement(task);
      } catch (err) {
        placement = { error: err instanceof Error ? err.message : String(err) };
      }
      groups.set(key, (group = { placement, executor, serviceId: task.serviceId, tasks: [] }));
    }
    group.tasks.push(task);
  }

  for (const group of groups.values()) {
    if ("error" in group.placement) {
      for (const t of group.tasks) result.pending.push({ taskId: t.id, reason: `the task cannot be placed: ${group.placement.error}` });
      continue;
    }
    const placement = group.placement;
    const candidates: number[] = [];
    for (let i = 0; i < sorted.length; i++) {
      if (zones[i] !== placement.zone || !ready[i]!.ok) continue;
      const node = sorted[i]!;
      if (!nodeOffersExecutor(node, group.executor)) continue;
      if (placementFits(placement, node).ok) candidates.push(i);
    }
    if (candidates.length === 0) {
      const reason = noFitReason(sorted, zones, ready, placement, group.executor);
      for (const t of group.tasks) result.pending.push({ taskId: t.id, reason });
      continue;
    }
    const mine = serviceCounts(group.serviceId);
    for (const task of group.tasks) {
      let best = candidates[0]!;
      for (let k = 1; k < candidates.length; k++) {
        const i = candidates[k]!;
        if (mine[i]! < mine[best]! || (mine[i] === mine[best] && total[i]! < total[best]!)) best = i;
      }
      mine[best]!++;
      total[best]!++;
      result.assignments.push({ taskId: task.id, nodeId: sorted[best]!.id });
    }
  }
  return result;

  function placeOnGivenNode(task: Task, executor: string): void {
    const i = indexById.get(task.nodeId);
    const node = i === undefined ? undefined : sorted[i]!;
    let why: string | undefined;
    if (node === undefined) why = `its node ${task.nodeId} is not in the cluster`;
    else if (!ready[i!]!.ok) why = (ready[i!] as { reason: string }).reason;
    else if (!nodeOffersExecutor(node, executor)) why = `node has no ${executor} executor`;
    else {
      const fit = safeFit(task, node);
      if (!fit.ok) why = fit.reason;
    }
    if (why !== undefined) {
      result.pending.push({ taskId: task.id, reason: `waiting for node ${task.nodeId}: ${why}` });
      return;
    }
    total[i!]!++;
    serviceCounts(task.serviceId)[i!]!++;
    result.assignments.push({ taskId: task.id, nodeId: task.nodeId });
  }
}

function safeFit(task: Task, node: Node): { ok: true } | { ok: false; reason: string } {
  try {
    return placementFits(taskPlacement(task), node);
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

/** "no node in zone a satisfies the task (3 nodes in zone a: 2 node is down, 1 node does not satisfy …)". */
function noFitReason(
  nodes: readonly Node[],
  zones: readonly string[],
  ready: readonly ({ ok: true } | { ok: false; reason: string })[],
  placement: TaskPlacement,
  executor: string,
): string {
  const counts = new Map<string, number>();
  let inZone = 0;
  for (let i = 0; i < nodes.length; i++) {
    if (zones[i] !== placement.zone) continue;
    inZone++;
    const r = ready[i]!;
    let why: string;
    if (!r.ok) why = r.reason;
    else if (!nodeOffersExecutor(nodes[i]!, executor)) why = `node has no ${executor} executor`;
    else {
      const fit = placementFits(placement, nodes[i]!);
      why = fit.ok ? "node fits" : fit.reason;
    }
    counts.set(why, (counts.get(why) ?? 0) + 1);
  }
  if (inZone === 0) return `no node in zone ${placement.zone} (the task's zone; tasks are never placed outside it)`;
  const parts = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([why, n]) => `${n}× ${why}`);
  return `no node in zone ${placement.zone} satisfies the task (${inZone} node${inZone === 1 ? "" : "s"} in the zone: ${parts.join("; ")})`;
}
