// Rolling updates under a ManualClock: one task at a time with the delay between batches, pause on a
// failing new task, automatic rollback to the previous spec, a manual rollback rolled out the same way,
// and the spec history the store keeps (spec_version, previous_spec).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { RestartCondition, TaskState, UpdateFailureAction, UpdateState, type Task } from "../../src/proto/shoal/v1/objects.js";
import { Harness, makeNode } from "./leader-loop-harness.js";

async function harness(t: TestContext): Promise<Harness> {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(makeNode("n1"), makeNode("n2"), makeNode("n3"));
  return h;
}

const envOf = (t: Task): string => t.spec!.env.join(",");

test("the store keeps the spec history: a spec change bumps spec_version and keeps the old spec; other writes keep both", async (t) => {
  const h = await harness(t);
  const id = await h.createService({ name: "hist", container: { env: ["V=1"] } as never });
  assert.equal(h.store.getService(id)!.specVersion, 1n);
  await h.updateService(id, (s) => {
    s.spec!.container!.env = ["V=2"];
    s.specVersion = 99n; // a writer cannot set these
    s.previousSpec = undefined;
  });
  let s = h.store.getService(id)!;
  assert.equal(s.specVersion, 2n);
  assert.deepEqual(s.previousSpec!.container!.env, ["V=1"]);
  await h.updateService(id, (x) => (x.pendingDelete = false)); // same spec
  s = h.store.getService(id)!;
  assert.equal(s.specVersion, 2n);
  assert.deepEqual(s.previousSpec!.container!.env, ["V=1"]);
});

test("rolling update: parallelism 1 replaces one task at a time, waits the delay after each is RUNNING, ends COMPLETED", async (t) => {
  const h = await harness(t);
  const id = await h.createService({
    name: "roll",
    replicas: 3,
    container: { env: ["V=1"] } as never,
    updateConfig: { parallelism: 1, delayMs: 2000n, monitorMs: 1000n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, maxFailureRatio: 0 },
  });
  await h.agentsRun();
  await h.updateService(id, (s) => (s.spec!.container!.env = ["V=2"]));
  assert.equal(h.store.getService(id)!.updateStatus!.state, UpdateState.UPDATE_STATE_UPDATING);
  const batches: number[] = [];
  for (let step = 0; step < 40 && h.live(id).some((x) => envOf(x) === "V=1"); step++) {
    const live = h.live(id);
    const fresh = live.filter((x) => envOf(x) === "V=2" && x.status!.state < TaskState.TASK_STATE_RUNNING);
    assert.ok(fresh.length <= 1, `at most one new task starting at a time, saw ${fresh.length}`);
    assert.equal(live.length, 3, "never more or fewer than 3 live tasks");
    batches.push(live.filter((x) => envOf(x) === "V=2").length);
    await h.agentsRun();
    await h.advance(500);
  }
  // 1 new, then (after 2 s) 2, then 3: the count of new tasks climbs one at a time.
  const distinct = [...new Set(batches)];
  assert.deepEqual(distinct, [1, 2], `new-task counts seen: ${batches.join(",")}`);
  await h.agentsRun();
  await h.advance(1500);
  const s = h.store.getService(id)!;
  assert.equal(s.updateStatus!.state, UpdateState.UPDATE_STATE_COMPLETED);
  assert.ok(h.live(id).every((x) => envOf(x) === "V=2" && x.specVersion === 2n && x.restartCount === 0));
});

test("a new task that fails within the monitor pauses the update; the old tasks keep running", async (t) => {
  const h = await harness(t);
  const id = await h.createService({
    name: "pause",
    replicas: 3,
    container: { env: ["V=1"] } as never,
    restartPolicy: { condition: RestartCondition.RESTART_CONDITION_NONE, delayMs: 0n, maxAttempts: 0, windowMs: 0n },
    updateConfig: { parallelism: 1, delayMs: 0n, monitorMs: 5000n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, maxFailureRatio: 0 },
  });
  await h.agentsRun();
  await h.updateService(id, (s) => (s.spec!.container!.env = ["V=bad"]));
  // The first new task fails while starting (it never gets to RUNNING, so no second batch began).
  const [fresh] = h.live(id).filter((x) => envOf(x) === "V=bad");
  await h.advance(1000);
  await h.report(fresh!.id, TaskState.TASK_STATE_FAILED, "exit 3", 3);
  const s = h.store.getService(id)!;
  assert.equal(s.updateStatus!.state, UpdateState.UPDATE_STATE_PAUSED);
  assert.match(s.updateStatus!.message, /update paused: task .* failed: exit 3/);
  await h.advance(30_000);
  await h.agentsRun();
  const old = h.live(id).filter((x) => envOf(x) === "V=1");
  assert.equal(old.length, 2, "the two old tasks are not replaced while paused");
  // A new spec starts a new update, out of PAUSED.
  await h.updateService(id, (x) => (x.spec!.container!.env = ["V=3"]));
  assert.equal(h.store.getService(id)!.updateStatus!.state, UpdateState.UPDATE_STATE_UPDATING);
});

test("failure action rollback: the spec returns to the previous one and is rolled out; a manual rollback rolls out the same way", async (t) => {
  const h = await harness(t);
  const id = await h.createService({
    name: "back",
    replicas: 2,
    container: { env: ["V=1"] } as never,
    updateConfig: { parallelism: 1, delayMs: 0n, monitorMs: 5000n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK, maxFailureRatio: 0 },
    rollbackConfig: { parallelism: 2, delayMs: 0n, monitorMs: 1000n, failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, maxFailureRatio: 0 },
  });
  await h.agentsRun();
  await h.updateService(id, (s) => (s.spec!.container!.env = ["V=bad"]));
  const [fresh] = h.live(id).filter((x) => envOf(x) === "V=bad");
  await h.report(fresh!.id, TaskState.TASK_STATE_REJECTED, "image has no entrypoint");
  let s = h.store.getService(id)!;
  assert.equal(s.updateStatus!.state, UpdateState.UPDATE_STATE_ROLLBACK_STARTED);
  assert.match(s.updateStatus!.message, /rolled back: task .* failed: image has no entrypoint/);
  assert.deepEqual(s.spec!.container!.env, ["V=1"]);
  assert.equal(s.specVersion, 3n);
  for (let i = 0; i < 10; i++) {
    await h.agentsRun();
    await h.advance(500);
  }
  s = h.store.getService(id)!;
  assert.equal(s.updateStatus!.state, UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED);
  assert.ok(h.live(id).every((x) => envOf(x) === "V=1" && x.status!.state === TaskState.TASK_STATE_RUNNING));
  assert.equal(h.live(id).length, 2);

  // Manual rollback (what the control API does): spec <- previous_spec, rolled out like any update.
  await h.updateService(id, (x) => (x.spec = x.previousSpec));
  assert.deepEqual(h.store.getService(id)!.spec!.container!.env, ["V=bad"]);
  assert.equal(h.store.getService(id)!.updateStatus!.state, UpdateState.UPDATE_STATE_UPDATING);
  assert.equal(h.live(id).filter((x) => envOf(x) === "V=bad").length, 1, "one task at a time (parallelism 1)");
});
