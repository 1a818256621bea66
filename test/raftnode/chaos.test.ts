// Proposals under repeated leader crashes and partitions: every call settles, every result is
// honest (a resolved value is applied exactly once, a dropped one never), and all nodes converge.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SeededRandom } from "../../src/base/random.js";
import type { ShoalError } from "../../src/base/errors.js";
import { TestCluster, utf8, waitFor } from "./harness.js";

test("crashes and partitions: no call hangs, outcomes are honest, and the nodes converge", async (t) => {
  const seed = Number(process.env.CHAOS_SEED ?? 1);
  const random = new SeededRandom(seed);
  const cluster = new TestCluster({ snapshotIntervalEntries: 40, logEntriesForSlowFollowers: 10, noLeaderTimeoutMs: 3000 });
  t.after(() => cluster.close());
  const ids = [1n, 2n, 3n];
  await cluster.bootstrap(ids);
  await cluster.waitForLeader();

  const outcomes = new Map<string, string>();
  let running = true;
  let counter = 0;
  const proposer = async (): Promise<void> => {
    while (running) {
      const nodes = cluster.running();
      const node = nodes.find((n) => n.isLeader) ?? nodes[random.int(0, nodes.length)];
      if (node === undefined) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const value = `p${counter++}`;
      const outcome = await node.propose(utf8(value), { timeoutMs: 1500 }).then(
        () => "ok",
        (e: ShoalError) => e.code,
      );
      outcomes.set(value, outcome);
      if (outcome !== "ok") await new Promise((r) => setTimeout(r, 5));
    }
  };
  const proposers = Array.from({ length: 4 }, () => proposer());

  for (let round = 0; round < 6; round++) {
    await new Promise((r) => setTimeout(r, 400));
    const victim = ids[random.int(0, 3)]!;
    if (random.float() < 0.5) {
      await cluster.stop(victim);
      await new Promise((r) => setTimeout(r, 300));
      await cluster.start(victim);
    } else {
      for (const other of ids) if (other !== victim) cluster.network.setLink(victim, other, false);
      await new Promise((r) => setTimeout(r, 500));
      for (const other of ids) if (other !== victim) cluster.network.setLink(victim, other, true);
    }
  }
  running = false;
  await Promise.all(proposers); // every call settled: a hang would time this test out

  const leader = await cluster.waitForLeader(10_000);
  const final = (await leader.propose(utf8("final"))) as { index: number };
  await waitFor(() => cluster.running().every((n) => n.appliedIndex >= final.index), 10_000, "convergence");
  const lists = ids.map((id) => cluster.member(id).sm.items);
  for (const list of lists) assert.deepEqual(list, lists[0], `seed ${seed}: nodes diverged`);

  const applied = new Map<string, number>();
  for (const v of lists[0]!) applied.set(v, (applied.get(v) ?? 0) + 1);
  const codes = new Map<string, number>();
  for (const [value, outcome] of outcomes) {
    codes.set(outcome, (codes.get(outcome) ?? 0) + 1);
    const times = applied.get(value) ?? 0;
    assert.ok(times <= 1, `seed ${seed}: ${value} applied ${times} times`);
    if (outcome === "ok") assert.equal(times, 1, `seed ${seed}: ${value} resolved but is not in the state`);
    if (outcome === "PROPOSAL_DROPPED") assert.equal(times, 0, `seed ${seed}: ${value} reported dropped but was applied`);
    assert.ok(["ok", "PROPOSAL_DROPPED", "OUTCOME_UNKNOWN", "NOT_LEADER", "TIMEOUT", "UNAVAILABLE", "NO_QUORUM"].includes(outcome), `unexpected outcome ${outcome}`);
  }
  assert.ok((codes.get("ok") ?? 0) > 50, `seed ${seed}: too little progress: ${JSON.stringify([...codes])}`);
  t.diagnostic(`seed ${seed} outcomes ${JSON.stringify([...codes])}`);
});
