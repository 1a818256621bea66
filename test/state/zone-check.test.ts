// The dispatcher's zone re-check as a pure rule: the task's zone must equal both the node's zone in
// the store and the zone of the certificate it presented ("" and an unlabelled node are the default
// zone); a zoned secret goes only with a task of its zone; which tasks are pushed and which hold secrets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TaskState } from "../../src/proto/shoal/v1/objects.js";
import { checkSecretZoneForTask, checkTaskZoneForNode, isTaskPushed, taskHoldsSecrets } from "../../src/state/index.js";

const node = (zone?: string) => ({ spec: { desiredRole: 0, availability: 0, labels: (zone === undefined ? {} : { zone }) as Record<string, string> } });
const secret = (zone: string) => ({ spec: { name: "s", labels: {}, data: Buffer.alloc(0), zone } });

test("a task goes only where the store zone and the certificate zone both equal its zone", () => {
  assert.deepEqual(checkTaskZoneForNode({ zone: "a" }, node("a"), "a"), { ok: true });
  assert.deepEqual(checkTaskZoneForNode({ zone: "" }, node(), "default"), { ok: true }, "unzoned task, unlabelled node, default certificate");
  assert.deepEqual(checkTaskZoneForNode({ zone: "default" }, node(""), ""), { ok: true });
  const storeMoved = checkTaskZoneForNode({ zone: "a" }, node("b"), "a");
  assert.ok(!storeMoved.ok && /node is in zone b in the store/.test(storeMoved.reason));
  const oldCert = checkTaskZoneForNode({ zone: "b" }, node("b"), "a");
  assert.ok(!oldCert.ok && /certificate says zone a/.test(oldCert.reason));
  assert.ok(!checkTaskZoneForNode({ zone: "a" }, node(), "default").ok, "a zoned task never goes to a default-zone node");
  assert.ok(!checkTaskZoneForNode({ zone: "" }, node("a"), "a").ok, "a default-zone task never goes to a zone-a node");
});

test("a zoned secret goes only with a task of its zone; an unzoned one with any", () => {
  assert.deepEqual(checkSecretZoneForTask(secret("a"), { zone: "a" }), { ok: true });
  assert.deepEqual(checkSecretZoneForTask(secret(""), { zone: "b" }), { ok: true });
  assert.ok(!checkSecretZoneForTask(secret("a"), { zone: "b" }).ok);
  assert.ok(!checkSecretZoneForTask(secret("a"), { zone: "" }).ok);
  assert.ok(!checkSecretZoneForTask(secret("default"), { zone: "a" }).ok);
});

test("pushed tasks and the tasks that hold secrets", () => {
  const t = (state: TaskState, desired: TaskState) => ({ status: { state, message: "", err: "", timestamp: undefined, exitCode: 0, pid: 0 }, desiredState: desired });
  const R = TaskState.TASK_STATE_RUNNING;
  const S = TaskState.TASK_STATE_SHUTDOWN;
  assert.equal(isTaskPushed(t(TaskState.TASK_STATE_ASSIGNED, R)), true);
  assert.equal(isTaskPushed(t(R, S)), true, "desired SHUTDOWN but still running: pushed, so the agent stops it");
  assert.equal(isTaskPushed(t(TaskState.TASK_STATE_FAILED, R)), true, "ended but not yet replaced: pushed");
  assert.equal(isTaskPushed(t(TaskState.TASK_STATE_FAILED, S)), false);
  assert.equal(isTaskPushed(t(TaskState.TASK_STATE_COMPLETE, TaskState.TASK_STATE_REMOVE)), false);
  assert.equal(taskHoldsSecrets(t(TaskState.TASK_STATE_PENDING, R)), false);
  for (const s of [TaskState.TASK_STATE_ASSIGNED, TaskState.TASK_STATE_ACCEPTED, TaskState.TASK_STATE_PREPARING, TaskState.TASK_STATE_STARTING, R]) assert.equal(taskHoldsSecrets(t(s, S)), true);
  for (const s of [TaskState.TASK_STATE_COMPLETE, S, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED, TaskState.TASK_STATE_ORPHANED]) assert.equal(taskHoldsSecrets(t(s, R)), false);
});
