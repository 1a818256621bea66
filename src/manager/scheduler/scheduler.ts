// Leader loop: places pending tasks (placement.ts) and commits the assignments in batches, many
// tasks per proposal. Every pass re-reads the store, so a lost proposal or a conflict is repaired by
// the next pass; each task is re-read inside the transaction and skipped if it changed meanwhile.
import { TaskState, type Task } from "../../proto/shoal/v1/objects.js";
import { isShoalError } from "../../base/errors.js";
import { ReconcileTrigger, type LeaderLoop, type LeaderLoopFactory, type LoopContext, type StoreTransaction } from "../../state/index.js";
import { isSchedulable, occupiesNode, schedule, type Assignment, type PendingReason } from "./placement.js";

/** Task updates per proposal: a task encodes to well under 1 KiB, so this stays far below the proposal limit. */
export const SCHEDULER_BATCH_TASKS = 500;

export interface SchedulerOptions {
  batchTasks?: number;
  /** Told about each pass (the daemon's metrics). */
  observer?: SchedulerObserver;
}

/** What the scheduler tells an onlooker; cheap calls, each optional. */
export interface SchedulerObserver {
  /** A pass with pending tasks starts; the returned function runs when its writes committed (or failed). */
  passStarted?(): () => void;
  /** A pass decided: `assigned` tasks got a node, `unplaceable` found none (they stay pending). */
  decided?(outcome: "assigned" | "unplaceable", tasks: number): void;
}

export function schedulerLoop(options: SchedulerOptions = {}): LeaderLoopFactory {
  return { name: "scheduler", start: (ctx) => startScheduler(ctx, options.batchTasks ?? SCHEDULER_BATCH_TASKS, options.observer ?? {}) };
}

function startScheduler(ctx: LoopContext, batchTasks: number, observer: SchedulerObserver): LeaderLoop {
  const trigger: ReconcileTrigger = new ReconcileTrigger(() => timedPass(ctx, batchTasks, () => trigger.request(), observer), {
    clock: ctx.clock,
    onError: (err) => ctx.logger.warn({ err: String(err) }, "scheduler pass failed; retrying"),
  });
  ctx.watch({ tables: ["tasks", "nodes"] }, (event) => {
    if (event.kind === "reset" || event.table === "nodes") return trigger.request();
    if (event.table !== "tasks") return;
    const task = event.object as Task;
    // New pending work, or a task that left a node (room for waiting tasks). A task this loop just
    // placed is neither, so its own commits do not cost another pass.
    const left = event.kind === "remove" ? occupiesNode(task) : event.oldObject !== undefined && occupiesNode(event.oldObject as Task) && !occupiesNode(task);
    if ((event.kind !== "remove" && isSchedulable(task)) || left) trigger.request();
  });
  trigger.request();
  return {
    stop: () => trigger.close(),
    get busy() {
      return trigger.busy;
    },
    idle: () => trigger.idle(),
  };
}

async function timedPass(ctx: LoopContext, batchTasks: number, again: () => void, observer: SchedulerObserver): Promise<void> {
  let ended: (() => void) | undefined;
  try {
    await pass(ctx, batchTasks, again, observer, () => (ended = observer.passStarted?.()));
  } finally {
    ended?.();
  }
}

async function pass(ctx: LoopContext, batchTasks: number, again: () => void, observer: SchedulerObserver, started: () => void): Promise<void> {
  const tasks = ctx.store.listTasks();
  const pendingTasks = tasks.filter(isSchedulable);
  if (pendingTasks.length === 0) return;
  started();
  const result = schedule(ctx.store.listNodes(), pendingTasks, tasks.filter(occupiesNode));
  if (result.assignments.length > 0) observer.decided?.("assigned", result.assignments.length);
  if (result.pending.length > 0) observer.decided?.("unplaceable", result.pending.length);
  const byId = new Map(pendingTasks.map((t) => [t.id, t]));
  // A reason is written only when it changed, so an unplaceable task costs no proposal per pass.
  const reasons = result.pending.filter((p) => byId.get(p.taskId)?.status?.message !== p.reason);
  const writes: ({ kind: "assign"; a: Assignment } | { kind: "reason"; p: PendingReason })[] = [
    ...result.assignments.map((a) => ({ kind: "assign" as const, a })),
    ...reasons.map((p) => ({ kind: "reason" as const, p })),
  ];
  // The batches touch disjoint tasks: proposed side by side, raft writes them to disk together.
  const batches: Promise<unknown>[] = [];
  for (let start = 0; start < writes.length && !ctx.stopped; start += batchTasks) {
    const batch = writes.slice(start, start + batchTasks);
    let attempt = 0;
    // First try with the copies this pass read (the store refuses any that changed since: compare-
    // and-set); a retry re-reads every task inside the transaction.
    batches.push(ctx.update((tx) => writeBatch(ctx, tx, batch, again, attempt++ === 0 ? byId : undefined)));
  }
  const results = await Promise.allSettled(batches);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  if (result.assignments.length > 0) ctx.logger.debug({ assigned: result.assignments.length, pending: result.pending.length }, "scheduler pass");
}

function writeBatch(
  ctx: LoopContext,
  tx: StoreTransaction,
  batch: ({ kind: "assign"; a: Assignment } | { kind: "reason"; p: PendingReason })[],
  again: () => void,
  readCopies: Map<string, Task> | undefined,
): boolean {
  const now = new Date(ctx.clock.nowMs());
  let wrote = false;
  for (const w of batch) {
    const id = w.kind === "assign" ? w.a.taskId : w.p.taskId;
    const copy = readCopies?.get(id);
    const task = copy !== undefined ? { ...copy } : tx.getTask(id);
    // Changed since the pass read it (shut down, placed, removed): the next pass sees it anew.
    if (task === undefined || !isSchedulable(task)) continue;
    if (w.kind === "assign") {
      if (task.nodeId !== "" && task.nodeId !== w.a.nodeId) continue;
      task.nodeId = w.a.nodeId;
      task.status = { ...task.status!, state: TaskState.TASK_STATE_ASSIGNED, message: "assigned to a node", timestamp: now };
    } else {
      if (task.status!.message === w.p.reason) continue;
      task.status = { ...task.status!, message: w.p.reason, timestamp: now };
    }
    try {
      tx.updateTask(task);
    } catch (err) {
      // Tasks of a huge spec fill the proposal early: commit what fits, the next pass does the rest.
      if (!isShoalError(err, "PROPOSAL_TOO_LARGE") || !wrote) throw err;
      again();
      break;
    }
    wrote = true;
  }
  return wrote;
}
