// The orchestrator with the scheduler and the enforcer, driven by a ManualClock over an in-memory
// store: replicas up and down, restart policy with delay and max attempts, the history bound, `rm`,
// node DOWN and removal, and a task that nothing fits.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { NodeState, RestartCondition, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { Harness, idOf, makeNode } from "./leader-loop-harness.js";

async function harness(t: TestContext): Promise<Harness> {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  return h;
}

test("replicas: N tasks in slots 1..N spread over the nodes; scale up adds slots, scale down shuts the highest down", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("n1"), makeNode("n2"), makeNode("n3"));
  const id = await h.createService({ name: "web", replicas: 3 });
  let live = h.live(id);
  assert.deepEqual(live.map((x) => x.slot), [1, 2, 3]);
  assert.deepEqual(new Set(live.map((x) => x.nodeId)).size, 3, "one replica per node");
  for (const task of live) {
    assert.equal(task.status!.state, TaskState.TASK_STATE_ASSIGNED);
    assert.equal(task.executor, "process");
    assert.equal(task.specVersion, 1n);
  }
  await h.agentsRun();
  await h.updateService(id, (s) => (s.spec!.replicas = 5));
  live = h.live(id);
  assert.deepEqual(live.map((x) => x.slot), [1, 2, 3, 4, 5]);
  await h.updateService(id, (s) => (s.spec!.replicas = 2));
  assert.deepEqual(h.live(id).map((x) => x.slot), [1, 2]);
  const stopped = h.tasks(id).filter((x) => x.slot > 2);
  assert.equal(stopped.length, 3);
  assert.ok(stopped.every((x) => x.desiredState === TaskState.TASK_STATE_SHUTDOWN));
  // The agents stop them; the scaled-away slots' ended tasks are then deleted.
  await h.agentsRun();
  assert.deepEqual(h.tasks(id).map((x) => x.slot).sort(), [1, 2]);
});

test("restart policy on-failure: delay via start_after, max attempts, a clean exit is not restarted", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("n1"));
  const id = await h.createService({
    name: "job",
    replicas: 1,
    restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ON_FAILURE, delayMs: 2000n, maxAttempts: 2, windowMs: 0n },
  });
  await h.agentsRun();
  for (let attempt = 1; attempt <= 2; attempt++) {
    const [current] = h.live(id);
    await h.report(current!.id, TaskState.TASK_STATE_FAILED, "exit 1", 1);
    const [next] = h.live(id);
    assert.notEqual(next!.id, current!.id, "a replacement was made");
    assert.equal(next!.restartCount, attempt);
    assert.equal(next!.startAfter!.getTime(), h.clock.nowMs() + 2000, "the replacement starts after the restart delay");
    assert.equal(h.store.getTask(current!.id)!.desiredState, TaskState.TASK_STATE_SHUTDOWN);
    await h.agentsRun();
  }
  const [last] = h.live(id);
  await h.report(last!.id, TaskState.TASK_STATE_FAILED, "exit 1", 1);
  assert.equal(h.live(id).length, 0, "no third restart");
  const ended = h.store.getTask(last!.id)!;
  assert.equal(ended.restartDeclined, true);
  await h.advance(60_000);
  assert.equal(h.live(id).length, 0, "the slot stays empty later too");

  // on-failure: exit 0 ends the task for good.
  const ok = await h.createService({ name: "once", restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ON_FAILURE, delayMs: 100n, maxAttempts: 0, windowMs: 0n } });
  await h.agentsRun();
  await h.report(h.live(ok)[0]!.id, TaskState.TASK_STATE_COMPLETE, "exit 0");
  await h.advance(10_000);
  assert.equal(h.live(ok).length, 0);
});

test("history: at most 5 ended tasks per slot are kept; older ones are deleted", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("n1"));
  const id = await h.createService({ name: "crashy", restartPolicy: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 10n, maxAttempts: 0, windowMs: 0n } });
  const seen: string[] = [];
  for (let i = 0; i < 9; i++) {
    await h.agentsRun();
    const [cur] = h.live(id);
    seen.push(cur!.id);
    await h.report(cur!.id, TaskState.TASK_STATE_FAILED, "boom", 2);
    await h.advance(10);
  }
  const all = h.tasks(id);
  const ended = all.filter((x) => x.status!.state >= TaskState.TASK_STATE_COMPLETE);
  assert.equal(ended.length, 5, "five ended tasks kept");
  assert.equal(all.length, 6, "plus the live one");
  // The newest five failures are the ones kept.
  assert.deepEqual(ended.map((x) => x.id).sort(), seen.slice(-5).sort());
});

test("service rm (pending_delete): tasks shut down, then tasks and service deleted once ended; a DOWN node's task goes at once", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("n1"), makeNode("n2"));
  const id = await h.createService({ name: "gone", replicas: 2 });
  await h.agentsRun();
  const [onN1, onN2] = h.live(id).sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1));
  await h.updateNode("n2", (n) => (n.status!.state = NodeState.NODE_STATE_DOWN));
  await h.updateService(id, (s) => (s.pendingDelete = true));
  assert.equal(h.store.getTask(onN2!.id), undefined, "the task on the DOWN node is deleted without waiting");
  assert.equal(h.store.getTask(onN1!.id)!.desiredState, TaskState.TASK_STATE_SHUTDOWN);
  assert.ok(h.store.getService(id), "the service stays while a task runs");
  await h.agentsRun();
  assert.equal(h.tasks(id).length, 0);
  assert.equal(h.store.getService(id), undefined);
});

