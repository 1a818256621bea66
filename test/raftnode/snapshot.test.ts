// Snapshots and log compaction: a follower too far behind the leader's first index catches up by
// snapshot, and a node restarts from a compacted log (snapshot + tail) with identical state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TestCluster, utf8, waitFor } from "./harness.js";

test("a follower far behind catches up by snapshot; restart from a compacted log keeps the state", async (t) => {
  const cluster = new TestCluster({ snapshotIntervalEntries: 20, logEntriesForSlowFollowers: 5 });
  t.after(() => cluster.close());
  await cluster.bootstrap([1n, 2n, 3n]);
  const leader = await cluster.waitForLeader();
  const lagging = [1n, 2n, 3n].find((id) => id !== leader.id)!;
  await cluster.stop(lagging);

  for (let i = 0; i < 120; i++) await leader.propose(utf8(`e${i}`));
  // The leader compacted: 120 entries with a snapshot every 20 and 5 kept behind.
  const lag = cluster.member(lagging);
  await cluster.start(lagging);
  await waitFor(() => lag.sm.items.length === 120, 20_000, "lagging follower to catch up");
  assert.ok(lag.sm.restores >= 1, "it was caught up by a snapshot, not by replaying the log");
  const leaderItems = cluster.member(leader.id).sm.items;
  assert.deepEqual(lag.sm.items, leaderItems);
  const members = cluster.node(lagging).status().members;
  assert.deepEqual(members.map((m) => m.addr).sort(), ["loopback:1", "loopback:2", "loopback:3"], "member addresses came with the snapshot");

  // It keeps replicating normally after the snapshot.
  await leader.propose(utf8("tail"));
  await waitFor(() => lag.sm.items.at(-1) === "tail", 15_000, "entry after the snapshot");

  // Restart the leader: it comes back from its own snapshot plus the log after it.
  const leaderId = leader.id;
  const expected = [...cluster.member(leaderId).sm.items];
  await cluster.stop(leaderId);
  await cluster.start(leaderId);
  const back = cluster.member(leaderId);
  assert.ok(back.sm.restores >= 1, "restored from the stored snapshot at start");
  await waitFor(() => back.sm.items.length >= expected.length, 15_000, "replay after the snapshot");
  assert.deepEqual(back.sm.items.slice(0, expected.length), expected);
});

test("big entries bring the snapshot forward: the log is bounded in bytes, not only in entries", async (t) => {
  // 40 entries of 4 KiB = 160 KiB: past a 64 KiB byte bound, far below the entry interval.
  const run = async (snapshotAfterLogBytes: number | undefined): Promise<number> => {
    const cluster = new TestCluster({ snapshotIntervalEntries: 1_000_000, logEntriesForSlowFollowers: 5, ...(snapshotAfterLogBytes !== undefined ? { snapshotAfterLogBytes } : {}) });
    t.after(() => cluster.close());
    await cluster.bootstrap([1n, 2n, 3n]);
    const leader = await cluster.waitForLeader();
    const lagging = [1n, 2n, 3n].find((id) => id !== leader.id)!;
    await cluster.stop(lagging);
    for (let i = 0; i < 40; i++) await leader.propose(utf8(`big${i}:` + "x".repeat(4096)));
    await cluster.start(lagging);
    const lag = cluster.member(lagging);
    await waitFor(() => lag.sm.items.length === 40, 20_000, "lagging follower to catch up");
    assert.deepEqual(lag.sm.items, cluster.member(leader.id).sm.items);
    return lag.sm.restores;
  };
  assert.ok((await run(64 * 1024)) >= 1, "with a 64 KiB bound the leader compacted, so the follower needed a snapshot");
  assert.equal(await run(undefined), 0, "with the default 64 MiB bound the same 160 KiB stays in the log");
});
