// Split votes between the survivors of a dead leader. Two followers that time out within one round
// trip both pass the pre-vote (each grants the other's, neither is in a lease) and then vote for
// themselves; with three voters and one dead neither can count a lost election. A candidate whose
// vote is refused redraws its remaining wait from [1, E/2) ticks, so the retry comes well before a
// whole new election timeout. And the CheckQuorum lease is one heartbeat interval shorter than the
// minimum election timeout, so a follower that counted up to a heartbeat fewer ticks still votes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Role } from "../../src/raft/core/types.js";
import { Cluster, lowRandom } from "./env.js";

const E = 10;

function elected(c: Cluster): bigint | undefined {
  for (const id of [2n, 3n]) if (c.node(id).core.status().softState.role === Role.Leader) return id;
  return undefined;
}

test("after a split vote between two survivors, one of them leads within E/2 ticks, not a new timeout", () => {
  const c = new Cluster({ voters: [1n, 2n, 3n], preVote: true, checkQuorum: true, electionTicks: E, heartbeatTicks: 1, random: () => lowRandom });
  for (const id of [1n, 2n, 3n]) c.addNode(id);
  c.node(1n).core.campaign();
  c.stabilize(undefined);
  c.isolate(1n);
  // Both time out on the same tick: their pre-votes cross, both win them, their votes cross.
  for (let i = 0; i < E; i++) {
    c.node(2n).core.tick();
    c.node(3n).core.tick();
  }
  c.stabilize(undefined, [2n, 3n]);
  const [s2, s3] = [c.node(2n).core.status(), c.node(3n).core.status()];
  assert.equal(s2.softState.role, Role.Candidate, "the vote split: node 2 is a candidate");
  assert.equal(s3.softState.role, Role.Candidate, "the vote split: node 3 is a candidate");
  assert.equal(s2.hardState.term, s3.hardState.term);
  let ticks = 0;
  while (elected(c) === undefined && ticks < 4 * E) {
    ticks++;
    c.node(2n).core.tick();
    c.stabilize(undefined, [2n, 3n]);
    if (elected(c) !== undefined) break;
    c.node(3n).core.tick();
    c.stabilize(undefined, [2n, 3n]);
  }
  assert.notEqual(elected(c), undefined, "nobody was elected");
  assert.ok(ticks < E / 2, `a leader after ${ticks} more ticks (a whole new timeout is ${E})`);
});

function leaseElectedAfter(heartbeatTicks: number, laggardTicks: number): bigint {
  const c = new Cluster({ voters: [1n, 2n, 3n], preVote: true, checkQuorum: true, electionTicks: E, heartbeatTicks, random: () => lowRandom });
  for (const id of [1n, 2n, 3n]) c.addNode(id);
  c.node(1n).core.campaign();
  c.stabilize(undefined);
  c.isolate(1n);
  for (let i = 0; i < laggardTicks; i++) c.node(3n).core.tick();
  for (let i = 0; i < E; i++) c.node(2n).core.tick();
  c.stabilize(undefined, [2n, 3n]);
  return c.node(3n).core.status().softState.leader;
}

test("with 3-tick heartbeats, a follower up to one heartbeat interval behind the candidate votes; one further behind does not", () => {
  assert.equal(leaseElectedAfter(3, E - 3), 2n);
  assert.equal(leaseElectedAfter(3, E - 4), 1n);
});
