// The bound on what the leader buffers for one Assignments stream (real mTLS, in-process manager): an
// agent that stops reading while its assignments keep changing is cut off with QUEUE_FULL once more
// than MAX_UNSENT_ASSIGNMENT_BYTES wait for it (a security-neutral warning in the log), and a reopened
// stream starts over with one COMPLETE set; a large set read promptly is never cut off.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { MAX_UNSENT_ASSIGNMENT_BYTES } from "../../src/manager/dispatcher/assignments.js";
import { MAX_SECRET_BYTES } from "../../src/state/index.js";
import { waitFor } from "../e2e/cluster.js";
import { ARRIVAL_GUARD_MS, assignTask, connect, createSecret, createService, loggedManager, openAssignments, zonedWorker } from "./dispatcher-fixture.js";

test("an agent that stops reading is cut off with QUEUE_FULL, and a reopened stream starts with COMPLETE", { timeout: 120_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dbacklog-");
  const a = await zonedWorker(m, "wa", "a");
  const s = await createSecret(m, "big", Buffer.alloc(MAX_SECRET_BYTES, 0x41), "a");
  const web = await createService(m, "web", "a", [s.id]);
  const task = await assignTask(m, { service: web, nodeId: a.nodeId, zone: "a", secrets: [s] });
  const link = await connect(m, a);
  t.after(() => link.close());
  await waitFor("the task and secret", () => link.assignments.tasks.has(task.id) && link.assignments.secrets.has(s.id), ARRIVAL_GUARD_MS);

  link.assignments.pause();
  // Each label change re-sends the secret (500 KiB) to the node. The client buffers some and the
  // connection's flow control some more; past that the leader holds it, up to the bound.
  const updatesToOverflow = Math.ceil((3 * MAX_UNSENT_ASSIGNMENT_BYTES) / MAX_SECRET_BYTES);
  let ended: Awaited<typeof link.assignments.ended> | undefined;
  void link.assignments.ended.then((e) => (ended = e));
  let updates = 0;
  for (; updates < updatesToOverflow && !m.logLines.some((l) => l.includes("reads its assignments too slowly")); updates++) {
    const current = m.ctx.store.getSecret(s.id)!;
    await m.ctx.propose((tx) => tx.updateSecret({ ...current, spec: { ...current.spec!, labels: { rev: String(updates) } } }));
  }
  const warning = await waitFor("the slow-reader warning", () => m.logLines.find((l) => l.includes("reads its assignments too slowly")), ARRIVAL_GUARD_MS);
  t.diagnostic(`cut off after ${updates} re-sends of a ${MAX_SECRET_BYTES}-byte secret`);
  assert.ok(!warning.includes("AAAAAAAA") && !warning.includes("QUFBQUFB"), "the warning carries no secret bytes");
  assert.ok(Number((JSON.parse(warning) as { unsentBytes: number }).unsentBytes) > MAX_UNSENT_ASSIGNMENT_BYTES);
  link.assignments.resume();
  await waitFor("the stream's end", () => ended, ARRIVAL_GUARD_MS);
  assert.ok(isShoalError(ended, "QUEUE_FULL"), String(ended));

  const again = openAssignments(link.ch, link.sessionId);
  t.after(() => again.cancel());
  await waitFor("the COMPLETE set on the reopened stream", () => again.tasks.has(task.id) && again.secrets.has(s.id), ARRIVAL_GUARD_MS);
  assert.equal(again.messages[0]!.type, 0);
  assert.equal(again.secrets.get(s.id)!.spec!.labels["rev"], String(updates - 1), "the latest version");
});
