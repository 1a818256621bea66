// The dispatcher's Assignments stream over real mutual TLS against an in-process manager, judged by
// what each worker's stream received: tasks and secrets only of the worker's zone (checked against
// both the store and the presented certificate, even when the store assigns a task to the wrong
// node), a secret only with a task that holds it and withdrawn when none does, and sequence numbers
// an agent can check for gaps (a COMPLETE set first, every INCREMENTAL applying to the one before,
// a reopened stream starting with a COMPLETE set again).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_ASSIGNMENTS_MESSAGE_BYTES } from "../../src/manager/dispatcher/assignments.js";
import { AssignmentsMessage } from "../../src/proto/shoal/v1/dispatcher.js";
import { TaskState, type Secret } from "../../src/proto/shoal/v1/objects.js";
import { MAX_SECRET_BYTES } from "../../src/state/index.js";
import { waitFor } from "../e2e/cluster.js";
import {
  ARRIVAL_GUARD_MS,
  assertNoGap,
  assignTask,
  connect,
  createSecret,
  createService,
  editTask,
  loggedManager,
  openAssignments,
  reportStatus,
  statusUpdate,
  zonedWorker,
} from "./dispatcher-fixture.js";

test("a zone-b worker never receives a zone-a task or secret, even when the store assigns one to it", { timeout: 90_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dzone-");
  const a = await zonedWorker(m, "wa", "a");
  const b = await zonedWorker(m, "wb", "b");
  const secretBytes = Buffer.from("zone-a-password-7f3c91");
  const sA = await createSecret(m, "db-a", secretBytes, "a");
  const sFree = await createSecret(m, "shared", Buffer.from("unzoned-value-41d2"), "");
  const webA = await createService(m, "web-a", "a", [sA.id]);
  const webB = await createService(m, "web-b", "b", [sFree.id]);

  const linkA = await connect(m, a);
  const linkB = await connect(m, b);
  t.after(() => {
    linkA.close();
    linkB.close();
  });
  const good = await assignTask(m, { service: webA, nodeId: a.nodeId, zone: "a", secrets: [sA] });
  // The store assigns a zone-a task (with its zone-a secret) to the zone-b worker: the dispatcher must not follow it.
  const misplaced = await assignTask(m, { service: webA, nodeId: b.nodeId, zone: "a", secrets: [sA] });
  // Then a task that does belong on b, so b's stream provably carries changes after the misplaced one;
  // it also references the zone-a secret (the store checks services, not tasks): the task goes, that secret does not.
  const sentinel = await assignTask(m, { service: webB, nodeId: b.nodeId, zone: "b", secrets: [sFree, sA] });

  await waitFor("worker a to hold its task and the zone-a secret", () => linkA.assignments.tasks.has(good.id) && linkA.assignments.secrets.has(sA.id), ARRIVAL_GUARD_MS);
  await waitFor("worker b to hold its zone-b task and the unzoned secret", () => linkB.assignments.tasks.has(sentinel.id) && linkB.assignments.secrets.has(sFree.id), ARRIVAL_GUARD_MS);
  assert.deepEqual(Buffer.from(linkA.assignments.secrets.get(sA.id)!.spec!.data), secretBytes, "the secret arrives with its data");
  assert.ok(!linkA.assignments.everTasks.has(misplaced.id), "a never receives b's task");

  assert.ok(!linkB.assignments.everTasks.has(misplaced.id), "b never received the zone-a task");
  assert.ok(!linkB.assignments.everSecrets.has(sA.id), "b never received the zone-a secret");
  for (const msg of linkB.assignments.messages) {
    for (const change of msg.changes) {
      const data = change.assignment?.secret?.spec?.data;
      if (data !== undefined) assert.ok(!Buffer.from(data).includes(secretBytes), "no zone-a secret bytes on b's stream");
    }
  }
  assertNoGap(linkA.assignments, "a");
  assertNoGap(linkB.assignments, "b");

  const refusal = m.logLines.find((l) => l.includes('"event":"security"') && l.includes(misplaced.id));
  assert.ok(refusal !== undefined, "the refusal is a security event in the log");
  const entry = JSON.parse(refusal) as Record<string, unknown>;
  assert.equal(entry["nodeId"], b.nodeId);
  assert.equal(entry["taskZone"], "a");
  assert.match(String(entry["reason"]), /zone a.*zone b/);
  const secretRefusal = m.logLines.find((l) => l.includes("refused to send a secret") && l.includes(sentinel.id));
  assert.ok(secretRefusal !== undefined, "the withheld secret is a security event too");
  assert.equal((JSON.parse(secretRefusal) as Record<string, unknown>)["secretName"], "db-a");
  const log = m.logLines.join("");
  assert.ok(!log.includes(secretBytes.toString()) && !log.includes(secretBytes.toString("base64")), "no secret bytes in the log");
});

