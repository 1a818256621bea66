// Bounds and failure paths of the Raft driver: full queues refuse with QUEUE_FULL, a state machine
// that reports corruption stops the node with every caller told, and a single-member cluster grows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ShoalError, isShoalError } from "../../src/base/errors.js";
import { MessageType, type Message } from "../../src/raft/core/types.js";
import { TestCluster, utf8, waitFor } from "./harness.js";

test("queued and pending proposals, reads and inbound messages are bounded", async (t) => {
  const cluster = new TestCluster({ maxQueuedProposals: 2, maxQueuedMessages: 3, maxPendingReads: 1 });
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  await leader.propose(utf8("warm"));

  // While the loop awaits an fsync, only two proposals fit in the queue.
  const burst = Array.from({ length: 4 }, (_, i) => leader.propose(utf8(`b${i}`)).then(() => "ok", (e: ShoalError) => e.code));
  // While that fsync runs, at most three inbound messages queue (fewer if peers' replies already wait).
  const heartbeat = (n: number): Message => ({
    type: MessageType.Heartbeat, to: leader.id, from: 99n, term: 0, logTerm: 0, index: 0,
    entries: [], commit: 0, reject: false, rejectHint: 0, context: new Uint8Array([n]),
  });
  const accepted = Array.from({ length: 10 }, (_, i) => leader.receive(heartbeat(i))).filter(Boolean).length;
  assert.ok(accepted <= 3, `at most 3 inbound messages queue behind the fsync, ${accepted} did`);
  const burstCodes = await Promise.all(burst);
  // Two queue; a third is accepted only if the loop was idle and handed the first to the core at once.
  assert.deepEqual(burstCodes.slice(0, 2), ["ok", "ok"]);
  assert.equal(burstCodes[3], "QUEUE_FULL");
  assert.ok(burstCodes[2] === "ok" || burstCodes[2] === "QUEUE_FULL");

  const reads = [leader.readIndex({ timeoutMs: 300 }), leader.readIndex({ timeoutMs: 300 })].map((p) => p.then(() => "ok", (e: ShoalError) => e.code));
  const readCodes = await Promise.all(reads);
  assert.equal(readCodes[1], "QUEUE_FULL", "a second read waits over the bound of 1");
});

test("proposals appended but not yet committed are bounded", async (t) => {
  const cluster = new TestCluster({ maxPendingProposals: 3 });
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  await leader.propose(utf8("warm"));
  // Cut the leader off so nothing commits; each proposal reaches the core before the next.
  for (const id of [1n, 2n, 3n]) if (id !== leader.id) cluster.network.setLink(leader.id, id, false);
  const stuck: Array<Promise<string>> = [];
  for (let i = 0; i < 4; i++) {
    stuck.push(leader.propose(utf8(`s${i}`), { timeoutMs: 300 }).then(() => "ok", (e: ShoalError) => e.code));
    await new Promise((r) => setTimeout(r, 10));
  }
  const codes = await Promise.all(stuck);
  assert.equal(codes[3], "QUEUE_FULL", `the fourth is over the pending bound of 3: ${codes.join(",")}`);
  for (const c of codes.slice(0, 3)) assert.ok(c === "TIMEOUT" || c === "NO_QUORUM", codes.join(","));
});

test("a state machine that throws on apply stops the node and rejects every waiting caller", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  const sm = cluster.member(leader.id).sm;
  const apply = sm.apply.bind(sm);
  sm.apply = (entry) => {
    if (Buffer.from(entry.data).toString() === "poison") throw new ShoalError("STORE_CORRUPT", "undecodable proposal");
    return apply(entry);
  };
  const fatal: Error[] = [];
  leader.on("fatal", (e) => fatal.push(e));
  await leader.propose(utf8("fine"));
  await assert.rejects(leader.propose(utf8("poison")), (e) => isShoalError(e, "STORE_CORRUPT"));
  assert.equal(fatal.length, 1);
  assert.equal(leader.isStopped, true);
  await assert.rejects(leader.propose(utf8("later")), (e) => isShoalError(e, "STORE_CORRUPT"));
  // The others applied the same entry; they are not this node's state machine, so they carry on.
  await cluster.stop(leader.id);
  const next = await cluster.waitForLeader();
  assert.notEqual(next.id, leader.id);
});

test("a single-member cluster elects itself, takes a learner, and grows to two voters", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await cluster.bootstrap([1n]);
  const solo = await cluster.waitForLeader();
  assert.equal(solo.id, 1n);
  const r = (await solo.propose(utf8("alone"))) as { value: string };
  assert.equal(r.value, "alone");
  await assert.rejects(solo.removeMember(1n), (e) => isShoalError(e, "FAILED_PRECONDITION"), "the last voter cannot leave");

  await cluster.start(2n, { join: { members: [cluster.info(1n)] } });
  await solo.addLearner(cluster.info(2n));
  await waitFor(() => solo.status().members.filter((m) => m.voter).length === 2, 15_000, "learner promoted");
  await solo.propose(utf8("pair"));
  await waitFor(() => cluster.member(2n).sm.items.join() === "alone,pair", 15_000, "joiner state");

  // The joiner learned the founder's address from the founding snapshot and survives a restart.
  await cluster.stop(2n);
  await cluster.start(2n);
  await waitFor(() => cluster.member(2n).sm.items.join() === "alone,pair", 15_000, "joiner state after restart");
  assert.equal(cluster.node(2n).status().members.find((m) => m.raftId === 1n)?.addr, "loopback:1");
});

test("a node with no raft state refuses to start without bootstrap or join", async (t) => {
  const cluster = new TestCluster();
  t.after(() => cluster.close());
  await assert.rejects(cluster.start(5n), (e) => isShoalError(e, "FAILED_PRECONDITION"));
  await assert.rejects(cluster.start(6n, { bootstrap: { members: [cluster.info(7n)] } }), (e) => isShoalError(e, "INVALID_ARGUMENT"));
});
