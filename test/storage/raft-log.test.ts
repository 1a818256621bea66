// Durable raft log: round trips across reopen, conflict truncation, compaction, received
// snapshots in chunks, and recovery that stops on a planted gap, a misplaced entry or a tampered value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClassicLevel } from "classic-level";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, RaftLogStorage, type RaftLogEntry } from "../../src/storage/index.js";
import { encodeRaftEntry, raftEntryKey } from "../../src/storage/raft-log.js";
import { SeededRandom } from "../../src/base/random.js";
import { isShoalError } from "../../src/base/errors.js";
import { tempDir } from "./temp-dir.js";

function entry(index: number, term: number, type = 0): RaftLogEntry {
  return { index, term, type, data: Buffer.from(`entry ${index} of term ${term}`) };
}

function range(lo: number, hi: number, term: number): RaftLogEntry[] {
  const out: RaftLogEntry[] = [];
  for (let i = lo; i <= hi; i++) out.push(entry(i, term));
  return out;
}

function plain(entries: RaftLogEntry[]): Array<[number, number, number, string]> {
  return entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString("hex")]);
}

class Fixture {
  readonly key = DataKey.generate();
  store!: EncryptedStore;
  log!: RaftLogStorage;
  constructor(readonly dir: string, readonly opts: { tailCacheEntries?: number; snapshotChunkBytes?: number } = {}) {}

  async open(): Promise<RaftLogStorage> {
    this.store = await EncryptedStore.open(this.dir, { current: this.key });
    this.log = await RaftLogStorage.open(this.store, this.opts);
    return this.log;
  }

  async reopen(): Promise<RaftLogStorage> {
    await this.store.close();
    return this.open();
  }

  async raw<T>(fn: (db: ClassicLevel<Buffer, Buffer>) => Promise<T>): Promise<T> {
    await this.store.close();
    const db = new ClassicLevel<Buffer, Buffer>(this.dir, { keyEncoding: "buffer", valueEncoding: "buffer" });
    await db.open();
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  }

  async rawKeys(prefix: number): Promise<Buffer[]> {
    return this.raw((db) => db.keys({ gte: Buffer.from([prefix]), lt: Buffer.from([prefix + 1]) }).all());
  }
}

async function fixture(t: import("node:test").TestContext, opts?: { tailCacheEntries?: number; snapshotChunkBytes?: number }): Promise<Fixture> {
  const f = new Fixture(tempDir(t, "raftlog"), opts);
  t.after(async () => {
    await f.store.close();
    f.key.dispose();
  });
  await f.open();
  return f;
}

const corrupt = (pattern: RegExp) => (err: unknown): boolean => isShoalError(err, "RAFT_LOG_CORRUPT") && pattern.test(err.message);

test("an empty log loads as term 0, no snapshot, no entries", async (t) => {
  const f = await fixture(t);
  const loaded = await f.log.load();
  assert.deepEqual(loaded, { hardState: { term: 0, vote: 0n, commit: 0 }, entries: [] });
  assert.equal(f.log.firstIndex(), 1);
  assert.equal(f.log.lastIndex(), 0);
});

test("entries and hard state round-trip across close and reopen", async (t) => {
  const f = await fixture(t);
  const first = range(1, 10, 1);
  first[3] = entry(4, 1, 1);
  first[4] = { index: 5, term: 1, type: 0, data: new Uint8Array(0) };
  await f.log.save({ entries: first, hardState: { term: 1, vote: 0xfedcba9876543210n, commit: 3 } });
  await f.log.save({ entries: range(11, 12, 2), hardState: { term: 2, vote: 7n, commit: 10 } });
  assert.equal(f.log.lastIndex(), 12);
  const log = await f.reopen();
  const loaded = await log.load();
  assert.deepEqual(loaded.hardState, { term: 2, vote: 7n, commit: 10 });
  assert.equal(loaded.snapshot, undefined);
  assert.deepEqual(plain(loaded.entries), plain([...first, ...range(11, 12, 2)]));
  assert.equal(log.firstIndex(), 1);
  assert.equal(log.lastIndex(), 12);
  assert.equal(await log.term(11), 2);
  assert.equal(await log.term(0), 0);
  assert.equal(await log.term(13), undefined);
  // A save with only a hard state leaves the entries alone.
  await log.save({ entries: [], hardState: { term: 3, vote: 0n, commit: 12 } });
  assert.equal((await (await f.reopen()).load()).entries.length, 12);
});