test("node DOWN: its tasks are replaced in the same zone only; with no room in the zone they stay PENDING with a reason", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("a1", { zone: "a" }), makeNode("a2", { zone: "a" }), makeNode("b1", { zone: "b" }), makeNode("d1"));
  const id = await h.createService({ name: "zoned", replicas: 2, zone: "a" });
  await h.agentsRun();
  const onA1 = h.live(id).find((x) => x.nodeId === idOf("a1"))!;
  await h.updateNode("a1", (n) => (n.status!.state = NodeState.NODE_STATE_DOWN));
  assert.equal(h.store.getTask(onA1.id)!.desiredState, TaskState.TASK_STATE_SHUTDOWN);
  const live = h.live(id);
  assert.equal(live.length, 2);
  assert.ok(live.every((x) => x.nodeId === idOf("a2")), "both replicas on the other zone-a node, none on b1 or d1");
  assert.equal(live.find((x) => x.slot === onA1.slot)!.restartCount, onA1.restartCount, "a move is not a restart");
  await h.updateNode("a2", (n) => (n.status!.state = NodeState.NODE_STATE_DOWN));
  const waiting = h.live(id);
  assert.equal(waiting.length, 2);
  for (const x of waiting) {
    assert.equal(x.status!.state, TaskState.TASK_STATE_PENDING);
    assert.equal(x.nodeId, "");
    assert.match(x.status!.message, /no node in zone a satisfies the task/);
  }
  // The zone comes back: the waiting tasks are placed there.
  await h.updateNode("a1", (n) => (n.status!.state = NodeState.NODE_STATE_READY));
  assert.ok(h.live(id).every((x) => x.nodeId === idOf("a1") && x.status!.state === TaskState.TASK_STATE_ASSIGNED));
});

test("a removed node's task becomes ORPHANED and is replaced", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("n1"), makeNode("n2"));
  const id = await h.createService({ name: "orph", replicas: 1 });
  await h.agentsRun();
  const [first] = h.live(id);
  const other = first!.nodeId === idOf("n1") ? "n2" : "n1";
  await h.write((tx) => tx.removeNode(first!.nodeId));
  const old = h.store.getTask(first!.id)!;
  assert.equal(old.status!.state, TaskState.TASK_STATE_ORPHANED);
  assert.equal(old.desiredState, TaskState.TASK_STATE_SHUTDOWN);
  assert.equal(h.live(id)[0]!.nodeId, idOf(other));
});

test("nothing fits: the task stays PENDING with the reason, and is placed when a node fits", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("n1", { labels: { disk: "hdd" } }));
  const id = await h.createService({ name: "picky", constraints: ["node.labels.disk==ssd"] });
  const [task] = h.live(id);
  assert.equal(task!.status!.state, TaskState.TASK_STATE_PENDING);
  assert.match(task!.status!.message, /node does not satisfy node\.labels\.disk==ssd/);
  await h.updateNode("n1", (n) => (n.spec!.labels.disk = "ssd"));
  assert.equal(h.live(id)[0]!.nodeId, idOf("n1"));
});

test("image: resolved once per spec version into image_digest; a failure makes the task REJECTED and is retried after the delay", async (t) => {
  const h = await harness(t);
  await h.addNodes(makeNode("n1"), makeNode("p1", { executors: ["process"] }));
  const id = await h.createService({ name: "img", replicas: 2, container: { image: "127.0.0.1:5000/app:1" } as never });
  const live = h.live(id);
  assert.deepEqual(h.resolved, ["127.0.0.1:5000/app:1"]);
  assert.ok(live.every((x) => x.spec!.imageDigest.startsWith("sha256:") && x.executor === "runc" && x.nodeId === idOf("n1")));
  await h.updateService(id, (s) => (s.spec!.replicas = 3)); // a new spec version, same image: no new lookup
  assert.equal(h.resolved.length, 1);
  assert.equal(h.live(id).length, 3);

  let fail = true;
  h.resolver = async (image) => {
    h.resolved.push(image);
    if (fail) throw new Error("registry 127.0.0.1:5000 is not answering");
    return { digest: "sha256:" + "b".repeat(64) };
  };
  const bad = await h.createService({ name: "img2", container: { image: "127.0.0.1:5000/app:2" } as never, restartPolicy: { condition: 0, delayMs: 3000n, maxAttempts: 0, windowMs: 0n } });
  const [rejected] = h.live(bad);
  assert.equal(rejected!.status!.state, TaskState.TASK_STATE_REJECTED);
  assert.match(rejected!.status!.message, /cannot resolve image 127\.0\.0\.1:5000\/app:2: registry 127\.0\.0\.1:5000 is not answering/);
  const lookups = h.resolved.length;
  await h.advance(1000);
  assert.equal(h.resolved.length, lookups, "no retry before the restart delay");
  fail = false;
  await h.advance(2500);
  assert.equal(h.resolved.length, lookups + 1);
  const [retried] = h.live(bad);
  assert.equal(retried!.spec!.imageDigest, "sha256:" + "b".repeat(64));
  assert.equal(retried!.status!.state, TaskState.TASK_STATE_ASSIGNED);
  assert.equal(retried!.restartCount, 1);
});
