// The scheduler loop commits many placements per proposal (and never one proposal per task), and a
// task that changed between its pass and its commit is not overwritten.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { SeededRandom } from "../../src/base/random.js";
import { applyAtOnce } from "../../src/manager/leadership/apply-at-once.js";
import { LeaderLoops } from "../../src/manager/leadership/leader-loops.js";
import { newTask } from "../../src/manager/orchestrator/task-template.js";
import { schedulerLoop, SCHEDULER_BATCH_TASKS } from "../../src/manager/scheduler/scheduler.js";
import { Service, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore } from "../../src/state/index.js";
import { idOf, makeNode } from "./leader-loop-harness.js";

test("1,200 pending tasks are placed in ceil(1200 / batch) proposals, spread evenly", async () => {
  const clock = new ManualClock(1_000_000);
  const store = new ObjectStore({ clock });
  const raft = applyAtOnce(store, clock);
  const service = Service.fromPartial({ id: idOf("svc"), spec: { name: "svc", replicas: 1200 }, specVersion: 1n });
  const put = (build: Parameters<ObjectStore["prepare"]>[0]): void => void store.apply(store.prepare(build), { index: store.lastAppliedIndex + 1 });
  put((tx) => {
    for (let i = 0; i < 12; i++) tx.createNode(makeNode(`n${i}`));
    tx.createService(service);
  });
  for (let start = 0; start < 1200; start += 400) {
    put((tx) => {
      for (let slot = start + 1; slot <= start + 400; slot++) tx.createTask(newTask(service, { slot, nodeId: "", imageDigest: "", nowMs: clock.nowMs(), restartCount: 0 }));
    });
  }
  const loops = new LeaderLoops({ store, propose: raft.propose, clock, random: new SeededRandom(3), logger: pino({ level: "silent" }), loops: [schedulerLoop()] });
  loops.leaderChanged(true, raft.term);
  await loops.idle();
  const tasks = store.listTasks();
  assert.ok(tasks.every((t) => t.status!.state === TaskState.TASK_STATE_ASSIGNED));
  assert.equal(raft.proposals, Math.ceil(1200 / SCHEDULER_BATCH_TASKS));
  const per = new Map<string, number>();
  for (const t of tasks) per.set(t.nodeId, (per.get(t.nodeId) ?? 0) + 1);
  assert.deepEqual([...per.values()], Array(12).fill(100));
  loops.stop();
});

test("a task shut down between the scheduler's read and its commit is not assigned; the rest of the batch is", async () => {
  const clock = new ManualClock(1_000_000);
  const store = new ObjectStore({ clock });
  const raft = applyAtOnce(store, clock);
  const service = Service.fromPartial({ id: idOf("svc"), spec: { name: "svc", replicas: 3 }, specVersion: 1n });
  const put = (build: Parameters<ObjectStore["prepare"]>[0]): void => void store.apply(store.prepare(build), { index: store.lastAppliedIndex + 1 });
  const tasks = [1, 2, 3].map((slot) => newTask(service, { slot, nodeId: "", imageDigest: "", nowMs: clock.nowMs(), restartCount: 0 }));
  put((tx) => {
    tx.createNode(makeNode("n1"));
    tx.createService(service);
    tasks.forEach((t) => tx.createTask(t));
  });
  let first = true;
  const loops = new LeaderLoops({
    store,
    clock,
    random: new SeededRandom(3),
    logger: pino({ level: "silent" }),
    loops: [schedulerLoop()],
    propose: async (build, options) => {
      if (first) {
        first = false;
        // The orchestrator shuts task 2 down just before the scheduler's proposal is prepared.
        put((tx) => {
          const t = tx.getTask(tasks[1]!.id)!;
          t.desiredState = TaskState.TASK_STATE_SHUTDOWN;
          tx.updateTask(t);
        });
      }
      return raft.propose(build, options);
    },
  });
  loops.leaderChanged(true, raft.term);
  await loops.idle();
  const after = (i: number) => store.getTask(tasks[i]!.id)!;
  assert.equal(after(0).status!.state, TaskState.TASK_STATE_ASSIGNED);
  assert.equal(after(2).status!.state, TaskState.TASK_STATE_ASSIGNED);
  assert.equal(after(1).status!.state, TaskState.TASK_STATE_PENDING);
  assert.equal(after(1).nodeId, "");
  assert.equal(after(1).desiredState, TaskState.TASK_STATE_SHUTDOWN, "the orchestrator's write survived");
  loops.stop();
});
