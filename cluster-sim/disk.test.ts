// The simulated disk: synced writes survive a crash, unsynced ones survive only as a prefix, and a
// torn entry write keeps only whole leading entries.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SeededRandom } from "../src/base/random.js";
import { EntryType, type Entry } from "../src/raft/core/types.js";
import { lastIndexOf, SimDisk, termAt } from "./disk.js";
import { SimViolation } from "./violation.js";

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array([index]) });

test("synced writes survive every crash", () => {
  for (let seed = 0; seed < 50; seed++) {
    const disk = new SimDisk();
    disk.write({ kind: "entries", entries: [entry(1, 1), entry(2, 1)] });
    disk.write({ kind: "hardState", hardState: { term: 1, vote: 7n, commit: 2 } });
    disk.sync();
    disk.write({ kind: "entries", entries: [entry(3, 1)] });
    disk.crash(new SeededRandom(seed));
    assert.ok(lastIndexOf(disk.durable) >= 2);
    assert.deepEqual(disk.durable.hardState, { term: 1, vote: 7n, commit: 2 });
    assert.equal(disk.unsyncedWrites, 0);
    assert.deepEqual(disk.current, disk.durable, "after a crash the node sees exactly the durable image");
  }
});

test("a crash keeps a prefix of unsynced writes, sometimes tearing the last entry write", () => {
  const outcomes = new Set<string>();
  for (let seed = 0; seed < 300; seed++) {
    const disk = new SimDisk();
    disk.write({ kind: "entries", entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
    disk.write({ kind: "hardState", hardState: { term: 1, vote: 0n, commit: 3 } });
    disk.crash(new SeededRandom(seed));
    const last = lastIndexOf(disk.durable);
    const commit = disk.durable.hardState.commit;
    // The hard state is written after the entries, so it can only survive if they all did.
    assert.ok(commit === 0 || last === 3, `commit ${commit} with last index ${last}`);
    outcomes.add(`${last}/${commit}`);
  }
  // All entries lost, torn to 1 or 2, all entries but no hard state, everything.
  assert.deepEqual([...outcomes].sort(), ["0/0", "1/0", "2/0", "3/0", "3/3"]);
});

test("entry writes truncate a conflicting suffix; a gap is a contract violation", () => {
  const disk = new SimDisk();
  disk.write({ kind: "entries", entries: [entry(1, 1), entry(2, 1), entry(3, 1)] });
  disk.write({ kind: "entries", entries: [entry(2, 2)] });
  assert.equal(lastIndexOf(disk.current), 2);
  assert.equal(termAt(disk.current, 2), 2);
  assert.equal(lastIndexOf(disk.durable), 0, "nothing is durable before a sync");
  assert.throws(() => disk.write({ kind: "entries", entries: [entry(5, 2)] }), SimViolation);
});

test("local compaction keeps the suffix, a leader's snapshot replaces the log, restore reflects both", () => {
  const disk = new SimDisk();
  disk.write({ kind: "entries", entries: [entry(1, 1), entry(2, 1), entry(3, 2)] });
  const snapshot = (index: number, term: number) => ({
    metadata: { index, term, confState: { voters: [1n, 2n], learners: [] } },
    data: new Uint8Array([9]),
  });
  disk.write({ kind: "snapshot", snapshot: snapshot(2, 1), keepSuffix: true });
  disk.sync();
  assert.equal(lastIndexOf(disk.durable), 3);
  const restored = disk.restoreState({ voters: [1n], learners: [] });
  assert.equal(restored.snapshot?.index, 2);
  assert.deepEqual(restored.entries.map((e) => e.index), [3]);
  assert.deepEqual(restored.snapshotData, new Uint8Array([9]));
  disk.write({ kind: "snapshot", snapshot: snapshot(10, 4), keepSuffix: false });
  disk.sync();
  assert.equal(lastIndexOf(disk.durable), 10);
  assert.equal(disk.durable.entries.length, 0);
});
