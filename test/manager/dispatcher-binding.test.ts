// Every dispatcher call is bound to the caller's certificate and its own session (real mTLS, one
// in-process manager): a worker holding another worker's session ID gets PERMISSION_DENIED from
// Assignments, Heartbeat and UpdateTaskStatus and receives nothing of the other's tasks or secrets;
// task status moves only forward and only for the caller's own tasks, each refused update named with
// a stable code and nothing of it applied; the node description a session reports is stored.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { MAX_TASK_STATUS_UPDATES } from "../../src/manager/dispatcher/limits.js";
import { TaskState } from "../../src/proto/shoal/v1/objects.js";
import { waitFor } from "../e2e/cluster.js";
import {
  ARRIVAL_GUARD_MS,
  assignTask,
  connect,
  createSecret,
  createService,
  heartbeatOn,
  loggedManager,
  openAssignments,
  reportStatus,
  statusUpdate,
  zonedWorker,
} from "./dispatcher-fixture.js";

test("another worker's session ID is refused by Assignments, Heartbeat and UpdateTaskStatus", { timeout: 90_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dbind-");
  // Same zone, so only the session binding stands between b and a's assignments.
  const a = await zonedWorker(m, "wa", "a");
  const b = await zonedWorker(m, "wb", "a");
  const secretBytes = Buffer.from("a-only-secret-9911");
  const s = await createSecret(m, "db", secretBytes, "a");
  const web = await createService(m, "web", "a", [s.id]);
  const linkA = await connect(m, a);
  const linkB = await connect(m, b);
  t.after(() => {
    linkA.close();
    linkB.close();
  });
  const task = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a", secrets: [s] });
  await waitFor("a's task and secret", () => linkA.assignments.tasks.has(task.id) && linkA.assignments.secrets.has(s.id), ARRIVAL_GUARD_MS);

  // b's certificate, a's session ID.
  const stolen = openAssignments(linkB.ch, linkA.sessionId);
  const end = await Promise.race([stolen.ended, new Promise<"open">((r) => setTimeout(() => r("open"), ARRIVAL_GUARD_MS))]);
  assert.ok(end !== "open" && isShoalError(end, "PERMISSION_DENIED"), `Assignments with another node's session: ${String(end)}`);
  assert.equal(stolen.messages.length, 0, "nothing received on the refused stream");
  await assert.rejects(heartbeatOn(linkB.ch, linkA.sessionId), (e) => isShoalError(e, "PERMISSION_DENIED"), "Heartbeat with another node's session");
  await assert.rejects(
    reportStatus(linkB.ch, linkA.sessionId, [statusUpdate(task.id, TaskState.TASK_STATE_FAILED)]),
    (e) => isShoalError(e, "PERMISSION_DENIED"),
    "UpdateTaskStatus with another node's session",
  );
  assert.equal(m.ctx.store.getTask(task.id)?.status?.state, TaskState.TASK_STATE_ASSIGNED, "the refused report changed nothing");
  // b's own session: a's task is still not b's to report.
  const own = await reportStatus(linkB.ch, linkB.sessionId, [statusUpdate(task.id, TaskState.TASK_STATE_FAILED)]);
  assert.deepEqual(own.refused.map((r) => r.code), ["PERMISSION_DENIED"]);
  assert.equal(m.ctx.store.getTask(task.id)?.status?.state, TaskState.TASK_STATE_ASSIGNED);
  assert.ok(!linkB.assignments.everTasks.has(task.id) && !linkB.assignments.everSecrets.has(s.id), "b never received a's task or secret");
  assert.ok(m.logLines.some((l) => l.includes('"event":"security"') && l.includes("another node's session") && l.includes(b.nodeId)), "the attempt is a security event in the log");
  assert.ok(!m.logLines.join("").includes(secretBytes.toString()), "no secret bytes in the log");
  // a's own session still works.
  await heartbeatOn(linkA.ch, linkA.sessionId);
});

