// The dispatcher's security-zone re-check (DESIGN rule 7), pure: may this task, or this secret for this
// task, go to a node whose store zone and certificate zone are given? Placement (the scheduler) is a
// separate decision; this is the last check before bytes leave the manager.
import { TaskState, type Node, type Secret, type Task } from "../proto/shoal/v1/objects.js";
import { nodeZone } from "./constraints.js";
import { taskZone, type PlacementFit } from "./placement.js";
import { isTerminalState } from "./task-state.js";

export type ZoneCheck = PlacementFit;

/** A task's or secret's zone field as a zone name: "" is the default zone. */
export function effectiveZone(zone: string): string {
  return taskZone({ zone });
}

/**
 * The node's zone in the store (its `zone` label) and the zone in the certificate it presented must
 * both equal the task's zone. A relabelled node still on its old certificate fails one of the two,
 * whichever zone the task is in, until it presents the reissued certificate.
 */
export function checkTaskZoneForNode(task: Pick<Task, "zone">, node: Pick<Node, "spec">, certZone: string): ZoneCheck {
  const taskZone = effectiveZone(task.zone);
  const storeZone = nodeZone(node);
  const presented = effectiveZone(certZone);
  if (storeZone !== taskZone) return { ok: false, reason: `the task is in zone ${taskZone} but the node is in zone ${storeZone} in the store` };
  if (presented !== taskZone) return { ok: false, reason: `the task is in zone ${taskZone} but the node's certificate says zone ${presented}` };
  return { ok: true };
}

/** A zoned secret goes only with a task of its zone; an unzoned one with any task. */
export function checkSecretZoneForTask(secret: Pick<Secret, "spec">, task: Pick<Task, "zone">): ZoneCheck {
  const secretZone = secret.spec?.zone ?? "";
  if (secretZone === "") return { ok: true };
  const taskZone = effectiveZone(task.zone);
  if (secretZone !== taskZone) return { ok: false, reason: `the secret belongs to zone ${secretZone} and the task is in zone ${taskZone}` };
  return { ok: true };
}

/**
 * The tasks the dispatcher pushes to their node: those the scheduler assigned (ASSIGNED or later: a
 * global service's task names its node while still PENDING, before its fit is checked), except
 * those that ended and are meant to stay down (terminal status and desired state SHUTDOWN or later).
 */
export function isTaskPushed(task: Pick<Task, "status" | "desiredState">): boolean {
  const state = task.status?.state ?? TaskState.TASK_STATE_NEW;
  if (state < TaskState.TASK_STATE_ASSIGNED) return false;
  return !(isTerminalState(state) && task.desiredState >= TaskState.TASK_STATE_SHUTDOWN);
}

/** A task that holds its secrets on its node: assigned and not yet ended (ASSIGNED … RUNNING). */
export function taskHoldsSecrets(task: Pick<Task, "status">): boolean {
  const state = task.status?.state ?? TaskState.TASK_STATE_NEW;
  return state >= TaskState.TASK_STATE_ASSIGNED && !isTerminalState(state);
}
