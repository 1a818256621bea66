// The restart policy (Swarm's): whether a task that ended is replaced, and after what delay.
import { RestartCondition, TaskState, type RestartPolicy, type Task } from "../../proto/shoal/v1/objects.js";

export const DEFAULT_RESTART_DELAY_MS = 5000;

export type RestartDecision = { restart: true; delayMs: number } | { restart: false; reason: string };

/**
 * `ended`: the slot's task that ended on its own; `slot`: every stored task of the slot (the history,
 * at most a few), to count restarts inside `window_ms`.
 */
export function restartDecision(policy: RestartPolicy | undefined, ended: Task, slot: readonly Task[], nowMs: number): RestartDecision {
  const condition = policy?.condition ?? RestartCondition.RESTART_CONDITION_ANY;
  const state = ended.status?.state;
  if (condition === RestartCondition.RESTART_CONDITION_NONE) return { restart: false, reason: "restart condition is none" };
  if (condition === RestartCondition.RESTART_CONDITION_ON_FAILURE && state === TaskState.TASK_STATE_COMPLETE) {
    return { restart: false, reason: "the task completed and the restart condition is on-failure" };
  }
  const maxAttempts = policy?.maxAttempts ?? 0;
  if (maxAttempts > 0) {
    const windowMs = Number(policy?.windowMs ?? 0n);
    // Without a window the count is the slot's line of restarts; with one, the restarts (tasks made
    // by a restart) that began inside the window.
    const attempts =
      windowMs === 0
        ? ended.restartCount
        : slot.filter((t) => t.restartCount > 0 && (t.meta?.createdAt?.getTime() ?? nowMs) > nowMs - windowMs).length;
    if (attempts >= maxAttempts) return { restart: false, reason: `${attempts} restart${attempts === 1 ? "" : "s"} reached max attempts ${maxAttempts}` };
  }
  const delay = Number(policy?.delayMs ?? 0n);
  return { restart: true, delayMs: delay === 0 ? DEFAULT_RESTART_DELAY_MS : delay };
}