test("task status moves only forward, only for the caller's tasks, and a refused update applies nothing", { timeout: 90_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dstatus-");
  const a = await zonedWorker(m, "wa", "a");
  const b = await zonedWorker(m, "wb", "a");
  const web = await createService(m, "web", "a");
  const link = await connect(m, a);
  t.after(() => link.close());
  const t1 = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a" });
  const t2 = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a" });
  const other = await assignTask(m, { service: web, nodeId: b.nodeId, zone: "a" });
  const stateOf = (id: string): TaskState | undefined => m.ctx.store.getTask(id)?.status?.state;

  let res = await reportStatus(link.ch, link.sessionId, [statusUpdate(t1.id, TaskState.TASK_STATE_ACCEPTED), statusUpdate(t1.id, TaskState.TASK_STATE_RUNNING, "up")]);
  assert.deepEqual(res.refused, []);
  assert.equal(stateOf(t1.id), TaskState.TASK_STATE_RUNNING, "two forward steps in one call both apply");
  assert.equal(m.ctx.store.getTask(t1.id)?.status?.message, "up");

  res = await reportStatus(link.ch, link.sessionId, [
    statusUpdate(t1.id, TaskState.TASK_STATE_STARTING), // backwards
    statusUpdate("0".repeat(25), TaskState.TASK_STATE_RUNNING), // unknown task
    statusUpdate(other.id, TaskState.TASK_STATE_RUNNING), // another node's task
    statusUpdate(t2.id, TaskState.TASK_STATE_ORPHANED), // a state only managers set
    statusUpdate(t2.id, TaskState.TASK_STATE_ASSIGNED), // the same
    statusUpdate(t2.id, TaskState.TASK_STATE_PREPARING, "pulling"), // valid, in the same call
    statusUpdate(t1.id, TaskState.TASK_STATE_RUNNING), // the state it has: accepted, no change
  ]);
  assert.deepEqual(
    res.refused.map((r) => [r.taskId, r.code]),
    [
      [t1.id, "FAILED_PRECONDITION"],
      ["0".repeat(25), "NOT_FOUND"],
      [other.id, "PERMISSION_DENIED"],
      [t2.id, "INVALID_ARGUMENT"],
      [t2.id, "INVALID_ARGUMENT"],
    ],
  );
  assert.match(res.refused[0]!.message, /RUNNING.*only forward.*STARTING/);
  assert.equal(stateOf(t1.id), TaskState.TASK_STATE_RUNNING, "the backwards update applied nothing");
  assert.equal(stateOf(other.id), TaskState.TASK_STATE_ASSIGNED, "another node's task is untouched");
  assert.equal(stateOf(t2.id), TaskState.TASK_STATE_PREPARING, "the valid update of the same call applied");

  res = await reportStatus(link.ch, link.sessionId, [statusUpdate(t1.id, TaskState.TASK_STATE_COMPLETE)]);
  assert.deepEqual(res.refused, []);
  res = await reportStatus(link.ch, link.sessionId, [statusUpdate(t1.id, TaskState.TASK_STATE_FAILED)]);
  assert.deepEqual(res.refused.map((r) => r.code), ["FAILED_PRECONDITION"], "an ended task stays ended");
  assert.equal(stateOf(t1.id), TaskState.TASK_STATE_COMPLETE);

  // Too many updates in one call: the whole call is refused and nothing of it applied.
  const many = Array.from({ length: MAX_TASK_STATUS_UPDATES + 1 }, () => statusUpdate(t2.id, TaskState.TASK_STATE_RUNNING));
  await assert.rejects(reportStatus(link.ch, link.sessionId, many), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  assert.equal(stateOf(t2.id), TaskState.TASK_STATE_PREPARING);
});

test("the node description a session reports (executors, resources, engine labels) is stored on the node", { timeout: 60_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-ddesc-");
  const a = await zonedWorker(m, "wa", "a");
  const description = {
    hostname: "wa",
    platform: "linux/x64",
    engineVersion: "",
    engineLabels: { disk: "ssd", rack: "r7" },
    executors: ["runc", "process"],
    resources: { nanoCpus: 2_000_000_000n, memoryBytes: 4n * 1024n ** 3n, pids: 0n },
  };
  const link = await connect(m, a, description);
  t.after(() => link.close());
  const stored = await waitFor("the description in the store", () => {
    const d = m.ctx.store.getNode(a.nodeId)?.description;
    return d !== undefined && d.executors.length === 2 ? d : undefined;
  }, ARRIVAL_GUARD_MS);
  assert.deepEqual(stored.executors, ["runc", "process"]);
  assert.deepEqual(stored.engineLabels, { disk: "ssd", rack: "r7" });
  assert.equal(stored.resources?.nanoCpus, 2_000_000_000n);
  assert.equal(stored.resources?.memoryBytes, 4n * 1024n ** 3n);
  // Labels a node reports stay engine labels: they never become the manager-set labels (the zone).
  assert.equal(m.ctx.store.getNode(a.nodeId)?.spec?.labels["zone"], "a");
});
