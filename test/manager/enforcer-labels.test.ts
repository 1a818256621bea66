// The constraint enforcer: a node relabelled so that its tasks no longer fit (zone or constraint) has
// them shut down; the orchestrator replaces them on a node that fits, within the zone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TaskState } from "../../src/proto/shoal/v1/objects.js";
import { Harness, idOf, makeNode } from "./leader-loop-harness.js";

test("relabelling a node out of zone a shuts its zone-a tasks down; replacements go to the other zone-a node", async (t) => {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(makeNode("a1", { zone: "a" }), makeNode("a2", { zone: "a" }), makeNode("b1", { zone: "b" }));
  const id = await h.createService({ name: "pci", replicas: 4, zone: "a" });
  await h.agentsRun();
  const onA1 = h.live(id).filter((x) => x.nodeId === idOf("a1"));
  assert.equal(onA1.length, 2);
  await h.updateNode("a1", (n) => (n.spec!.labels.zone = "b"));
  for (const old of onA1) assert.equal(h.store.getTask(old.id)!.desiredState, TaskState.TASK_STATE_SHUTDOWN, "told to shut down");
  const live = h.live(id);
  assert.equal(live.length, 4);
  assert.ok(live.every((x) => x.nodeId === idOf("a2")), "every replica on the remaining zone-a node");
  assert.ok(h.tasks(id).every((x) => x.nodeId !== idOf("b1")));
});

test("a changed label that breaks a constraint evicts the task; a change that keeps it fitting does not", async (t) => {
  const h = new Harness();
  t.after(() => h.stop());
  await h.start();
  await h.addNodes(makeNode("n1", { labels: { disk: "ssd", rack: "1" } }), makeNode("n2", { labels: { disk: "ssd" } }));
  const id = await h.createService({ name: "db", replicas: 1, constraints: ["node.labels.disk==ssd"] });
  await h.agentsRun();
  const [first] = h.live(id);
  const name = first!.nodeId === idOf("n1") ? "n1" : "n2";
  await h.updateNode(name, (n) => (n.spec!.labels.rack = "7"));
  assert.equal(h.live(id)[0]!.id, first!.id, "still fits: untouched");
  await h.updateNode(name, (n) => (n.spec!.labels.disk = "hdd"));
  assert.equal(h.store.getTask(first!.id)!.desiredState, TaskState.TASK_STATE_SHUTDOWN);
  assert.notEqual(h.live(id)[0]!.nodeId, first!.nodeId);
  assert.equal(h.live(id)[0]!.restartCount, first!.restartCount, "an eviction is not a restart");
});
