// The pure placement function: zones are never crossed, constraints (== and !=, node and engine
// labels) hold, replicas spread, only READY active nodes with the right executor get tasks, and what
// cannot be placed stays pending with a reason that says why.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NodeAvailability, NodeState, Task, TaskState } from "../../src/proto/shoal/v1/objects.js";
import { schedule } from "../../src/manager/scheduler/placement.js";
import { taskFitsNode } from "../../src/state/index.js";
import { idOf, makeNode } from "./leader-loop-harness.js";

function pending(name: string, o: { service?: string; zone?: string; constraints?: string[]; executor?: string; nodeId?: string } = {}): Task {
  return Task.fromPartial({
    id: idOf(name),
    serviceId: idOf(o.service ?? "svc"),
    zone: o.zone ?? "",
    constraints: o.constraints ?? [],
    executor: o.executor ?? "process",
    nodeId: o.nodeId ?? "",
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_PENDING },
  });
}

function placedOn(result: ReturnType<typeof schedule>, task: string): string | undefined {
  return result.assignments.find((a) => a.taskId === idOf(task))?.nodeId;
}

test("a task of zone a goes only to zone-a nodes; a default-zone task only to unlabelled nodes; nothing crosses", () => {
  const nodes = [makeNode("a1", { zone: "a" }), makeNode("b1", { zone: "b" }), makeNode("d1")];
  const tasks = [...Array(30).keys()].flatMap((i) => [pending(`ta${i}`, { zone: "a" }), pending(`tb${i}`, { zone: "b" }), pending(`td${i}`)]);
  const result = schedule(nodes, tasks, []);
  assert.equal(result.pending.length, 0);
  for (const a of result.assignments) {
    const task = tasks.find((t) => t.id === a.taskId)!;
    const node = nodes.find((n) => n.id === a.nodeId)!;
    const expected = task.zone === "" ? "d1" : `${task.zone}1`;
    assert.equal(node.description!.hostname, expected, `task ${task.id} of zone ${task.zone || "default"} placed on ${node.description!.hostname}`);
  }
});

test("with no node left in its zone a task stays pending with a reason naming the zone, never placed elsewhere", () => {
  const nodes = [makeNode("a1", { zone: "a", state: NodeState.NODE_STATE_DOWN }), makeNode("b1", { zone: "b" }), makeNode("d1")];
  const result = schedule(nodes, [pending("t1", { zone: "a" }), pending("t2", { zone: "c" })], []);
  assert.deepEqual(result.assignments, []);
  const reasons = new Map(result.pending.map((p) => [p.taskId, p.reason]));
  assert.match(reasons.get(idOf("t1"))!, /no node in zone a satisfies the task .*1× node is down/);
  assert.match(reasons.get(idOf("t2"))!, /no node in zone c/);
});

test("engine labels satisfy constraints but never a zone", () => {
  // A node may report engine label zone=a; it is still in the default zone.
  const liar = makeNode("liar", { engineLabels: { zone: "a", disk: "ssd" } });
  const result = schedule([liar], [pending("t1", { zone: "a" }), pending("t2", { constraints: ["engine.labels.disk==ssd"] })], []);
  assert.equal(placedOn(result, "t1"), undefined);
  assert.equal(placedOn(result, "t2"), liar.id);
  assert.equal(taskFitsNode(pending("t3", { zone: "a" }), liar).ok, false);
  // and node.labels does not read engine labels
  assert.equal(schedule([liar], [pending("t4", { constraints: ["node.labels.disk==ssd"] })], []).assignments.length, 0);
});

test("constraints with == and != on labels, hostname, role and id", () => {
  const ssd = makeNode("ssd1", { labels: { disk: "ssd" }, hostname: "h-ssd" });
  const hdd = makeNode("hdd1", { labels: { disk: "hdd" }, hostname: "h-hdd" });
  const bare = makeNode("bare1", { hostname: "h-bare" });
  const nodes = [ssd, hdd, bare];
  const cases: [string[], string[]][] = [
    [["node.labels.disk==ssd"], [ssd.id]],
    [["node.labels.disk!=ssd"], [hdd.id, bare.id]], // a missing label satisfies !=
    [["node.hostname==h-hdd"], [hdd.id]],
    [["node.hostname!=h-hdd", "node.labels.disk!=ssd"], [bare.id]],
    [[`node.id==${bare.id}`], [bare.id]],
    [["node.role==manager"], []],
    [["node.role!=manager", "node.labels.disk==hdd"], [hdd.id]],
  ];
  for (const [constraints, allowed] of cases) {
    const tasks = [...Array(6).keys()].map((i) => pending(`c${i}`, { constraints }));
    const result = schedule(nodes, tasks, []);
    const used = new Set(result.assignments.map((a) => a.nodeId));
    assert.deepEqual([...used].sort(), [...allowed].sort(), `constraints ${constraints.join(" ")}`);
    if (allowed.length === 0) assert.equal(result.pending.length, 6);
  }
});

