// Three RaftNodes over the loopback network with real encrypted LevelDB: election, replication,
// apply results back to the proposer, NOT_LEADER on followers, linearizable reads, leader events.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import { NotLeaderError, type LeaderChange } from "../../src/raft/node/index.js";
import { TestCluster, utf8, waitFor } from "./harness.js";

test("3 nodes elect one leader, commit proposals in order on all, and return apply results", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  assert.ok(leader.term >= 1);

  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => leader.propose(utf8(`v${i}`))));
  const indexes = results.map((r) => (r as { index: number; value: string }).index);
  assert.deepEqual(
    results.map((r) => (r as { value: string }).value),
    Array.from({ length: 20 }, (_, i) => `v${i}`),
    "each proposer got the result of its own entry",
  );
  assert.deepEqual(indexes, [...indexes].sort((a, b) => a - b));
  assert.equal(new Set(indexes).size, 20);

  const last = indexes.at(-1)!;
  await waitFor(() => cluster.running().every((n) => n.appliedIndex >= last), 15_000, "all nodes to apply");
  const lists = [1n, 2n, 3n].map((id) => cluster.member(id).sm.items);
  for (const list of lists) assert.deepEqual(list, lists[0]);
  assert.equal(lists[0]!.length, 20);
  for (const n of cluster.running()) {
    assert.equal(n.commitIndex >= last, true);
    assert.equal(n.status().members.filter((m) => m.voter).length, 3);
    assert.equal(n.status().members.find((m) => m.raftId === 2n)?.addr, "loopback:2");
  }
});

test("a follower refuses proposals with NOT_LEADER naming the leader; reads are linearizable", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  const follower = cluster.running().find((n) => !n.isLeader)!;
  await assert.rejects(follower.propose(utf8("x")), (e) => {
    assert.ok(e instanceof NotLeaderError);
    assert.equal(e.code, "NOT_LEADER");
    assert.equal(e.leaderId, leader.id);
    assert.equal(e.leaderAddr, `loopback:${leader.id}`);
    return true;
  });
  await assert.rejects(leader.propose(new Uint8Array(0)), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  await assert.rejects(leader.propose(utf8("x"), { timeoutMs: 0 }), (e) => isShoalError(e, "INVALID_ARGUMENT"));
  await assert.rejects(leader.readIndex({ timeoutMs: -1 }), (e) => isShoalError(e, "INVALID_ARGUMENT"));

  const r = (await leader.propose(utf8("written"))) as { index: number };
  // A read on the follower must observe the write that committed before it started.
  await follower.readIndex();
  assert.ok(follower.appliedIndex >= r.index, "follower read waited for the committed write to apply");
  assert.ok(cluster.member(follower.id).sm.items.includes("written"));
  await leader.readIndex();
  assert.ok(leader.appliedIndex >= r.index);
});

test("leader-changed fires on every node, and stopping the leader elects another", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const events = new Map<bigint, LeaderChange[]>();
  for (const n of cluster.running()) {
    const list: LeaderChange[] = [];
    events.set(n.id, list);
    n.on("leader-changed", (e) => list.push(e));
  }
  const first = await cluster.waitForLeader();
  await waitFor(() => [...events.values()].every((l) => l.some((e) => e.leaderId === first.id)), 10_000, "leader events");
  const selfEvent = events.get(first.id)!.find((e) => e.leaderId === first.id)!;
  assert.equal(selfEvent.isLeader, true);
  assert.equal(selfEvent.term, first.term);

  await cluster.stop(first.id);
  const second = await cluster.waitForLeader();
  assert.notEqual(second.id, first.id);
  assert.ok(second.term > selfEvent.term);
  const other = cluster.running().find((n) => n !== second)!;
  await waitFor(() => events.get(other.id)!.some((e) => e.leaderId === second.id && e.term === second.term), 10_000, "new leader event");
  await second.propose(utf8("after failover"));
});

test("calls made before any leader is elected wait for the election instead of failing", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const n1 = cluster.node(1n);
  assert.equal(n1.leaderId, 0n, "no leader yet right after start");
  const read = n1.readIndex({ timeoutMs: 5000 });
  const proposal = n1.propose(utf8("early"), { timeoutMs: 5000 }).then(
    (r) => (r as { value: string }).value,
    (e: NotLeaderError) => e,
  );
  await read;
  assert.notEqual(n1.leaderId, 0n);
  const outcome = await proposal;
  if (n1.isLeader) assert.equal(outcome, "early");
  else {
    assert.ok(outcome instanceof NotLeaderError, String(outcome));
    assert.equal(outcome.leaderId, n1.leaderId, "told who the leader is once there is one");
  }
});
