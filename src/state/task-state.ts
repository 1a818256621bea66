// Task state order (SwarmKit's): states only move forward, and a task at COMPLETE or beyond has ended.
import { TaskState } from "../proto/shoal/v1/objects.js";

/** The task has ended (COMPLETE, SHUTDOWN, FAILED, REJECTED, REMOVE, ORPHANED): nothing runs any more. */
export function isTerminalState(state: TaskState): boolean {
  return state >= TaskState.TASK_STATE_COMPLETE;
}

/** Ended on its own (exit, failure, refusal), as opposed to being stopped by a manager. */
export function endedByItself(state: TaskState): boolean {
  return state === TaskState.TASK_STATE_COMPLETE || state === TaskState.TASK_STATE_FAILED || state === TaskState.TASK_STATE_REJECTED;
}

/** "running", "pending", ... for messages and views. */
export function taskStateName(state: TaskState): string {
  const name = TaskState[state];
  return typeof name === "string" ? name.replace(/^TASK_STATE_/, "").toLowerCase() : `state ${state}`;
}
