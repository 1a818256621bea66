// Leader loop: when a node's labels (its zone among them) change so that a task placed there no longer
// fits its zone and constraints, the task is told to shut down; the orchestrator then replaces it on a
// node that fits, and the dispatcher stops sending the task and its secrets to this node.
import { TaskState, type Node } from "../../proto/shoal/v1/objects.js";
import { isTerminalState, ReconcileTrigger, taskFitsNode, type LeaderLoop, type LeaderLoopFactory, type LoopContext } from "../../state/index.js";

/** Nodes remembered for the next pass; beyond this, the pass checks every node. */
const MAX_QUEUED_NODES = 10_000;

export const constraintEnforcerLoop: LeaderLoopFactory = {
  name: "constraint-enforcer",
  start: (ctx) => startEnforcer(ctx),
};

function startEnforcer(ctx: LoopContext): LeaderLoop {
  let queued = new Set<string>();
  let everyNode = true; // the first pass checks every node: changes may have happened under another leader
  const trigger = new ReconcileTrigger(
    async () => {
      const ids = everyNode ? ctx.store.listNodes().map((n) => n.id) : [...queued];
      everyNode = false;
      queued = new Set();
      for (const id of ids) {
        if (ctx.stopped) return;
        const node = ctx.store.getNode(id);
        if (node !== undefined) await enforce(ctx, node);
      }
    },
    {
      clock: ctx.clock,
      onError: (err) => {
        everyNode = true;
        ctx.logger.warn({ err: String(err) }, "constraint enforcer pass failed; retrying");
      },
    },
  );
  ctx.watch({ tables: ["nodes"] }, (event) => {
    if (event.kind === "reset") everyNode = true;
    else if (event.kind === "update") {
      const before = event.oldObject as Node | undefined;
      const after = event.object as Node;
      if (before !== undefined && sameLabels(before, after)) return;
      if (queued.size >= MAX_QUEUED_NODES) everyNode = true;
      else queued.add(after.id);
    } else return;
    trigger.request();
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

function sameLabels(a: Node, b: Node): boolean {
  const la = a.spec?.labels ?? {};
  const lb = b.spec?.labels ?? {};
  const ea = a.description?.engineLabels ?? {};
  const eb = b.description?.engineLabels ?? {};
  return (
    JSON.stringify(la) === JSON.stringify(lb) &&
    JSON.stringify(ea) === JSON.stringify(eb) &&
    a.role === b.role &&
    a.spec?.desiredRole === b.spec?.desiredRole &&
    a.description?.hostname === b.description?.hostname
  );
}

async function enforce(ctx: LoopContext, node: Node): Promise<void> {
  const misfits = ctx.store
    .listTasks({ nodeId: node.id })
    .filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING && !isTerminalState(t.status?.state ?? TaskState.TASK_STATE_NEW) && !taskFitsNode(t, node).ok);
  if (misfits.length === 0) return;
  await ctx.update((tx) => {
    const current = tx.getNode(node.id);
    let wrote = false;
    for (const { id } of misfits) {
      const task = tx.getTask(id);
      if (task === undefined || current === undefined || task.desiredState > TaskState.TASK_STATE_RUNNING) continue;
      const fit = taskFitsNode(task, current);
      if (fit.ok) continue;
      ctx.logger.info({ taskId: task.id, nodeId: node.id, reason: fit.reason }, "task no longer fits its node; shutting it down");
      task.desiredState = TaskState.TASK_STATE_SHUTDOWN;
      tx.updateTask(task);
      wrote = true;
    }
    return wrote;
  });
}
