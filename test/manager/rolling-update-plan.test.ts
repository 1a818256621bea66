// The rolling update's plan, pure (reconcileService): a batch waits for the previous batch's new
// tasks even when a new task's creation time (its proposal's timestamp) is a few milliseconds before
// the update's recorded start, which is what a real clock gives (the proposal's timestamp is taken
// before the pass reads the clock); and a rollback is not complete while a replacement for an ended
// task is only being made in the same pass.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ServiceSpec, TaskState, UpdateState, type Service, type Task } from "../../src/proto/shoal/v1/objects.js";
import { reconcileService, type ReconcileInput } from "../../src/manager/orchestrator/reconcile.js";
import { newTask } from "../../src/manager/orchestrator/task-template.js";

function service(env: string, specVersion: bigint, updateStatus?: Service["updateStatus"], previousEnv?: string): Service {
  const spec = (e: string) => ServiceSpec.fromPartial({ name: "web", replicas: 2, container: { command: ["sleep", "600"], env: [e] } });
  return {
    id: "svc000000000000000000000a",
    meta: { version: 1n, createdAt: new Date(0), updatedAt: new Date(0) },
    spec: spec(env),
    previousSpec: previousEnv === undefined ? undefined : spec(previousEnv),
    specVersion,
    updateStatus,
    pendingDelete: false,
  } as Service;
}

function task(svc: Service, slot: number, createdMs: number, state: TaskState, desired = TaskState.TASK_STATE_RUNNING): Task {
  const t = newTask(svc, { slot, nodeId: "", imageDigest: "", nowMs: createdMs, restartCount: 0 });
  return { ...t, desiredState: desired, meta: { version: 1n, createdAt: new Date(createdMs), updatedAt: new Date(createdMs) }, status: { ...t.status!, state } };
}

function input(svc: Service, tasks: Task[], nowMs: number): ReconcileInput {
  return { service: svc, tasks, nodes: new Map(), nowMs, image: { kind: "none" }, runningSince: () => 0, seenRunningAt: () => undefined };
}

test("parallelism 1: slot 2 waits while slot 1's new task starts, though it was created 5 ms before the update's recorded start", () => {
  const v1 = service("V=1", 1n);
  const v2 = service("V=2", 2n, { state: UpdateState.UPDATE_STATE_UPDATING, message: "update in progress", startedAt: new Date(1005), completedAt: undefined, specVersion: 2n }, "V=1");
  const tasks = [
    task(v1, 1, 0, TaskState.TASK_STATE_SHUTDOWN, TaskState.TASK_STATE_SHUTDOWN),
    task(v1, 2, 0, TaskState.TASK_STATE_RUNNING),
    task(v2, 1, 1000, TaskState.TASK_STATE_STARTING),
  ];
  const plan = reconcileService(input(v2, tasks, 1010));
  assert.deepEqual(plan.units.flatMap((u) => u.creates.map((c) => c.slot)), [], "no new task for slot 2 while slot 1's is starting");
});

test("a rollback whose ended task is being replaced in this pass is not yet complete", () => {
  const v2 = service("V=2", 2n);
  const v3 = service("V=1", 3n, { state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED, message: "update rolled back", startedAt: new Date(2000), completedAt: undefined, specVersion: 3n }, "V=2");
  const v1 = service("V=1", 1n);
  const tasks = [task(v2, 1, 1500, TaskState.TASK_STATE_REJECTED), task(v1, 2, 0, TaskState.TASK_STATE_RUNNING)];
  const plan = reconcileService(input(v3, tasks, 2000));
  assert.deepEqual(plan.units.flatMap((u) => u.creates.map((c) => c.slot)), [1], "slot 1's ended task is replaced");
  assert.notEqual(plan.service?.updateStatus?.state, UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED);
});