test("a secret goes only with a task that holds it, and is removed when no task on the node needs it", { timeout: 90_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dsecret-");
  const a = await zonedWorker(m, "wa", "a");
  const s = await createSecret(m, "db", Buffer.from("shared-by-two-tasks"), "a");
  const unused = await createSecret(m, "other", Buffer.from("referenced-by-no-task"), "a");
  const pendingOnly = await createSecret(m, "later", Buffer.from("only-a-pending-task"), "a");
  const web = await createService(m, "web", "a", [s.id, pendingOnly.id]);
  const link = await connect(m, a);
  t.after(() => link.close());
  const r = link.assignments;

  const t1 = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a", secrets: [s] });
  const t2 = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a", secrets: [s] });
  // A task that names the node but is not assigned yet (PENDING: a global task before the scheduler
  // checked its fit) is not pushed, and neither is its secret.
  const t3 = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a", secrets: [pendingOnly], state: TaskState.TASK_STATE_PENDING });
  await waitFor("both tasks and the secret", () => r.tasks.has(t1.id) && r.tasks.has(t2.id) && r.secrets.has(s.id), ARRIVAL_GUARD_MS);
  assert.ok(!r.everSecrets.has(unused.id), "a secret no task references is never sent");
  assert.ok(!r.tasks.has(t3.id), "a PENDING task is not pushed");
  assert.ok(!r.everSecrets.has(pendingOnly.id), "a PENDING task's secret is not sent");

  // The agent reports t1 ended: t2 still holds the secret, so it stays.
  const res = await reportStatus(link.ch, link.sessionId, [statusUpdate(t1.id, TaskState.TASK_STATE_FAILED, "exit 1")]);
  assert.deepEqual(res.refused, []);
  await waitFor("t1 FAILED in the store", () => m.ctx.store.getTask(t1.id)?.status?.state === TaskState.TASK_STATE_FAILED, ARRIVAL_GUARD_MS);
  const afterT1 = r.messages.length;
  // The orchestrator shuts t2 down: it is still running, so the secret stays until t2 reports SHUTDOWN.
  await editTask(m, t2.id, (task) => ({ ...task, desiredState: TaskState.TASK_STATE_SHUTDOWN }));
  await waitFor("t2's desired SHUTDOWN", () => r.tasks.get(t2.id)?.desiredState === TaskState.TASK_STATE_SHUTDOWN, ARRIVAL_GUARD_MS);
  assert.ok(r.secrets.has(s.id), "the secret stays while t2 has not ended");
  assert.ok(r.messages.length > afterT1);

  await reportStatus(link.ch, link.sessionId, [statusUpdate(t2.id, TaskState.TASK_STATE_SHUTDOWN)]);
  await waitFor("the secret removed once no task holds it", () => !r.secrets.has(s.id), ARRIVAL_GUARD_MS);
  await waitFor("t2 removed (ended and desired SHUTDOWN)", () => !r.tasks.has(t2.id), ARRIVAL_GUARD_MS);
  assert.ok(r.tasks.has(t1.id), "t1 ended but is still desired RUNNING (the orchestrator has not replaced it): still pushed");
  await editTask(m, t1.id, (task) => ({ ...task, desiredState: TaskState.TASK_STATE_SHUTDOWN }));
  await waitFor("t1 removed", () => !r.tasks.has(t1.id), ARRIVAL_GUARD_MS);

  // A task removed from the store is removed from the node.
  await m.ctx.propose((tx) => tx.removeTask(t3.id));
  await waitFor("t3 removed", () => !r.tasks.has(t3.id), ARRIVAL_GUARD_MS);
  assertNoGap(r, "a");
  for (const [i, msg] of r.messages.entries()) {
    assert.equal(msg.resultsIn, String(i + 1), "results_in counts the stream's messages");
  }

  // A reopened stream on the same session starts over with a COMPLETE set of what the node holds now.
  const t4 = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a", secrets: [s] });
  await waitFor("t4", () => r.tasks.has(t4.id), ARRIVAL_GUARD_MS);
  const again = openAssignments(link.ch, link.sessionId);
  t.after(() => again.cancel());
  await waitFor("the reopened stream's first message", () => again.messages.length > 0, ARRIVAL_GUARD_MS);
  assert.equal(again.messages[0]!.type, 0 /* COMPLETE */, "a reopened stream starts with COMPLETE");
  assert.equal(again.messages[0]!.appliesTo, "");
  assert.deepEqual([...again.tasks.keys()], [t4.id]);
  assert.deepEqual([...again.secrets.keys()], [s.id]);
  const replaced = await Promise.race([r.ended, new Promise<"open">((res) => setTimeout(() => res("open"), ARRIVAL_GUARD_MS))]);
  assert.ok(replaced !== "open" && replaced.code === "FAILED_PRECONDITION", "the older stream of the session is ended");
});

test("a set larger than one message goes out as a COMPLETE message and incrementals, secrets before the task that uses them", { timeout: 90_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dchunk-");
  const a = await zonedWorker(m, "wa", "a");
  const secrets: Secret[] = [];
  for (let i = 0; i < 5; i++) secrets.push(await createSecret(m, `big-${i}`, Buffer.alloc(MAX_SECRET_BYTES, 0x30 + i), "a"));
  const web = await createService(m, "web", "a", secrets.map((s) => s.id));
  const task = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a", secrets });
  const link = await connect(m, a);
  t.after(() => link.close());
  const r = link.assignments;
  await waitFor("the task and its five secrets", () => r.tasks.has(task.id) && secrets.every((s) => r.secrets.has(s.id)), ARRIVAL_GUARD_MS);
  assert.ok(r.messages.length >= 2, `${r.messages.length} messages`);
  assert.equal(r.messages[0]!.type, 0, "the first is COMPLETE");
  assertNoGap(r, "a");
  for (const msg of r.messages) {
    assert.ok(AssignmentsMessage.encode(msg).finish().length <= MAX_ASSIGNMENTS_MESSAGE_BYTES + 1024, "each message within the bound");
  }
  const indexOf = (pred: (c: AssignmentsMessage["changes"][number]) => boolean): number => r.messages.findIndex((msg) => msg.changes.some(pred));
  const taskAt = indexOf((c) => c.assignment?.task?.id === task.id);
  for (const s of secrets) assert.ok(indexOf((c) => c.assignment?.secret?.id === s.id) <= taskAt, "each secret arrives no later than the task");
  for (const s of secrets) assert.equal(Buffer.from(r.secrets.get(s.id)!.spec!.data).length, MAX_SECRET_BYTES);
});
