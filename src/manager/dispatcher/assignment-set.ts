// What one node may hold right now, read from the store: the tasks assigned to it that are still
// pushed, and the secrets those tasks need (DESIGN rules 6 and 7). Every task and secret is re-checked
// here against the node's zone in the store and in the certificate its session presented; whatever
// fails a check is left out and returned as a refusal for the security log.
import { Task, TaskState, type Secret } from "../../proto/shoal/v1/objects.js";
import { checkSecretZoneForTask, checkTaskZoneForNode, isTaskPushed, taskHoldsSecrets, type ObjectStore } from "../../state/index.js";

export type AssignmentStoreView = Pick<ObjectStore, "getNode" | "listTasks" | "getSecret">;

export interface AssignmentRefusal {
  taskId: string;
  taskZone: string;
  secretId?: string;
  secretName?: string;
  reason: string;
}

export interface AssignmentSet {
  tasks: Map<string, Task>;
  /** Secrets without their data (the stream adds it when it sends one). */
  secrets: Map<string, Secret>;
  refusals: AssignmentRefusal[];
}

/**
 * Tells a task version the agent must see from one it need not: everything but the metadata and the
 * status the agent itself reported (echoing an agent's own report back would double the traffic).
 * States up to ASSIGNED and ORPHANED are the managers', so they count.
 */
export function taskFingerprint(task: Task): string {
  const state = task.status?.state ?? TaskState.TASK_STATE_NEW;
  const managerStatus = state <= TaskState.TASK_STATE_ASSIGNED || state === TaskState.TASK_STATE_ORPHANED;
  return Buffer.from(Task.encode({ ...task, meta: undefined, status: managerStatus ? task.status : undefined }).finish()).toString("base64");
}

export function secretFingerprint(secret: Secret): string {
  return String(secret.meta?.version ?? 0n);
}

export function computeAssignmentSet(store: AssignmentStoreView, nodeId: string, certZone: string): AssignmentSet {
  const out: AssignmentSet = { tasks: new Map(), secrets: new Map(), refusals: [] };
  const node = store.getNode(nodeId);
  if (node === undefined) return out;
  for (const task of store.listTasks({ nodeId })) {
    if (!isTaskPushed(task)) continue;
    const zone = checkTaskZoneForNode(task, node, certZone);
    if (!zone.ok) {
      out.refusals.push({ taskId: task.id, taskZone: task.zone, reason: zone.reason });
      continue;
    }
    out.tasks.set(task.id, task);
    if (!taskHoldsSecrets(task)) continue;
    for (const ref of task.spec?.secrets ?? []) {
      if (out.secrets.has(ref.secretId)) continue;
      const secret = store.getSecret(ref.secretId);
      if (secret === undefined) continue; // removed: the task will fail to prepare and say so
      const fits = checkSecretZoneForTask(secret, task);
      if (!fits.ok) {
        out.refusals.push({ taskId: task.id, taskZone: task.zone, secretId: secret.id, secretName: secret.spec?.name ?? "", reason: fits.reason });
        continue;
      }
      out.secrets.set(secret.id, secret);
    }
  }
  return out;
}
