// Prefetch orders ride the Assignments stream (DESIGN.md §3 rule 9, §8), over real mutual TLS from
// one in-process manager: an order published on the leader's board reaches the node it names, in
// its zone, within the stream's sequence; a republished order arrives as an UPDATE, a withdrawn one
// as a REMOVE; an order planned for zone a never reaches a node whose certificate says zone b (a
// security event in the log, without the seed's registry header); a node relabelled out of the
// job's zone has its order withdrawn at once; a new session's COMPLETE set carries the orders.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AssignmentAction, PrefetchOrder } from "../../src/proto/shoal/v1/dispatcher.js";
import { waitFor } from "../e2e/cluster.js";
import { ARRIVAL_GUARD_MS, assertNoGap, connect, loggedManager, setZoneLabel, zonedWorker } from "./dispatcher-fixture.js";

const HEADER = "Bearer seed-only-token-5c1d9e";

function order(jobId: string, extra: Partial<PrefetchOrder> = {}): PrefetchOrder {
  return PrefetchOrder.fromPartial({
    jobId,
    image: "127.0.0.1:5000/team/app",
    manifestDigest: `sha256:${"ab".repeat(32)}`,
    blobs: [{ digest: `sha256:${"cd".repeat(32)}`, size: 10n, pieceSize: 4, pieceHashes: [] }],
    ...extra,
  });
}

test("prefetch orders reach only the node and zone they were planned for, and are updated and withdrawn on the stream", { timeout: 120_000 }, async (t) => {
  const m = await loggedManager(t, "shoal-dprefetch-");
  const a1 = await zonedWorker(m, "a1", "a");
  const a2 = await zonedWorker(m, "a2", "a");
  const b1 = await zonedWorker(m, "b1", "b");
  const la1 = await connect(m, a1);
  const la2 = await connect(m, a2);
  const lb1 = await connect(m, b1);
  t.after(() => [la1, la2, lb1].forEach((l) => l.close()));

  // a1 is the seed (it alone carries the header); a2 fetches from a1; b1 is wrongly planned in zone a.
  m.prefetch.publish("j1", [
    { nodeId: a1.nodeId, zone: "a", order: order("j1", { seed: true, registryAuthorization: HEADER }) },
    { nodeId: a2.nodeId, zone: "a", order: order("j1", { candidates: [{ nodeId: a1.nodeId, addr: "127.0.0.1:7001" }] }) },
    { nodeId: b1.nodeId, zone: "a", order: order("j1", { candidates: [{ nodeId: a1.nodeId, addr: "127.0.0.1:7001" }] }) },
  ]);
  await waitFor("the orders on a1 and a2", () => la1.assignments.prefetch.has("j1") && la2.assignments.prefetch.has("j1"), ARRIVAL_GUARD_MS);
  assert.equal(la1.assignments.prefetch.get("j1")!.registryAuthorization, HEADER);
  assert.equal(la2.assignments.prefetch.get("j1")!.registryAuthorization, "");
  assert.deepEqual(la2.assignments.prefetch.get("j1")!.candidates.map((c) => c.nodeId), [a1.nodeId]);

  const refusal = await waitFor("the refusal for b1 in the log", () => m.logLines.find((l) => l.includes('"event":"security"') && l.includes(b1.nodeId) && l.includes("prefetch")), ARRIVAL_GUARD_MS);
  const entry = JSON.parse(refusal) as Record<string, unknown>;
  assert.equal(entry["jobId"], "j1");
  assert.equal(entry["jobZone"], "a");
  assert.equal(entry["certZone"], "b");
  assert.equal(entry["reason"], "zone-mismatch");
  assert.ok(!lb1.assignments.everPrefetch.has("j1"), "the zone-b node got nothing of the zone-a job");

  // A replan: a2's candidates change, a1's order does not move.
  const a1Messages = la1.assignments.messages.length;
  m.prefetch.publish("j1", [
    { nodeId: a1.nodeId, zone: "a", order: order("j1", { seed: true, registryAuthorization: HEADER }) },
    { nodeId: a2.nodeId, zone: "a", order: order("j1", { candidates: [{ nodeId: a1.nodeId, addr: "127.0.0.1:7002" }] }) },
  ]);
  await waitFor("a2's new candidate address", () => la2.assignments.prefetch.get("j1")?.candidates[0]?.addr === "127.0.0.1:7002", ARRIVAL_GUARD_MS);
  await waitFor("a1's republished order", () => la1.assignments.messages.length > a1Messages, ARRIVAL_GUARD_MS);
  assert.ok(la1.assignments.prefetch.has("j1"));

  // A new session of a2 gets the order in its COMPLETE set.
  la2.close();
  const again = await connect(m, a2);
  t.after(() => again.close());
  await waitFor("the order in a2's new COMPLETE set", () => again.assignments.prefetch.has("j1"), ARRIVAL_GUARD_MS);
  assert.equal(again.assignments.messages[0]!.type, 0);

  // a2 relabelled into zone b: its zone-a order is withdrawn at once (REMOVE), a1 keeps its own.
  await setZoneLabel(m, a2.nodeId, "b");
  await waitFor("a2's order withdrawn after the relabel", () => !again.assignments.prefetch.has("j1"), ARRIVAL_GUARD_MS);
  const removed = again.assignments.messages.flatMap((msg) => msg.changes).filter((c) => c.action === AssignmentAction.ASSIGNMENT_ACTION_REMOVE && c.assignment?.prefetch !== undefined);
  assert.deepEqual(removed.map((c) => c.assignment!.prefetch!.jobId), ["j1"]);
  assert.ok(la1.assignments.prefetch.has("j1"));

  // Withdrawn: a REMOVE reaches the seed, and the header goes with it.
  m.prefetch.withdraw("j1");
  await waitFor("the job withdrawn from a1", () => !la1.assignments.prefetch.has("j1"), ARRIVAL_GUARD_MS);
  for (const l of [la1, again, lb1]) assertNoGap(l.assignments, "prefetch stream");
  assert.ok(!m.logLines.join("").includes(HEADER), "the seed's registry header is never logged");
});
