// Task status reported by agents (UpdateTaskStatus): each update is checked against the task as the
// store has it now (it exists, it is assigned to the caller's node, the state only moves forward and
// is one a node may report), and the accepted ones from every caller are written in batches, one
// proposal at a time, so a burst of reports from many nodes becomes a few raft entries.
import type { Logger } from "pino";
import { ShoalError, type ShoalErrorCode } from "../../base/errors.js";
import type { TaskStatusRefusal, TaskStatusUpdate } from "../../proto/shoal/v1/dispatcher.js";
import { TaskState, type Task } from "../../proto/shoal/v1/objects.js";
import { isTerminalState as isTerminalTaskState } from "../../state/index.js";
import type { ManagerContext } from "../context.js";

/** Updates written in one proposal (each is one task object; MAX_ACTIONS_PER_PROPOSAL is far above). */
export const MAX_STATUS_UPDATES_PER_PROPOSAL = 1024;
/** A batch whose proposal lost a compare-and-set is re-checked and proposed again this many times. */
export const STATUS_WRITE_ATTEMPTS = 5;

/** The states a node reports, in their order; NEW … ASSIGNED and ORPHANED are the managers'. */
const NODE_REPORTED_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.TASK_STATE_ACCEPTED,
  TaskState.TASK_STATE_PREPARING,
  TaskState.TASK_STATE_STARTING,
  TaskState.TASK_STATE_RUNNING,
  TaskState.TASK_STATE_COMPLETE,
  TaskState.TASK_STATE_SHUTDOWN,
  TaskState.TASK_STATE_FAILED,
  TaskState.TASK_STATE_REJECTED,
]);

function stateName(state: TaskState): string {
  return (TaskState[state] ?? String(state)).replace(/^TASK_STATE_/, "");
}

export type StatusCheck = { ok: true; noop: boolean } | { ok: false; code: ShoalErrorCode; message: string };

/**
 * Whether `update` from node `nodeId` may be applied to `task` (as the store has it). Reporting the
 * state the task already has is accepted and changes nothing (an agent resends after a reconnect).
 */
export function checkStatusUpdate(task: Task | undefined, nodeId: string, update: TaskStatusUpdate): StatusCheck {
  if (task === undefined) return { ok: false, code: "NOT_FOUND", message: `task ${update.taskId} does not exist (it may have been removed); drop this update` };
  if (task.nodeId !== nodeId) return { ok: false, code: "PERMISSION_DENIED", message: `task ${task.id} is not assigned to this node; a node reports only its own tasks` };
  const next = update.status?.state;
  if (next === undefined) return { ok: false, code: "INVALID_ARGUMENT", message: `the update of task ${task.id} has no status` };
  if (!NODE_REPORTED_STATES.has(next)) {
    return { ok: false, code: "INVALID_ARGUMENT", message: `a node reports only ACCEPTED, PREPARING, STARTING, RUNNING, COMPLETE, SHUTDOWN, FAILED or REJECTED, not ${stateName(next)}` };
  }
  const current = task.status?.state ?? TaskState.TASK_STATE_NEW;
  // A PREPARING task's message is its progress (its image's prefetch): a new one is written, at
  // the rate the agent sends them (at most about once a second per task). Any other repeat is a no-op.
  if (next === current) return { ok: true, noop: !(next === TaskState.TASK_STATE_PREPARING && update.status!.message !== (task.status?.message ?? "")) };
  if (isTerminalTaskState(current)) {
    return { ok: false, code: "FAILED_PRECONDITION", message: `task ${task.id} has already ended as ${stateName(current)}; it cannot become ${stateName(next)}` };
  }
  if (next < current) {
    return { ok: false, code: "FAILED_PRECONDITION", message: `task ${task.id} is ${stateName(current)}; its status moves only forward, not back to ${stateName(next)}` };
  }
  return { ok: true, noop: false };
}

type StatusWriterContext = Pick<ManagerContext, "store" | "raft" | "propose" | "clock">;

interface Pending {
  nodeId: string;
  updates: readonly TaskStatusUpdate[];
  term: number;
  resolve: (refused: TaskStatusRefusal[]) => void;
  reject: (err: unknown) => void;
}

export class TaskStatusWriter {
  private queue: Pending[] = [];
  private writing = false;

  constructor(
    private readonly ctx: StatusWriterContext,
    private readonly logger: Logger,
  ) {}

  /** Resolves with the refused updates once the accepted ones are applied (or rejects: nothing known applied). */
  submit(nodeId: string, updates: readonly TaskStatusUpdate[], term: number): Promise<TaskStatusRefusal[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ nodeId, updates, term, resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const batch: Pending[] = [];
        let count = 0;
        while (this.queue.length > 0 && (batch.length === 0 || count + this.queue[0]!.updates.length <= MAX_STATUS_UPDATES_PER_PROPOSAL)) {
          const next = this.queue.shift()!;
          batch.push(next);
          count += next.updates.length;
        }
        await this.writeBatch(batch);
      }
    } finally {
      this.writing = false;
    }
  }

  private async writeBatch(batch: Pending[]): Promise<void> {
    const term = batch[0]!.term;
    let lastErr: unknown;
    for (let attempt = 0; attempt < STATUS_WRITE_ATTEMPTS; attempt++) {
      const { updated, refusals } = this.check(batch);
      try {
        if (updated.size > 0) {
          await this.ctx.propose((tx) => {
            for (const task of updated.values()) tx.updateTask(task);
          }, { term });
        }
        for (const [i, pending] of batch.entries()) pending.resolve(refusals[i]!);
        return;
      } catch (err) {
        lastErr = err;
        if (!(err instanceof ShoalError) || err.code !== "VERSION_CONFLICT") break;
      }
    }
    for (const pending of batch) pending.reject(lastErr);
  }

  /** Checks every update of the batch in order against the store (and earlier updates of the batch). */
  private check(batch: Pending[]): { updated: Map<string, Task>; refusals: TaskStatusRefusal[][] } {
    const updated = new Map<string, Task>();
    const refusals: TaskStatusRefusal[][] = [];
    const nowMs = this.ctx.clock.nowMs();
    for (const pending of batch) {
      const refused: TaskStatusRefusal[] = [];
      for (const update of pending.updates) {
        const task = updated.get(update.taskId) ?? this.ctx.store.getTask(update.taskId);
        const verdict = checkStatusUpdate(task, pending.nodeId, update);
        if (!verdict.ok) {
          refused.push({ taskId: update.taskId, code: verdict.code, message: verdict.message });
          if (verdict.code === "PERMISSION_DENIED") {
            this.logger.warn({ event: "security", nodeId: pending.nodeId, taskId: update.taskId, ownerNodeId: task?.nodeId }, "a node reported the status of a task that is not assigned to it; refused");
          }
          continue;
        }
        if (verdict.noop) continue;
        const status = update.status!;
        updated.set(task!.id, { ...task!, status: { ...status, timestamp: status.timestamp ?? new Date(nowMs) } });
      }
      refusals.push(refused);
    }
    return { updated, refusals };
  }
}
