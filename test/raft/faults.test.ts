// The planted faults (types.ts PlantedFaults) each produce the violation they are named after in a
// hand-built schedule, and the same schedule is safe with the fault off: proof that the switches
// work, for the simulator that must catch them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isShoalError } from "../../src/base/errors.js";
import type { PlantedFaults, RaftId } from "../../src/raft/core/index.js";
import { Cluster } from "./env.js";

const enc = new TextEncoder();

function cluster(count: number, faults: PlantedFaults | undefined, extra: Partial<ConstructorParameters<typeof Cluster>[0]> = {}): Cluster {
  const voters = Array.from({ length: count }, (_, i) => BigInt(i + 1));
  const c = new Cluster({ voters, ...(faults !== undefined ? { faults } : {}), ...extra });
  for (const id of voters) c.addNode(id);
  return c;
}

function only(c: Cluster, ids: RaftId[]): void {
  c.heal();
  for (const a of c.ids()) for (const b of c.ids()) if (a !== b && !(ids.includes(a) && ids.includes(b))) c.dropped.add(`${a}->${b}`);
}

/**
 * The current-term commit rule (§5.4.2). Leader 1 of term 1 appends "old" at index 2 that reaches
 * nobody; it is re-elected in term 2 and copies index 2 to node 2, but the Append carrying its
 * term-2 no-op is lost. A majority (1, 2) now holds index 2, yet it must not commit until an
 * entry of term 2 is on a majority: otherwise a later leader could still overwrite it (figure 8).
 */
function oldTermOnMajority(faults: PlantedFaults | undefined): Cluster {
  // One entry per Append (24 bytes overhead + 3 data), so index 2 travels without the no-op.
  const c = cluster(3, faults, { maxSizePerMsgBytes: 27 });
  c.node(1n).core.campaign();
  c.stabilize(undefined);
  only(c, [1n]);
  c.node(1n).core.propose(enc.encode("old"));
  c.stabilize(undefined);
  only(c, [1n, 2n]);
  c.node(2n).core.campaign();
  c.stabilize(undefined); // node 2 loses (its log is behind) but moves node 1 to term 2
  c.node(1n).core.campaign();
  // The first Append to node 2 (prev=2, which node 2 lacks) is rejected and makes the leader back
  // up to index 2; every later Append carrying a term-2 entry to node 2 is lost.
  let newTermAppends = 0;
  c.lose = (m) => m.to === 2n && m.entries.some((e) => e.term > 1) && newTermAppends++ > 0;
  c.stabilize(undefined);
  assert.equal(c.node(1n).core.status().softState.role, "leader");
  assert.equal(c.node(2n).storage.entries.length, 2, "node 2 holds index 2 from term 1 only");
  return c;
}

test("commitPreviousTermByCounting: an old-term entry is committed by counting replicas", () => {
  const c = oldTermOnMajority({ commitPreviousTermByCounting: true });
  const st = c.node(1n).core.status();
  assert.equal(st.hardState.commit, 2, "the faulty leader committed index 2 (term 1) in term 2");
  assert.ok(c.node(1n).applied.includes("old"));
});

test("without commitPreviousTermByCounting: the old-term entry waits for a current-term entry", () => {
  const c = oldTermOnMajority(undefined);
  assert.equal(c.node(1n).core.status().hardState.commit, 1, "index 2 is on a majority but not committed");
  assert.equal(c.node(1n).applied.includes("old"), false);
  // Once the no-op reaches node 2, both commit together.
  c.lose = undefined;
  c.node(1n).core.tick();
  c.stabilize(undefined);
  assert.equal(c.node(1n).core.status().hardState.commit, 3);
  assert.ok(c.node(1n).applied.includes("old"));
});

function splitVote(faults: PlantedFaults | undefined): Cluster {
  // Nodes 1 and 2 campaign at once in term 1; node 3 hears node 1 first.
  const c = cluster(3, faults);
  c.node(1n).core.campaign();
  c.node(2n).core.campaign();
  c.processReady(1n, undefined);
  c.processReady(2n, undefined);
  // Deliver node 1's request to node 3 first, then node 2's.
  const inbox = c.inboxes.get(3n)!;
  inbox.sort((a, b) => (a.from < b.from ? -1 : 1));
  c.stabilize(undefined);
  return c;
}

test("voteWithoutPersisting: a voter grants twice in one term and two leaders are elected", () => {
  assert.throws(() => splitVote({ voteWithoutPersisting: true }), /two leaders in term 1/);
});

test("without voteWithoutPersisting: one vote per term, at most one leader", () => {
  const c = splitVote(undefined);
  const leaders = [...c.nodes.values()].filter((n) => n.core.status().softState.role === "leader");
  assert.equal(leaders.length, 1);
  assert.equal(c.node(3n).storage.hardState.vote, 1n, "node 3's persisted vote is for the first candidate");
});

function divergentFollower(faults: PlantedFaults | undefined): Cluster {
  const c = cluster(3, faults);
  c.node(1n).core.campaign();
  c.stabilize(undefined);
  // Leader 1 appends two entries that never leave it; node 2 leads term 2 and replaces them.
  only(c, [1n]);
  c.node(1n).core.propose(enc.encode("lost1"));
  c.node(1n).core.propose(enc.encode("lost2"));
  c.stabilize(undefined);
  only(c, [2n, 3n]);
  c.node(2n).core.campaign();
  c.stabilize(undefined);
  c.heal();
  c.node(2n).core.tick();
  c.stabilize(undefined);
  return c;
}

test("skipConflictTruncation: the follower keeps a conflicting suffix and its log breaks", () => {
  const c = divergentFollower({ skipConflictTruncation: true });
  // Node 1's log now holds 2@t2 followed by the stale 3@t1: terms go down, log matching is broken.
  const terms = c.node(1n).storage.entries.map((e) => `${e.index}@t${e.term}`);
  assert.deepEqual(terms, ["1@t1", "2@t2", "3@t1"]);
  assert.throws(
    () => c.node(1n).core.checkInvariants(),
    (err: unknown) => isShoalError(err, "RAFT_INVARIANT"),
  );
});

test("without skipConflictTruncation: the conflicting suffix is truncated", () => {
  const c = divergentFollower(undefined);
  const terms = c.node(1n).storage.entries.map((e) => `${e.index}@t${e.term}`);
  assert.deepEqual(terms, ["1@t1", "2@t2"]);
  c.node(1n).core.checkInvariants();
});