test("a conflicting suffix is deleted from entries[0].index on, in the same batch", async (t) => {
  const f = await fixture(t);
  await f.log.save({ entries: range(1, 10, 1) });
  await f.log.save({ entries: [entry(6, 2), entry(7, 2)], hardState: { term: 2, vote: 1n, commit: 5 } });
  assert.equal(f.log.lastIndex(), 7);
  assert.deepEqual(plain(await f.log.entries(5, 8)), plain([entry(5, 1), entry(6, 2), entry(7, 2)]));
  await assert.rejects(f.log.entries(5, 9), (e: unknown) => isShoalError(e, "INVALID_ARGUMENT"));
  const keys = await f.rawKeys(0x01);
  assert.deepEqual(keys.map((k) => Number(k.readBigUInt64BE(1))), [1, 2, 3, 4, 5, 6, 7]);
  const loaded = await (await f.open()).load();
  assert.deepEqual(plain(loaded.entries), plain([...range(1, 5, 1), entry(6, 2), entry(7, 2)]));
  // Overwriting only the last entry, and appending right after it.
  await f.log.save({ entries: [entry(7, 3)] });
  await f.log.save({ entries: [entry(8, 3)] });
  assert.deepEqual(plain((await (await f.reopen()).load()).entries.slice(-2)), plain([entry(7, 3), entry(8, 3)]));
});

test("compaction stores the snapshot and deletes the entries it covers", async (t) => {
  const f = await fixture(t, { tailCacheEntries: 3 });
  await f.log.save({ entries: range(1, 20, 1), hardState: { term: 1, vote: 2n, commit: 20 } });
  const confState = { voters: [11n, 22n, 33n], learners: [44n] };
  await f.log.compact({ metadata: { index: 12, term: 1, confState }, data: Buffer.from("state machine image") });
  assert.equal(f.log.firstIndex(), 13);
  assert.equal(f.log.lastIndex(), 20);
  await assert.rejects(f.log.entries(12, 14), (e: unknown) => isShoalError(e, "FAILED_PRECONDITION"));
  assert.deepEqual(plain(await f.log.entries(13, 21)), plain(range(13, 20, 1)));
  assert.equal(await f.log.term(12), 1);
  assert.equal(await f.log.term(11), undefined);
  assert.deepEqual(f.log.snapshotMetadata(), { index: 12, term: 1, confState });
  // Compacting backwards or past the end, or with the wrong term, is refused.
  await assert.rejects(f.log.compact({ metadata: { index: 10, term: 1, confState }, data: Buffer.alloc(0) }), (e: unknown) => isShoalError(e, "RAFT_INVARIANT"));
  await assert.rejects(f.log.compact({ metadata: { index: 21, term: 1, confState }, data: Buffer.alloc(0) }), (e: unknown) => isShoalError(e, "RAFT_INVARIANT"));
  await assert.rejects(f.log.compact({ metadata: { index: 15, term: 2, confState }, data: Buffer.alloc(0) }), (e: unknown) => isShoalError(e, "RAFT_INVARIANT"));
  // Writing at or below the snapshot is refused too.
  await assert.rejects(f.log.save({ entries: [entry(12, 2)] }), (e: unknown) => isShoalError(e, "RAFT_INVARIANT"));

  const keys = await f.rawKeys(0x01);
  assert.deepEqual(keys.map((k) => Number(k.readBigUInt64BE(1))), range(13, 20, 1).map((e) => e.index));
  const loaded = await (await f.open()).load();
  assert.deepEqual(loaded.snapshot?.metadata, { index: 12, term: 1, confState });
  assert.equal(loaded.snapshot?.data.toString(), "state machine image");
  assert.deepEqual(plain(loaded.entries), plain(range(13, 20, 1)));

  // Compacting the whole log leaves it empty after the snapshot.
  await f.log.compact({ metadata: { index: 20, term: 1, confState }, data: Buffer.from("later") });
  const again = await (await f.reopen()).load();
  assert.equal(again.entries.length, 0);
  assert.equal(f.log.lastIndex(), 20);
  assert.equal(f.log.firstIndex(), 21);
  await f.log.save({ entries: [entry(21, 2)] });
  assert.deepEqual(plain((await (await f.reopen()).load()).entries), plain([entry(21, 2)]));
});

