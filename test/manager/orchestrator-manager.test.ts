// The leader loops wired into a real manager (raft over the encrypted store, control API over its
// socket): a created service gets its tasks through raft, and scaling to zero shuts them down.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ServiceSpec, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { waitFor } from "../e2e/cluster.js";
import { singleManager } from "./single-manager.js";

test("a real single manager's leader loops turn a service into tasks, with a reason while none can be placed", async (t) => {
  const m = await singleManager(t, "shoal-orch-");
  const created = await m.client.createService({ spec: ServiceSpec.fromPartial({ name: "web", replicas: 2, zone: "nowhere" }) });
  assert.equal(created.specVersion, 1n);
  const tasks = await waitFor("two tasks with a pending reason", async () => {
    const list = await m.client.listTasks({ serviceId: created.id, nodeId: "" });
    return list.length === 2 && list.every((x) => /no node in zone nowhere/.test(x.status?.message ?? "")) ? list : undefined;
  }, 10_000);
  assert.deepEqual(tasks.map((x) => x.slot).sort(), [1, 2]);
  assert.ok(tasks.every((x) => x.status!.state === TaskState.TASK_STATE_PENDING && x.nodeId === "" && x.zone === "nowhere"));

  const current = await m.client.getService(created.id);
  await m.client.updateService({ serviceId: created.id, serviceVersion: current.meta!.version, spec: { ...current.spec!, replicas: 0 }, rollback: false } as never);
  // Never-assigned tasks are shut down at once, and their history is dropped with their slots.
  await waitFor("the tasks to be gone", async () => ((await m.client.listTasks({ serviceId: created.id, nodeId: "" })).length === 0 ? true : undefined), 10_000);
  assert.equal((await m.client.getService(created.id)).specVersion, 2n);
});
