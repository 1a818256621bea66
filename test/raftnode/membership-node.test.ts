// Membership through Raft: a learner joins, is promoted automatically once caught up, members are
// removed, removed raft IDs never come back, and removals that would break quorum are refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import type { MembershipChange } from "../../src/raft/node/index.js";
import { TestCluster, utf8, waitFor } from "./harness.js";

test("add a learner, auto-promote it once caught up, then remove a member", async (t) => {
  const cluster = new TestCluster({ promoteWithinEntries: 5 });
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  for (let i = 0; i < 30; i++) await leader.propose(utf8(`x${i}`));
  const changes: MembershipChange[] = [];
  leader.on("membership-changed", (c) => changes.push(c));

  // The joiner starts knowing the members, as JoinRaftResponse would tell it.
  const members = [1n, 2n, 3n].map((id) => cluster.info(id));
  await cluster.start(4n, { join: { members } });
  const conf = await leader.addLearner(cluster.info(4n));
  assert.deepEqual(conf.learners, [4n]);
  await assert.rejects(leader.addLearner(cluster.info(4n)), (e) => isShoalError(e, "ALREADY_EXISTS"));

  await waitFor(() => leader.status().members.find((m) => m.raftId === 4n)?.voter === true, 15_000, "automatic promotion");
  assert.ok(changes.some((c) => c.change?.raftId === 4n && c.change.type === 0));
  assert.ok(changes.some((c) => c.change?.raftId === 4n && c.change.type === 1));
  await waitFor(() => cluster.member(4n).sm.items.length === 30, 15_000, "learner to replicate");
  assert.deepEqual(cluster.member(4n).sm.items, cluster.member(leader.id).sm.items);
  const n4 = cluster.node(4n);
  await waitFor(() => n4.status().members.length === 4 && n4.status().members.every((m) => m.voter), 15_000, "node 4 to see itself as voter");
  assert.equal(n4.status().members.find((m) => m.raftId === 1n)?.addr, "loopback:1");

  // Remove a follower; its ID is never reusable.
  const victim = [1n, 2n, 3n].find((id) => id !== leader.id)!;
  const after = await leader.removeMember(victim);
  assert.ok(!after.voters.includes(victim));
  assert.equal(after.voters.length, 3);
  await assert.rejects(leader.addLearner(cluster.info(victim)), (e) => isShoalError(e, "FAILED_PRECONDITION"));
  await assert.rejects(leader.removeMember(victim), (e) => isShoalError(e, "NOT_FOUND"));
  await cluster.stop(victim);
  const r = (await leader.propose(utf8("with three"))) as { index: number };
  await waitFor(() => cluster.node(4n).appliedIndex >= r.index, 15_000, "the new voter to apply");
  assert.ok(leader.status().removedIds.includes(victim));
});

test("a removal that would leave fewer reachable voters than a quorum is refused", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  await leader.propose(utf8("x"));
  const [down, alive] = [1n, 2n, 3n].filter((id) => id !== leader.id) as [bigint, bigint];
  await cluster.stop(down);
  await new Promise((r) => setTimeout(r, 2 * 15 * 20 + 100)); // past the reachability window (2 election timeouts of ticks)
  assert.ok(!leader.reachableVoters().has(down));
  await assert.rejects(leader.removeMember(alive), (e) => {
    assert.ok(isShoalError(e, "FAILED_PRECONDITION"));
    assert.match((e as Error).message, /quorum/);
    return true;
  });
  // Removing the down one is safe and goes through.
  const conf = await leader.removeMember(down);
  assert.deepEqual([...conf.voters].sort(), [leader.id, alive].sort());
  const follower = cluster.node(alive);
  await assert.rejects(follower.removeMember(leader.id), (e) => isShoalError(e, "NOT_LEADER"));
});

test("the leader can remove itself (another takes over) and leadership can be transferred", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const first = await cluster.waitForLeader();
  await first.propose(utf8("x"));
  const target = [1n, 2n, 3n].find((id) => id !== first.id)!;
  const follower = cluster.node([1n, 2n, 3n].find((id) => id !== first.id && id !== target)!);
  // Asked on a follower: forwarded to the leader.
  await follower.transferLeadership(target, { timeoutMs: 5000 });
  const second = await cluster.waitForLeader();
  assert.equal(second.id, target);
  await assert.rejects(second.transferLeadership(99n), (e) => isShoalError(e, "FAILED_PRECONDITION"));

  // Every node knowing the new leader does not mean the leader has heard back from every voter yet,
  // and the removal's quorum check counts only voters it heard from.
  await waitFor(() => second.reachableVoters().size === 3, 15_000, "the new leader to hear from every voter");
  const removedEvents: boolean[] = [];
  second.on("membership-changed", (c) => removedEvents.push(c.removedSelf));
  const conf = await second.removeMember(second.id);
  assert.ok(!conf.voters.includes(second.id));
  assert.deepEqual(removedEvents, [true]);
  await cluster.stop(second.id);
  const third = await cluster.waitForLeader();
  assert.notEqual(third.id, second.id);
  const r = (await third.propose(utf8("after self-removal"))) as { value: string };
  assert.equal(r.value, "after self-removal");
  assert.equal(third.status().members.length, 2);
});