test("entries are read from the store when they fell out of the tail cache", async (t) => {
  const f = await fixture(t, { tailCacheEntries: 4 });
  await f.log.save({ entries: range(1, 30, 1) });
  await f.log.save({ entries: range(31, 40, 2) });
  assert.deepEqual(plain(await f.log.entries(1, 41)), plain([...range(1, 30, 1), ...range(31, 40, 2)]));
  assert.deepEqual(plain(await f.log.entries(2, 5)), plain(range(2, 4, 1)));
  assert.equal(await f.log.term(3), 1);
  assert.equal(await f.log.term(40), 2);
  const limited = await f.log.entries(1, 41, 40);
  assert.ok(limited.length >= 1 && limited.length < 5, `got ${limited.length}`);
  assert.equal((await f.log.entries(1, 41, 0)).length, 1);
});

test("a snapshot from the leader replaces a log that does not contain it, in chunks of the configured size", async (t) => {
  const f = await fixture(t, { snapshotChunkBytes: 1000 });
  await f.log.save({ entries: range(1, 10, 1), hardState: { term: 1, vote: 1n, commit: 8 } });
  const big = Buffer.alloc(3500);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const confState = { voters: [1n, 2n, 3n], learners: [] };
  await f.log.save({
    snapshot: { metadata: { index: 50, term: 4, confState }, data: big },
    entries: [entry(51, 4)],
    hardState: { term: 4, vote: 0n, commit: 50 },
  });
  assert.equal(f.log.firstIndex(), 51);
  assert.equal(f.log.lastIndex(), 51);
  assert.equal((await f.rawKeys(0x04)).length, 4);
  assert.deepEqual((await f.rawKeys(0x01)).map((k) => Number(k.readBigUInt64BE(1))), [51]);
  let loaded = await (await f.open()).load();
  assert.deepEqual(loaded.snapshot?.data, big);
  assert.deepEqual(loaded.hardState, { term: 4, vote: 0n, commit: 50 });
  assert.deepEqual(plain(loaded.entries), plain([entry(51, 4)]));

  // A later, smaller snapshot removes the chunks it no longer needs.
  await f.log.save({ entries: range(52, 60, 4) });
  await f.log.compact({ metadata: { index: 55, term: 4, confState }, data: Buffer.from("small") });
  assert.equal((await f.rawKeys(0x04)).length, 1);
  loaded = await (await f.open()).load();
  assert.equal(loaded.snapshot?.data.toString(), "small");
  assert.deepEqual(plain(loaded.entries), plain(range(56, 60, 4)));

  // A snapshot the log already holds (same index and term) keeps the entries after it.
  await f.log.save({ snapshot: { metadata: { index: 57, term: 4, confState }, data: Buffer.alloc(0) }, entries: [] });
  assert.deepEqual(plain((await (await f.reopen()).load()).entries), plain(range(58, 60, 4)));
  assert.equal((await f.rawKeys(0x04)).length, 0);
  const empty = await (await f.open()).load();
  assert.equal(empty.snapshot?.data.length, 0);
});

test("snapshot data larger than 1 MiB is stored in chunks of at most 1 MiB", async (t) => {
  const f = await fixture(t);
  const data = Buffer.alloc(2.5 * 1024 * 1024, 0x33);
  await f.log.save({ snapshot: { metadata: { index: 3, term: 1, confState: { voters: [1n], learners: [] } }, data }, entries: [] });
  const sizes = await f.raw(async (db) => (await db.values({ gte: Buffer.from([0x04]), lt: Buffer.from([0x05]) }).all()).map((v) => v.length));
  assert.equal(sizes.length, 3);
  for (const size of sizes) assert.ok(size <= 1024 * 1024 + 64, `chunk of ${size} bytes`);
  assert.deepEqual((await (await f.open()).load()).snapshot?.data, data);
});

