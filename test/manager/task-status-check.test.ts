// A node's status updates as the dispatcher checks them: a repeated state is a no-op, except a
// PREPARING task's new message (its image's prefetch progress), which is written so that
// `service ps` shows it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkStatusUpdate } from "../../src/manager/dispatcher/task-status.js";
import { Task, TaskState } from "../../src/proto/shoal/v1/objects.js";

const node = "n".repeat(25);
const taskIn = (state: TaskState, message: string): Task => Task.fromPartial({ id: "t".repeat(25), nodeId: node, status: { state, message } });
const update = (state: TaskState, message: string) => ({ taskId: "t".repeat(25), status: { state, message, exitCode: 0, timestamp: undefined, err: "", containerId: "" } }) as never;

test("a PREPARING task's new message is written; the same message, or a repeat of another state, is a no-op", () => {
  const preparing = taskIn(TaskState.TASK_STATE_PREPARING, "prefetching image: 8 of 64 MiB (peers 8 MiB, registry 0 MiB)");
  assert.deepEqual(checkStatusUpdate(preparing, node, update(TaskState.TASK_STATE_PREPARING, "prefetching image: 40 of 64 MiB (peers 40 MiB, registry 0 MiB)")), { ok: true, noop: false });
  assert.deepEqual(checkStatusUpdate(preparing, node, update(TaskState.TASK_STATE_PREPARING, preparing.status!.message)), { ok: true, noop: true });
  const running = taskIn(TaskState.TASK_STATE_RUNNING, "started");
  assert.deepEqual(checkStatusUpdate(running, node, update(TaskState.TASK_STATE_RUNNING, "something else")), { ok: true, noop: true });
  assert.equal(checkStatusUpdate(running, node, update(TaskState.TASK_STATE_PREPARING, "back")).ok, false, "never back");
});
