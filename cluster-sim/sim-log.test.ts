// The simulated durable log under RaftNode: a torn unsynced tail after a crash is cut and the node
// starts; corruption of synced bytes is found by the record checksums and the node refuses to start.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../src/base/clock.js";
import { isShoalError } from "../src/base/errors.js";
import { SeededRandom } from "../src/base/random.js";
import { EntryType, type Entry } from "../src/raft/core/types.js";
import { RaftNode, type RaftTransport } from "../src/raft/node/index.js";
import { lastIndexOf, SimDisk } from "./disk.js";
import { SimDurableLog } from "./sim-log.js";

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array([index, 1, 2, 3]) });
const syncAtOnce = (disk: SimDisk) => new SimDurableLog(disk, { beforeSave: () => undefined, beforeCompact: () => undefined, fsync: async () => disk.sync() });
const idleTransport: RaftTransport = { send: () => undefined, addPeer: () => undefined, removePeer: () => undefined };

function startNode(disk: SimDisk): Promise<RaftNode> {
  return RaftNode.start({
    id: 1n,
    log: syncAtOnce(disk),
    transport: idleTransport,
    stateMachine: { apply: () => undefined, snapshot: () => new Uint8Array(), restore: () => undefined },
    bootstrap: { members: [{ raftId: 1n, nodeId: "sim-node-0", addr: "n0" }] },
    clock: new ManualClock(),
    random: new SeededRandom(1),
  });
}

function diskWithSyncedLog(): SimDisk {
  const disk = new SimDisk();
  disk.write({ kind: "snapshot", snapshot: { metadata: { index: 1, term: 1, confState: { voters: [1n], learners: [] } }, data: new Uint8Array([1]) }, keepSuffix: false });
  disk.write({ kind: "entries", entries: [entry(2, 1), entry(3, 1), entry(4, 1)] });
  disk.write({ kind: "hardState", hardState: { term: 1, vote: 1n, commit: 4 } });
  disk.sync();
  return disk;
}

test("a torn unsynced tail is cut at the crash and the log loads what was synced", async () => {
  for (let seed = 0; seed < 40; seed++) {
    const disk = diskWithSyncedLog();
    disk.write({ kind: "entries", entries: [entry(5, 1), entry(6, 1), entry(7, 1)] });
    disk.crash(new SeededRandom(seed));
    const loaded = await syncAtOnce(disk).load();
    assert.ok(loaded.entries.length >= 3, `seed ${seed}: synced entries survive`);
    assert.equal(loaded.hardState.commit, 4);
    const node = await startNode(disk);
    assert.ok(node.appliedIndex >= 1 && !node.isStopped);
    await node.stop();
  }
});

test("a flipped byte in synced entries or the snapshot stops the node at start with RAFT_LOG_CORRUPT", async () => {
  const damaged = new Set<string>();
  for (let seed = 0; seed < 20; seed++) {
    const disk = diskWithSyncedLog();
    disk.crash(new SeededRandom(seed));
    const what = disk.corruptSynced(new SeededRandom(seed));
    assert.ok(what !== undefined);
    damaged.add(what.split(" ")[0]!);
    await assert.rejects(startNode(disk), (err: unknown) => {
      assert.ok(isShoalError(err, "RAFT_LOG_CORRUPT"), String(err));
      assert.match((err as Error).message, /fails its checksum/);
      return true;
    });
  }
  // Both kinds of record were hit across the seeds.
  assert.deepEqual([...damaged].sort(), ["entry", "snapshot"]);
});

test("an untouched log verifies clean, and corruption is not confused with a torn tail", () => {
  const disk = diskWithSyncedLog();
  assert.equal(disk.verifyDurable(), undefined);
  disk.write({ kind: "entries", entries: [entry(5, 1)] });
  disk.crash(new SeededRandom(3));
  assert.equal(disk.verifyDurable(), undefined, "a crash alone never fails a checksum");
  assert.ok(lastIndexOf(disk.durable) >= 4);
});