test("the seed snapshot at index 0 (used by a brand-new node) round-trips", async (t) => {
  const f = await fixture(t);
  await f.log.save({ entries: [], snapshot: { metadata: { index: 0, term: 0, confState: { voters: [5n], learners: [] } }, data: new Uint8Array([1, 2, 3]) } });
  const loaded = await (await f.reopen()).load();
  assert.deepEqual(loaded.snapshot?.metadata, { index: 0, term: 0, confState: { voters: [5n], learners: [] } });
  assert.equal(f.log.firstIndex(), 1);
  await f.log.save({ entries: range(1, 3, 1) });
  assert.deepEqual(plain((await (await f.reopen()).load()).entries), plain(range(1, 3, 1)));
});

test("invalid updates are refused before anything is written", async (t) => {
  const f = await fixture(t);
  await f.log.save({ entries: range(1, 5, 2) });
  const refused = (e: unknown): boolean => isShoalError(e, "RAFT_INVARIANT");
  await assert.rejects(f.log.save({ entries: [entry(7, 2)] }), refused); // gap after 5
  await assert.rejects(f.log.save({ entries: [entry(6, 2), entry(8, 2)] }), refused); // not contiguous
  await assert.rejects(f.log.save({ entries: [entry(6, 3), entry(7, 2)] }), refused); // term goes down
  await assert.rejects(f.log.save({ entries: [entry(6, 2, 300)] }), refused);
  await assert.rejects(f.log.save({ entries: [{ ...entry(6, 2), index: 1.5 }] }), refused);
  await assert.rejects(f.log.save({ entries: [entry(6, 2)], hardState: { term: 2, vote: -1n, commit: 0 } }), refused);
  assert.equal(f.log.lastIndex(), 5);
  assert.deepEqual(plain((await (await f.reopen()).load()).entries), plain(range(1, 5, 2)));
});

test("recovery stops on a planted gap", async (t) => {
  const f = await fixture(t);
  await f.log.save({ entries: range(1, 10, 1) });
  await f.raw((db) => db.del(raftEntryKey(5)));
  await assert.rejects(f.open(), corrupt(/entries 5\.\.5 are missing/));
});

test("recovery stops on a missing first entry after a snapshot", async (t) => {
  const f = await fixture(t);
  await f.log.save({ entries: range(1, 10, 1) });
  await f.log.compact({ metadata: { index: 4, term: 1, confState: { voters: [1n], learners: [] } }, data: Buffer.from("s") });
  await f.raw((db) => db.del(raftEntryKey(5)));
  await assert.rejects(f.open(), corrupt(/entries 5\.\.5 are missing/));
});

test("recovery stops on an entry whose key and index disagree", async (t) => {
  const f = await fixture(t);
  await f.log.save({ entries: range(1, 10, 1) });
  // Sealed correctly for key 6, but the record inside says index 7.
  await f.store.put(raftEntryKey(6), encodeRaftEntry(entry(7, 1)), { sync: true });
  await assert.rejects(f.reopen(), corrupt(/stored under index 6 says it is index 7/));
});

test("recovery stops on a tampered entry, a moved entry and a tampered hard state", async (t) => {
  const f = await fixture(t);
  await f.log.save({ entries: range(1, 10, 1), hardState: { term: 1, vote: 1n, commit: 4 } });
  const flip = async (key: Buffer): Promise<void> =>
    f.raw(async (db) => {
      const v = (await db.get(key))!;
      v[v.length - 3] = v[v.length - 3]! ^ 0x10;
      await db.put(key, v);
    });
  await flip(raftEntryKey(3));
  await assert.rejects(f.open(), corrupt(/010000000000000003/));

  const g = await fixture(t);
  await g.log.save({ entries: range(1, 10, 1) });
  await g.raw(async (db) => db.put(raftEntryKey(8), (await db.get(raftEntryKey(7)))!));
  await assert.rejects(g.open(), corrupt(/failed to open/));

  const h = await fixture(t);
  await h.log.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: 1n, commit: 2 } });
  await h.raw(async (db) => {
    const v = (await db.get(Buffer.from([0x02])))!;
    v[8] = v[8]! ^ 1;
    await db.put(Buffer.from([0x02]), v);
  });
  await assert.rejects(h.open(), corrupt(/failed to open/));
});

