// Global services: one task per eligible node (zone, constraints, availability, executor), a task for
// a node that joins, none for one that leaves or stops qualifying.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NodeAvailability, NodeState, ServiceMode, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { Harness, idOf, makeNode } from "./leader-loop-harness.js";

test("global: one task per eligible node; joins add one, removal orphans it, drain and relabel shut it down, pause keeps it", async (t) => {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(
    makeNode("a1", { zone: "a" }),
    makeNode("a2", { zone: "a" }),
    makeNode("a3", { zone: "a", executors: ["process"] }), // no OCI runtime
    makeNode("a4", { zone: "a", labels: { tier: "db" } }),
    makeNode("b1", { zone: "b" }),
  );
  const id = await h.createService({ name: "agent", mode: ServiceMode.SERVICE_MODE_GLOBAL, zone: "a", constraints: ["node.labels.tier!=db"], container: { image: "registry.local/agent:1" } as never });
  const on = (): string[] => h.live(id).map((x) => x.nodeId).sort();
  assert.deepEqual(on(), [idOf("a1"), idOf("a2")].sort());
  assert.ok(h.live(id).every((x) => x.status!.state === TaskState.TASK_STATE_ASSIGNED && x.slot === 0));
  await h.agentsRun();

  await h.addNodes(makeNode("a5", { zone: "a" }));
  assert.deepEqual(on(), [idOf("a1"), idOf("a2"), idOf("a5")].sort());

  // Paused: keeps its task. Drained: the task is shut down and not recreated elsewhere.
  await h.updateNode("a2", (n) => (n.spec!.availability = NodeAvailability.NODE_AVAILABILITY_PAUSE));
  assert.ok(on().includes(idOf("a2")));
  await h.updateNode("a5", (n) => (n.spec!.availability = NodeAvailability.NODE_AVAILABILITY_DRAIN));
  assert.ok(!on().includes(idOf("a5")));

  // Removed: the task is ORPHANED, and with its node gone for good its history goes too.
  const onA1 = h.live(id).find((x) => x.nodeId === idOf("a1"))!;
  const states: TaskState[] = [];
  const watch = h.store.watch({ tables: ["tasks"], match: (c) => (c.object as { id: string }).id === onA1.id }, { onEvent: (e) => "object" in e && states.push((e.object as { status: { state: TaskState } }).status.state) });
  await h.write((tx) => tx.removeNode(idOf("a1")));
  watch.close();
  assert.ok(states.includes(TaskState.TASK_STATE_ORPHANED), `states seen: ${states.join(",")}`);
  assert.equal(h.store.getTask(onA1.id), undefined);
  await h.updateNode("a2", (n) => (n.spec!.labels.zone = "b"));
  assert.deepEqual(on(), []);
  assert.ok(h.tasks(id).every((x) => x.nodeId !== idOf("b1")), "never a task on the zone-b node");

  // A DOWN node gets its task back when it is READY again.
  await h.updateNode("a5", (n) => (n.spec!.availability = NodeAvailability.NODE_AVAILABILITY_ACTIVE));
  await h.agentsRun();
  await h.updateNode("a5", (n) => (n.status!.state = NodeState.NODE_STATE_DOWN));
  assert.deepEqual(on(), []);
  await h.updateNode("a5", (n) => (n.status!.state = NodeState.NODE_STATE_READY));
  assert.deepEqual(on(), [idOf("a5")]);
});
