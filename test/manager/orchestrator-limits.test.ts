// Bounds: tasks of a spec near the proposal size limit are still created, placed and replaced (one
// per proposal, a replacement split from its stop); restarts inside a window stop at max attempts;
// tasks of a service deleted outright are shut down and removed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { RestartCondition, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { Harness, makeNode } from "./leader-loop-harness.js";

test("a service whose tasks are ~390 KiB each: created, assigned and rolled a few per proposal, a replacement split from its stop", async (t) => {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(makeNode("n1"), makeNode("n2"));
  const big = (v: string): string[] => Array.from({ length: 6 }, (_, i) => `K${i}=${v}${"x".repeat(64 * 1024 - 16)}`);
  const id = await h.createService({ name: "big", replicas: 3, container: { env: big("1") } as never });
  const live = h.live(id);
  assert.equal(live.length, 3);
  assert.ok(live.every((x) => x.status!.state === TaskState.TASK_STATE_ASSIGNED), "all placed");
  await h.agentsRun();
  await h.updateService(id, (s) => (s.spec!.container!.env = big("2")));
  for (let i = 0; i < 20; i++) {
    await h.agentsRun();
    await h.advance(1000);
  }
  assert.equal(h.live(id).length, 3);
  const desc = h.tasks(id).map((x) => `${x.slot}:${x.spec!.env[0]!.slice(0, 4)}:${TaskState[x.status!.state]}:${TaskState[x.desiredState]}`).join(" ");
  assert.ok(h.live(id).every((x) => x.spec!.env[0]!.startsWith("K0=2")), `every task replaced with the new spec: ${desc} state ${h.store.getService(id)!.updateStatus?.state} ${h.store.getService(id)!.updateStatus?.message}`);
});

test("max attempts within a window: restarts stop once the window holds max attempts", async (t) => {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(makeNode("n1"));
  const id = await h.createService({
    name: "win",
    restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 100n, maxAttempts: 2, windowMs: 60_000n },
  });
  let restarts = 0;
  for (let i = 0; i < 6; i++) {
    await h.agentsRun();
    const [cur] = h.live(id);
    if (cur === undefined) break;
    if (cur.restartCount > 0) restarts++;
    await h.report(cur.id, TaskState.TASK_STATE_FAILED, "crash", 1);
    await h.advance(1000);
  }
  assert.equal(restarts, 2);
  assert.equal(h.live(id).length, 0);
});

test("tasks whose service was deleted outright are shut down and removed once they end", async (t) => {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(makeNode("n1"));
  const id = await h.createService({ name: "gone", replicas: 2 });
  await h.agentsRun();
  await h.write((tx) => tx.removeService(id));
  assert.ok(h.tasks(id).every((x) => x.desiredState === TaskState.TASK_STATE_SHUTDOWN));
  await h.agentsRun();
  assert.equal(h.tasks(id).length, 0);
});