test("recovery stops on a missing snapshot chunk and on a commit index beyond the log", async (t) => {
  const f = await fixture(t, { snapshotChunkBytes: 10 });
  await f.log.save({ snapshot: { metadata: { index: 5, term: 1, confState: { voters: [1n], learners: [] } }, data: Buffer.alloc(35, 1) }, entries: [] });
  await f.raw((db) => db.del(Buffer.from([0x04, 0, 0, 0, 1])));
  await assert.rejects(f.open(), corrupt(/snapshot chunk 1 is missing/));

  const g = await fixture(t);
  await g.log.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: 0n, commit: 3 } });
  await g.raw((db) => db.del(raftEntryKey(3)));
  await assert.rejects(g.open(), corrupt(/commit index 3 is beyond the last stored entry 2/));
});

test("a log that finds corruption while running refuses every later call", async (t) => {
  const f = await fixture(t, { tailCacheEntries: 2 });
  await f.log.save({ entries: range(1, 10, 1) });
  // Plant a misplaced record below the tail cache while the log is open.
  await f.store.put(raftEntryKey(2), encodeRaftEntry(entry(3, 1)), { sync: true });
  await assert.rejects(f.log.entries(1, 4), corrupt(/stored under index 2 says it is index 3/));
  await assert.rejects(f.log.save({ entries: [entry(11, 1)] }), (e: unknown) => isShoalError(e, "RAFT_LOG_CORRUPT"));
  await assert.rejects(f.log.entries(9, 11), (e: unknown) => isShoalError(e, "RAFT_LOG_CORRUPT"));
  assert.equal(await f.store.get(raftEntryKey(11)), undefined);
});

test("random appends, truncations, compactions and reopens match a simple model", async (t) => {
  const f = await fixture(t, { tailCacheEntries: 8, snapshotChunkBytes: 64 });
  const rng = new SeededRandom(20261123);
  let model: RaftLogEntry[] = []; // entries after the snapshot
  let snapIndex = 0;
  let term = 1;
  for (let step = 0; step < 250; step++) {
    const roll = rng.float();
    const last = snapIndex + model.length;
    if (roll < 0.6) {
      // Append, sometimes replacing a suffix.
      const from = model.length > 0 && rng.float() < 0.3 ? rng.int(snapIndex + 1, last + 1) : last + 1;
      if (rng.float() < 0.2) term++;
      const count = rng.int(1, 6);
      const batch = range(from, from + count - 1, term);
      await f.log.save({ entries: batch, hardState: { term, vote: 1n, commit: 0 } });
      model = model.filter((e) => e.index < from).concat(batch);
    } else if (roll < 0.75 && model.length > 0) {
      const at = rng.int(snapIndex + 1, last + 1);
      const t = model[at - snapIndex - 1]!.term;
      await f.log.compact({ metadata: { index: at, term: t, confState: { voters: [1n], learners: [] } }, data: Buffer.alloc(rng.int(0, 200), at & 0xff) });
      model = model.filter((e) => e.index > at);
      snapIndex = at;
    } else if (roll < 0.85) {
      const loaded = await (await f.reopen()).load();
      assert.deepEqual(plain(loaded.entries), plain(model), `step ${step}`);
      if (snapIndex > 0) assert.equal(loaded.snapshot?.metadata.index, snapIndex);
    } else if (model.length > 0) {
      const lo = rng.int(snapIndex + 1, last + 1);
      const hi = rng.int(lo, last + 2);
      assert.deepEqual(plain(await f.log.entries(lo, hi)), plain(model.slice(lo - snapIndex - 1, hi - snapIndex - 1)), `step ${step}`);
    }
    assert.equal(f.log.firstIndex(), snapIndex + 1);
    assert.equal(f.log.lastIndex(), snapIndex + model.length);
  }
});
