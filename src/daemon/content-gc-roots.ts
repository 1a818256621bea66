// What the content store's GC (src/agent/images/content-gc.ts) must keep on this node, read from
// the agent, and when to ask for a run. The agent's assignment set holds the node's tasks and its
// prefetch orders (the PrefetchRunner runs exactly the jobs ordered there, so "running or ordered"
// is "ordered").
//
// A task uses its image now when the task runner has it (accepted and not yet cleaned up: it
// waits, prepares, runs or stops), or when it is in the assignments with a state no runner has
// taken it past yet (NEW to ASSIGNED, not terminal: it is about to start here). A task the
// managers still show PREPARING or RUNNING that the runner no longer has has ended here (or was
// lost with an earlier agent process): its image is no longer in use by it.
import type { Agent } from "../agent/agent.js";
import type { Executor } from "../agent/executor/executor.js";
import type { GcRoots } from "../agent/images/content-gc.js";
import { isTerminal, stateRank } from "../agent/status-reporter.js";
import { TaskState } from "../proto/shoal/v1/objects.js";

export function gcRootsOf(agent: Agent | undefined): GcRoots {
  const images: string[] = [];
  const blobs: string[] = [];
  const manifests: Uint8Array[] = [];
  if (agent === undefined) return { images, blobs, manifests };
  const running = new Set(agent.runner?.runningTaskIds ?? []);
  for (const task of agent.assignments.tasks.values()) {
    const digest = task.spec?.imageDigest ?? "";
    if (digest !== "" && usesImage(task.id, task.status?.state ?? TaskState.TASK_STATE_NEW, running)) images.push(digest);
  }
  for (const order of agent.assignments.prefetch.values()) {
    if (order.manifestDigest !== "") images.push(order.manifestDigest);
    for (const blob of order.blobs) blobs.push(blob.digest);
    if (order.manifest.length > 0) manifests.push(order.manifest);
  }
  return { images, blobs, manifests };
}

function usesImage(taskId: string, state: TaskState, running: ReadonlySet<string>): boolean {
  if (running.has(taskId)) return true;
  return !isTerminal(state) && stateRank(state) <= stateRank(TaskState.TASK_STATE_ASSIGNED);
}

/**
 * Watches the assignment sets the agent applies: `changed` says whether something that was in use
 * (a task's image, an order) no longer is, which is when a GC run may free something.
 */
export class InUseWatch {
  private previous = new Set<string>();

  changed(agent: Agent | undefined): boolean {
    const now = new Set<string>();
    if (agent !== undefined) {
      const running = new Set(agent.runner?.runningTaskIds ?? []);
      for (const task of agent.assignments.tasks.values()) {
        if (usesImage(task.id, task.status?.state ?? TaskState.TASK_STATE_NEW, running)) now.add(`task:${task.id}`);
      }
      for (const id of agent.assignments.prefetch.keys()) now.add(`order:${id}`);
    }
    const dropped = [...this.previous].some((key) => !now.has(key));
    this.previous = now;
    return dropped;
  }
}

/** `executor`, telling `ended` after it cleaned up a task (the task runner's last step for a task that ended). */
export function withTaskEnded(executor: Executor, ended: () => void): Executor {
  return {
    name: executor.name,
    prepare: (task) => executor.prepare(task),
    start: (task, secretsDir) => executor.start(task, secretsDir),
    stop: (taskId, graceMs) => executor.stop(taskId, graceMs),
    remove: async (taskId) => {
      try {
        await executor.remove(taskId);
      } finally {
        ended();
      }
    },
    cleanupLeftovers: (records) => executor.cleanupLeftovers(records),
  };
}
