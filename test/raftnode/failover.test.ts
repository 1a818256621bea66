// Crash and recovery over real encrypted LevelDB: pending proposals settle when the leader dies,
// a node restarted from its data dir recovers log and state, and NO_QUORUM when 2 of 3 are down.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError, type ShoalError } from "../../src/base/errors.js";
import { TestCluster, utf8, waitFor } from "./harness.js";

test("stopping the leader settles every pending proposal (none hangs) and a new leader takes over", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  await leader.propose(utf8("before"));
  // Cut the leader off first so the proposals below can not commit, then stop it.
  for (const id of [1n, 2n, 3n]) if (id !== leader.id) cluster.network.setLink(leader.id, id, false);
  const inFlight = Array.from({ length: 10 }, (_, i) => leader.propose(utf8(`lost-${i}`), { timeoutMs: 5000 }));
  const outcomes = Promise.allSettled(inFlight);
  await new Promise((r) => setTimeout(r, 30));
  await cluster.stop(leader.id);
  const settled = await outcomes;
  for (const o of settled) {
    assert.equal(o.status, "rejected");
    assert.equal((o as PromiseRejectedResult).reason.code, "UNAVAILABLE");
  }
  const next = await cluster.waitForLeader();
  assert.notEqual(next.id, leader.id);
  const r = (await next.propose(utf8("after"))) as { value: string };
  assert.equal(r.value, "after");
  await assert.rejects(leader.propose(utf8("x")), (e) => isShoalError(e, "UNAVAILABLE"));
});

test("a proposal overwritten by a new leader's log is rejected as PROPOSAL_DROPPED", async (t) => {
  const cluster = new TestCluster({ noLeaderTimeoutMs: 5000 });
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const old = await cluster.waitForLeader();
  const others = [1n, 2n, 3n].filter((id) => id !== old.id);
  for (const id of others) cluster.network.setLink(old.id, id, false);
  const doomed = old.propose(utf8("doomed"), { timeoutMs: 8000 });
  const doomedOutcome = doomed.then(
    () => "resolved",
    (e: ShoalError) => e.code,
  );
  // The two others elect a new leader and commit entries at the doomed entry's index.
  const fresh = await waitFor(() => others.map((id) => cluster.node(id)).find((n) => n.isLeader), 15_000, "new leader among the majority");
  for (let i = 0; i < 5; i++) await fresh.propose(utf8(`winner-${i}`));
  for (const id of others) cluster.network.setLink(old.id, id, true);
  assert.equal(await doomedOutcome, "PROPOSAL_DROPPED");
  await waitFor(() => cluster.member(old.id).sm.items.includes("winner-4"), 15_000, "old leader to catch up");
  assert.ok(!cluster.member(old.id).sm.items.includes("doomed"));
});

test("a restarted node recovers its log and state from its data dir", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  for (let i = 0; i < 15; i++) await leader.propose(utf8(`a${i}`));
  const follower = cluster.running().find((n) => !n.isLeader)!;
  const fid = follower.id;
  await waitFor(() => follower.appliedIndex >= leader.appliedIndex, 15_000, "follower to apply");
  const before = [...cluster.member(fid).sm.items];
  await cluster.stop(fid);

  // Alone, with the other two stopped too, it can only get its state from disk.
  const restarted = await cluster.start(fid);
  await waitFor(() => cluster.member(fid).sm.items.length >= before.length, 15_000, "replay from disk");
  assert.deepEqual(cluster.member(fid).sm.items.slice(0, before.length), before);
  assert.ok(restarted.term >= leader.term);
  const leader2 = await cluster.waitForLeader();
  await leader2.propose(utf8("after restart"));
  await waitFor(() => cluster.member(fid).sm.items.includes("after restart"), 15_000, "restarted node to apply new entries");

  // Whole-cluster restart: every node comes back with the same state.
  const all = [...cluster.member(1n).sm.items];
  for (const id of [1n, 2n, 3n]) await cluster.stop(id);
  for (const id of [1n, 2n, 3n]) await cluster.start(id);
  const leader3 = await cluster.waitForLeader();
  await leader3.propose(utf8("after full restart"));
  await waitFor(() => [1n, 2n, 3n].every((id) => cluster.member(id).sm.items.at(-1) === "after full restart"), 15_000, "all to apply");
  for (const id of [1n, 2n, 3n]) assert.deepEqual(cluster.member(id).sm.items, [...all, "after full restart"]);
});

test("with 2 of 3 managers down, waiting calls fail with NO_QUORUM instead of hanging", async (t) => {
  const cluster = new TestCluster({ noLeaderTimeoutMs: 600 });
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  await leader.propose(utf8("ok"));
  const survivor = leader; // keep the leader: CheckQuorum must make it step down
  for (const id of [1n, 2n, 3n]) if (id !== survivor.id) await cluster.stop(id);
  const started = Date.now();
  const pending = survivor.propose(utf8("stuck"), { timeoutMs: 20_000 });
  const read = survivor.readIndex({ timeoutMs: 20_000 });
  await assert.rejects(pending, (e) => {
    assert.ok(isShoalError(e, "NO_QUORUM"), `expected NO_QUORUM, got ${String(e)}`);
    assert.match((e as Error).message, /lost quorum/);
    return true;
  });
  await assert.rejects(read, (e) => isShoalError(e, "NO_QUORUM") || isShoalError(e, "TIMEOUT"));
  // NO_QUORUM (not TIMEOUT) already shows it did not wait for the deadline; this is a liveness guard.
  assert.ok(Date.now() - started < 15_000, "rejected before the 20 s deadline");
  assert.equal(survivor.isLeader, false, "the isolated leader stepped down (CheckQuorum)");
  // Once quorum is known lost, new calls fail at once: NO_QUORUM, not TIMEOUT at a 20 s deadline.
  await assert.rejects(survivor.propose(utf8("again"), { timeoutMs: 20_000 }), (e) => isShoalError(e, "NO_QUORUM"));
});

test("a proposal that cannot commit times out with TIMEOUT at its deadline", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  for (const id of [1n, 2n, 3n]) if (id !== leader.id) cluster.network.setLink(leader.id, id, false);
  await assert.rejects(leader.propose(utf8("slow"), { timeoutMs: 80 }), (e) => isShoalError(e, "TIMEOUT"));
});