test("spread: fewest tasks of the service first, then fewest tasks overall", () => {
  const nodes = [makeNode("n1"), makeNode("n2"), makeNode("n3")];
  // n1 already runs two tasks of another service, n2 one task of this service.
  const existing = [
    { ...pending("x1", { service: "other", nodeId: nodes[0]!.id }), status: { state: TaskState.TASK_STATE_RUNNING } },
    { ...pending("x2", { service: "other", nodeId: nodes[0]!.id }), status: { state: TaskState.TASK_STATE_RUNNING } },
    { ...pending("x3", { service: "svc", nodeId: nodes[1]!.id }), status: { state: TaskState.TASK_STATE_RUNNING } },
  ] as Task[];
  const result = schedule(nodes, [pending("t1"), pending("t2"), pending("t3")], existing);
  const counts = new Map<string, number>();
  for (const a of result.assignments) counts.set(a.nodeId, (counts.get(a.nodeId) ?? 0) + 1);
  // Per service the counts end 1/1/1+... : t1 → n3 (0 of svc, 0 overall), t2 → n1 (0 of svc, 2 overall), t3 → n2 or n3 (1 of svc each; n2 has 1 overall, n3 has 1).
  assert.equal(placedOn(result, "t1"), nodes[2]!.id);
  assert.equal(placedOn(result, "t2"), nodes[0]!.id);
  assert.notEqual(placedOn(result, "t3"), nodes[0]!.id);
  // Large spread: 100 replicas on 7 nodes differ by at most one.
  const seven = [...Array(7).keys()].map((i) => makeNode(`s${i}`));
  const many = schedule(seven, [...Array(100).keys()].map((i) => pending(`m${i}`)), []);
  const per = seven.map((n) => many.assignments.filter((a) => a.nodeId === n.id).length);
  assert.ok(Math.max(...per) - Math.min(...per) <= 1, `spread ${per.join(",")}`);
});

test("paused, drained, down and not-ready nodes get no new tasks; reasons say which", () => {
  const nodes = [
    makeNode("p1", { availability: NodeAvailability.NODE_AVAILABILITY_PAUSE }),
    makeNode("dr1", { availability: NodeAvailability.NODE_AVAILABILITY_DRAIN }),
    makeNode("dn1", { state: NodeState.NODE_STATE_DOWN }),
    makeNode("u1", { state: NodeState.NODE_STATE_UNKNOWN }),
  ];
  const result = schedule(nodes, [pending("t1")], []);
  assert.equal(result.assignments.length, 0);
  const reason = result.pending[0]!.reason;
  for (const part of ["node is paused", "node is drained", "node is down", "node is not ready"]) assert.ok(reason.includes(part), `${reason} should mention ${part}`);
  nodes.push(makeNode("ok1"));
  assert.equal(placedOn(schedule(nodes, [pending("t1")], []), "t1"), idOf("ok1"));
});

test("an image task goes only to a node with the runc executor", () => {
  const nodes = [makeNode("proc1", { executors: ["process"] }), makeNode("oci1", { executors: ["runc", "process"] })];
  const tasks = [...Array(5).keys()].map((i) => pending(`r${i}`, { executor: "runc" }));
  const result = schedule(nodes, tasks, []);
  assert.deepEqual([...new Set(result.assignments.map((a) => a.nodeId))], [idOf("oci1")]);
  const only = schedule([nodes[0]!], [pending("r9", { executor: "runc" })], []);
  assert.match(only.pending[0]!.reason, /node has no runc executor/);
});

test("a task that names its node (global service) goes there or waits with the reason", () => {
  const nodes = [makeNode("g1", { zone: "a" }), makeNode("g2", { availability: NodeAvailability.NODE_AVAILABILITY_PAUSE })];
  const result = schedule(nodes, [pending("t1", { nodeId: idOf("g1"), zone: "a" }), pending("t2", { nodeId: idOf("g2") }), pending("t3", { nodeId: idOf("g1") })], []);
  assert.equal(placedOn(result, "t1"), idOf("g1"));
  const reasons = new Map(result.pending.map((p) => [p.taskId, p.reason]));
  assert.match(reasons.get(idOf("t2"))!, /paused/);
  assert.match(reasons.get(idOf("t3"))!, /zone a, the task's zone is default/);
});
