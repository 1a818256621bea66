// A worker relabelled from zone a to zone b while it still presents its zone-a certificate (real
// mTLS, one in-process manager): its zone-a task and secret are withdrawn at once (REMOVE on its
// stream), it receives nothing of zone b either (each refusal a security event in the log, without
// the secret's bytes) until it presents the reissued zone-b certificate in a new session, whose
// COMPLETE set then carries the zone-b task and its secret and nothing of zone a.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { parseNodeCertificate } from "../../src/ca/index.js";
import { AssignmentAction } from "../../src/proto/shoal/v1/dispatcher.js";
import { waitFor } from "../e2e/cluster.js";
import { channelAs } from "../e2e/identity.js";
import {
  ARRIVAL_GUARD_MS,
  assertNoGap,
  assignTask,
  connect,
  createSecret,
  createService,
  loggedManager,
  openAssignments,
  renewWorker,
  setZoneLabel,
  zonedWorker,
} from "./dispatcher-fixture.js";

test("a relabelled worker on its old certificate gets nothing of either zone until it presents the reissued one", { timeout: 90_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-drezone-");
  const w = await zonedWorker(m, "w", "a");
  assert.equal(parseNodeCertificate(w.certPem).zone, "a");
  const bytesA = Buffer.from("zone-a-secret-c0ffee");
  const bytesB = Buffer.from("zone-b-secret-beef42");
  const sA = await createSecret(m, "db-a", bytesA, "a");
  const sB = await createSecret(m, "db-b", bytesB, "b");
  const webA = await createService(m, "web-a", "a", [sA.id]);
  const webB = await createService(m, "web-b", "b", [sB.id]);

  const old = await connect(m, w);
  t.after(() => old.close());
  const taskA = await assignTask(m, { service: webA, nodeId: w.nodeId, zone: "a", secrets: [sA] });
  await waitFor("the zone-a task and secret", () => old.assignments.tasks.has(taskA.id) && old.assignments.secrets.has(sA.id), ARRIVAL_GUARD_MS);

  const movedAtMs = Date.now();
  await setZoneLabel(m, w.nodeId, "b");
  await waitFor("the zone-a task and secret withdrawn", () => !old.assignments.tasks.has(taskA.id) && !old.assignments.secrets.has(sA.id), ARRIVAL_GUARD_MS);
  t.diagnostic(`zone-a task and secret withdrawn ${Date.now() - movedAtMs} ms after the relabel was proposed (commit included)`);
  const removes = old.assignments.messages.flatMap((msg) => msg.changes).filter((c) => c.action === AssignmentAction.ASSIGNMENT_ACTION_REMOVE);
  assert.deepEqual(removes.map((c) => c.assignment?.task?.id ?? c.assignment?.secret?.id).sort(), [taskA.id, sA.id].sort(), "withdrawn by REMOVE");

  // A zone-b task (with a zone-b secret) on the node: the certificate still says zone a, so nothing goes.
  const taskB = await assignTask(m, { service: webB, nodeId: w.nodeId, zone: "b", secrets: [sB] });
  const refusal = await waitFor("the refusal in the log", () => m.logLines.find((l) => l.includes('"event":"security"') && l.includes(taskB.id)), ARRIVAL_GUARD_MS);
  const entry = JSON.parse(refusal) as Record<string, unknown>;
  assert.equal(entry["certZone"], "a");
  assert.equal(entry["storeZone"], "b");
  assert.match(String(entry["reason"]), /certificate says zone a/);
  assert.ok(m.logLines.some((l) => l.includes('"event":"security"') && l.includes(taskA.id) && l.includes("in the store")), "the zone-a task's refusal is logged too");
  assert.ok(!old.assignments.everTasks.has(taskB.id) && !old.assignments.everSecrets.has(sB.id), "nothing of zone b on the old certificate");
  assert.equal(old.assignments.tasks.size + old.assignments.secrets.size, 0);
  assertNoGap(old.assignments, "old session");

  // The reissued certificate says zone b. It cannot ride the old session (opened with the zone-a certificate)...
  const renewed = await renewWorker(m, w);
  assert.equal(parseNodeCertificate(renewed.certPem).zone, "b");
  const ch = channelAs(m.addr, m.rootCaPem, m.init.clusterId, renewed);
  t.after(() => ch.close());
  const hijack = openAssignments(ch, old.sessionId);
  const refused = await hijack.ended;
  assert.ok(isShoalError(refused, "FAILED_PRECONDITION") && refused.message.includes("new session"), String(refused));
  assert.equal(hijack.messages.length, 0);

  // ...but a new session with it gets the zone-b task and secret, and nothing of zone a.
  const fresh = await connect(m, renewed);
  t.after(() => fresh.close());
  await waitFor("the zone-b task and secret on the new session", () => fresh.assignments.tasks.has(taskB.id) && fresh.assignments.secrets.has(sB.id), ARRIVAL_GUARD_MS);
  assert.equal(fresh.assignments.messages[0]!.type, 0, "the new session's stream starts with COMPLETE");
  assert.deepEqual(Buffer.from(fresh.assignments.secrets.get(sB.id)!.spec!.data), bytesB);
  assert.ok(!fresh.assignments.everTasks.has(taskA.id) && !fresh.assignments.everSecrets.has(sA.id), "nothing of zone a on the zone-b certificate");
  const replaced = await Promise.race([old.sessionEnded, new Promise<"open">((r) => setTimeout(() => r("open"), ARRIVAL_GUARD_MS))]);
  assert.ok(replaced !== "open" && isShoalError(replaced, "FAILED_PRECONDITION"), "the old session is replaced");

  const log = m.logLines.join("");
  for (const bytes of [bytesA, bytesB]) {
    assert.ok(!log.includes(bytes.toString()) && !log.includes(bytes.toString("base64")) && !log.includes(bytes.toString("hex")), "no secret bytes in the log");
  }
});
