// CheckQuorum's leader lease against tick phase. Each node counts its own ticks, so two followers that
// heard the same last heartbeat can be a tick apart. The first follower to time out has counted at
// least electionTicks; the other may have counted only one fewer. If the lease covered that one tick,
// the first pre-vote after a leader's death would be ignored and the election would wait for a second
// timeout: up to about twice the election timeout, which the failover benchmark saw (2.27 s once in 20).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Cluster, lowRandom } from "./env.js";

function electedAfter(laggardTicks: number): bigint {
  // lowRandom: every randomized election timeout is exactly electionTicks.
  const c = new Cluster({ voters: [1n, 2n, 3n], preVote: true, checkQuorum: true, random: () => lowRandom });
  for (const id of [1n, 2n, 3n]) c.addNode(id);
  c.node(1n).core.campaign();
  c.stabilize(undefined);
  assert.equal(c.node(2n).core.status().softState.leader, 1n);
  assert.equal(c.node(3n).core.status().softState.leader, 1n);
  // The leader dies; node 2 times out, node 3 has counted `laggardTicks` since the last heartbeat.
  c.isolate(1n);
  for (let i = 0; i < laggardTicks; i++) c.node(3n).core.tick();
  for (let i = 0; i < c.options.electionTicks; i++) c.node(2n).core.tick();
  c.stabilize(undefined, [2n, 3n]);
  return c.node(3n).core.status().softState.leader;
}

test("a follower one tick behind the candidate's clock grants the pre-vote and the vote", () => {
  assert.equal(electedAfter(defaultElectionTicks() - 1), 2n);
});

test("a follower that heard from the leader two ticks more recently still ignores the candidate", () => {
  assert.equal(electedAfter(defaultElectionTicks() - 2), 1n);
});

function defaultElectionTicks(): number {
  return new Cluster().options.electionTicks;
}
