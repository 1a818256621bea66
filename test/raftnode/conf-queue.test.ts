// Membership changes are one at a time in the core; the node queues a change that arrives while
// another is not applied yet (a second join, or its own automatic promotion of a learner) instead of
// failing it, so concurrent joins to a fresh cluster all go through.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TestCluster, utf8 } from "./harness.js";

test("membership changes proposed together are applied one after another, none refused", { timeout: 30_000 }, async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  await leader.propose(utf8("x"));
  const learners = [41n, 42n, 43n];
  const results = await Promise.allSettled(learners.map((id) => leader.addLearner(cluster.info(id), { timeoutMs: 10_000 })));
  assert.deepEqual(
    results.map((r) => (r.status === "fulfilled" ? "ok" : String((r.reason as Error).message))),
    ["ok", "ok", "ok"],
  );
  assert.deepEqual([...leader.status().members.filter((m) => !m.voter).map((m) => m.raftId)].sort(), learners);
  // The queue kept the log usable: plain writes still commit.
  const r = (await leader.propose(utf8("after"))) as { value: string };
  assert.equal(r.value, "after");
});
