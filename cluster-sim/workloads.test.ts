// The leader loops (orchestrator, scheduler, constraint enforcer) under seeded faults (cluster-sim/
// workloads.ts): every seed keeps zone safety and one live task per slot at every step, and
// converges once the faults end. A failure names its seed (`npm run sim -- --workloads --seed N`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { TaskState } from "../src/proto/shoal/v1/objects.js";
import { DEFAULT_ZONE, nodeZone, type LeaderLoopFactory } from "../src/state/index.js";
import { PrefetchOrderBoard } from "../src/manager/prefetch/order-board.js";
import { runWorkloadSim } from "./workloads.js";

const SEEDS = 30;

test(`${SEEDS} seeds of the leader loops under faults keep zones and slots safe and converge`, async () => {
  const failures: string[] = [];
  const total = { leaderChanges: 0, tasksCreated: 0, assignments: 0, relabels: 0, nodeDowns: 0, failures: 0, prefetchOrders: 0 };
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = await runWorkloadSim({ seed });
    if (!r.ok) failures.push(`FAIL seed=${seed}: ${r.violation}`);
    for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += r.stats[k];
  }
  assert.deepEqual(failures, [], failures.join("\n"));
  // The runs must exercise the loops: tasks made and placed, leaders changed, nodes relabelled and lost.
  assert.ok(total.assignments > SEEDS * 10, `only ${total.assignments} assignments`);
  assert.ok(total.leaderChanges > SEEDS * 3 && total.relabels > SEEDS * 3 && total.nodeDowns > SEEDS * 3, JSON.stringify(total));
  assert.ok(total.prefetchOrders > SEEDS * 10, `only ${total.prefetchOrders} prefetch orders checked`);
});

test("a seed replays exactly", async () => {
  const a = await runWorkloadSim({ seed: 7, steps: 60 });
  const b = await runWorkloadSim({ seed: 7, steps: 60 });
  assert.deepEqual(a, b);
});

test("the checks can fail: a planted loop that places pending tasks on any node is caught as a zone violation", async () => {
  // Each time a task changes, it assigns one pending task to a node of another zone.
  const rogue: LeaderLoopFactory = {
    name: "rogue",
    start: (ctx) => {
      ctx.watch({ tables: ["tasks"] }, () => {
        const task = ctx.store.listTasks().find((t) => t.nodeId === "" && t.status?.state === TaskState.TASK_STATE_PENDING);
        const node = task && ctx.store.listNodes().find((n) => nodeZone(n) !== (task.zone === "" ? DEFAULT_ZONE : task.zone));
        if (task === undefined || node === undefined) return;
        // After the apply that called us (a watch callback must not write from inside apply).
        queueMicrotask(() => void ctx.propose((tx) => tx.updateTask({ ...task, nodeId: node.id, status: { ...task.status!, state: TaskState.TASK_STATE_ASSIGNED } })).catch(() => undefined));
      });
      return { stop: () => undefined, busy: false, idle: async () => undefined };
    },
  };
  let caught = 0;
  for (let seed = 1; seed <= 5; seed++) {
    const r = await runWorkloadSim({ seed, extraLoop: rogue });
    if (!r.ok && /was assigned to .* of zone/.test(r.violation ?? "")) caught++;
  }
  assert.equal(caught, 5);
});

test("the checks can fail: a planted loop that copies a prefetch order to a node of another zone is caught", async () => {
  let caught = 0;
  for (let seed = 1; seed <= 5; seed++) {
    const board = new PrefetchOrderBoard();
    // Whenever the board changes, one order is also handed to a node outside the order's zone.
    const rogue: LeaderLoopFactory = {
      name: "rogue-prefetch",
      start: (ctx) => {
        const off = board.onChange(() => {
          for (const jobId of board.jobs()) {
            const nodes = ctx.store.listNodes();
            const holder = nodes.find((n) => board.entry(n.id, jobId) !== undefined);
            const entry = holder && board.entry(holder.id, jobId);
            const outsider = entry && nodes.find((n) => nodeZone(n) !== entry.zone && board.entry(n.id, jobId) === undefined);
            if (entry === undefined || outsider === undefined) continue;
            const all = nodes.flatMap((n) => board.entry(n.id, jobId) ?? []);
            queueMicrotask(() => board.publish(jobId, [...all, { nodeId: outsider.id, zone: entry.zone, order: entry.order }]));
            return;
          }
        });
        return { stop: off, busy: false, idle: async () => undefined };
      },
    };
    const r = await runWorkloadSim({ seed, extraLoop: rogue, board });
    if (!r.ok && /prefetch order of job .* (was planned for|is in) zone/.test(r.violation ?? "")) caught++;
  }
  assert.equal(caught, 5);
});
