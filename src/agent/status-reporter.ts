// Task status reports to the dispatcher (UpdateTaskStatus): only forward (a state never goes back),
// batched (updates that queue while a call is in flight go in the next call, the latest per task),
// and kept across reconnects and manager failover until a manager took them.
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Clock, Timer } from "../base/clock.js";
import type { ShoalErrorCode } from "../base/errors.js";
import type { UpdateTaskStatusResponse } from "../proto/shoal/v1/dispatcher.js";
import { TaskState, type TaskStatus } from "../proto/shoal/v1/objects.js";
import { unaryCall } from "../transport/client.js";
import { fromGrpcError } from "../transport/errors.js";
import { CALL_DEADLINE_MS, type SessionLink } from "./session.js";

/** Updates per UpdateTaskStatus call. */
export const MAX_UPDATES_PER_CALL = 100;
/** Pending updates kept at most (the oldest tasks' updates are dropped beyond it, with a warning). */
export const MAX_PENDING_UPDATES = 10_000;
/** How long updates gather before a call (a burst of transitions becomes one call). */
const BATCH_WINDOW_MS = 20;
const RETRY_MS = 500;

/** Errors after which the same updates may succeed later (or on another manager). */
export const RETRYABLE: ReadonlySet<ShoalErrorCode> = new Set<ShoalErrorCode>(["UNAVAILABLE", "NOT_LEADER", "NO_QUORUM", "TIMEOUT", "QUEUE_FULL", "PROPOSAL_DROPPED", "OUTCOME_UNKNOWN", "NOT_FOUND", "INTERNAL"]);

/** The order of the task lifecycle; ORPHANED and REMOVE are the managers' own. */
export function stateRank(state: TaskState): number {
  switch (state) {
    case TaskState.TASK_STATE_NEW:
      return 0;
    case TaskState.TASK_STATE_PENDING:
      return 1;
    case TaskState.TASK_STATE_ASSIGNED:
      return 2;
    case TaskState.TASK_STATE_ACCEPTED:
      return 3;
    case TaskState.TASK_STATE_PREPARING:
      return 4;
    case TaskState.TASK_STATE_STARTING:
      return 5;
    case TaskState.TASK_STATE_RUNNING:
      return 6;
    default:
      return 7; // COMPLETE, SHUTDOWN, FAILED, REJECTED, ORPHANED, REMOVE: terminal
  }
}

export function isTerminal(state: TaskState): boolean {
  return stateRank(state) >= 7;
}

export class StatusReporter {
  private readonly pending = new Map<string, TaskStatus>();
  /** The furthest state reported (or queued) per task, so nothing goes backwards. */
  private readonly furthest = new Map<string, TaskState>();
  private link: SessionLink | undefined;
  private flushing = false;
  private timer: Timer | undefined;
  private stopped = false;

  constructor(private readonly opts: { clock: Clock; logger: Logger }) {}

  /**
   * Queues `status` for `taskId` unless it would move the task backwards. The same state again is
   * taken while it is not terminal: a new message for it (PREPARING with the image's progress).
   */
  report(taskId: string, status: TaskStatus): void {
    const previous = this.furthest.get(taskId);
    const again = previous === status.state && !isTerminal(status.state);
    if (previous !== undefined && !again && stateRank(status.state) <= stateRank(previous)) return;
    this.furthest.set(taskId, status.state);
    if (!this.pending.has(taskId) && this.pending.size >= MAX_PENDING_UPDATES) {
      const oldest = this.pending.keys().next().value as string;
      this.pending.delete(oldest);
      this.opts.logger.warn({ taskId: oldest }, "too many task status updates waiting for a manager; dropped the oldest");
    }
    this.pending.delete(taskId); // re-insert: the map's order is the order of the latest change
    this.pending.set(taskId, status);
    this.schedule(BATCH_WINDOW_MS);
  }

  /** The furthest state this agent reported for the task (undefined: none). */
  reported(taskId: string): TaskState | undefined {
    return this.furthest.get(taskId);
  }

  /** Forgets a task that left the assignments (its last update still goes out). */
  forget(taskId: string): void {
    if (!this.pending.has(taskId)) this.furthest.delete(taskId);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  connected(link: SessionLink): void {
    this.link = link;
    this.schedule(0);
  }

  disconnected(): void {
    this.link = undefined;
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  private schedule(ms: number): void {
    if (this.stopped || this.timer !== undefined || this.flushing || this.link === undefined || this.pending.size === 0) return;
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
  }

  private async flush(): Promise<void> {
    const link = this.link;
    if (link === undefined || this.flushing || this.stopped) return;
    this.flushing = true;
    let retryMs = BATCH_WINDOW_MS;
    try {
      const batch = [...this.pending.entries()].slice(0, MAX_UPDATES_PER_CALL);
      try {
        await this.send(link, batch);
        this.settle(batch);
      } catch (err) {
        const shoal = fromGrpcError(err);
        if (RETRYABLE.has(shoal.code)) {
          this.opts.logger.debug({ code: shoal.code, updates: batch.length }, "task status not taken; retrying");
          retryMs = RETRY_MS;
        } else if (batch.length > 1) {
          // One refused entry refuses its batch: send them one by one so the others still go.
          for (const entry of batch) {
            try {
              await this.send(link, [entry]);
              this.settle([entry]);
            } catch (oneErr) {
              const one = fromGrpcError(oneErr);
              if (RETRYABLE.has(one.code)) {
                retryMs = RETRY_MS;
                break;
              }
              this.refused(entry, one.code, one.message);
            }
          }
        } else {
          this.refused(batch[0]!, shoal.code, shoal.message);
        }
      }
    } finally {
      this.flushing = false;
    }
    if (this.link !== undefined && this.link !== link) retryMs = 0;
    this.schedule(retryMs);
  }

  private send(link: SessionLink, batch: [string, TaskStatus][]): Promise<UpdateTaskStatusResponse> {
    return unaryCall<UpdateTaskStatusResponse>((cb) =>
      link.dispatcher.updateTaskStatus(
        { sessionId: link.sessionId, updates: batch.map(([taskId, status]) => ({ taskId, status })) },
        new grpc.Metadata(),
        { deadline: Date.now() + CALL_DEADLINE_MS },
        cb,
      ),
    );
  }

  /** Drops sent entries unless a newer status for the task queued meanwhile. */
  private settle(batch: [string, TaskStatus][]): void {
    for (const [taskId, status] of batch) if (this.pending.get(taskId) === status) this.pending.delete(taskId);
  }

  private refused([taskId, status]: [string, TaskStatus], code: string, message: string): void {
    if (this.pending.get(taskId) === status) this.pending.delete(taskId);
    this.opts.logger.warn({ taskId, state: TaskState[status.state], code, message }, "the manager refused a task status update; dropped it");
  }
}
