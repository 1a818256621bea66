// A store whose LevelDB files were damaged after a clean stop is refused at open with STORE_CORRUPT
// naming the file, whether the damage is in the middle of the write-ahead log, in a table or in the
// MANIFEST; without the check LevelDB (no paranoid_checks) silently drops the write-ahead log's
// records after the damage and opens. A torn tail of the newest log (an append cut short, a last
// record whose final sectors read as zeros, or garbage after the last synced record) still opens
// with every synced write; a whole last record with an altered byte does not.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, readdirSync, readFileSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DataKey } from "../../src/crypto/index.js";
import { EncryptedStore, RaftLogStorage, type RaftLogEntry } from "../../src/storage/index.js";
import { ShoalError, isShoalError } from "../../src/base/errors.js";
import { tempDir } from "./temp-dir.js";
import { LOG_BLOCK_BYTES, physicalRecords } from "./leveldb-records.js";

const SAVES = 60;
const ENTRIES_PER_SAVE = 4;

function entriesOf(save: number): RaftLogEntry[] {
  return Array.from({ length: ENTRIES_PER_SAVE }, (_, i) => {
    const index = save * ENTRIES_PER_SAVE + i + 1;
    return { index, term: 1, type: 0, data: Buffer.alloc(300, index & 0xff) };
  });
}

/** Writes SAVES synced saves (one LevelDB log record each) and closes the store. */
async function writeStore(dir: string, key: DataKey, opts: { flushToTable?: boolean } = {}): Promise<void> {
  let store = await EncryptedStore.open(dir, { current: key });
  const log = await RaftLogStorage.open(store);
  for (let save = 0; save < SAVES; save++) {
    const entries = entriesOf(save);
    await log.save({ entries, hardState: { term: 1, vote: 1n, commit: entries[entries.length - 1]!.index } });
  }
  await store.close();
  if (opts.flushToTable === true) {
    // Reopening replays the log into a level-0 table and starts an empty log.
    store = await EncryptedStore.open(dir, { current: key });
    await store.close();
  }
}

async function lastIndexAfterOpen(dir: string, key: DataKey): Promise<{ last: number; store: EncryptedStore }> {
  const store = await EncryptedStore.open(dir, { current: key });
  const log = await RaftLogStorage.open(store);
  const loaded = await log.load();
  loaded.entries.forEach((e, i) => assert.deepEqual(Buffer.from(e.data), Buffer.alloc(300, (i + 1) & 0xff)));
  return { last: log.lastIndex(), store };
}

function filesEndingIn(dir: string, suffix: string | RegExp): string[] {
  return readdirSync(dir)
    .filter((n) => (typeof suffix === "string" ? n.endsWith(suffix) : suffix.test(n)))
    .map((n) => join(dir, n));
}

function onlyFile(dir: string, suffix: string | RegExp): string {
  const files = filesEndingIn(dir, suffix).filter((f) => statSync(f).size > 0);
  assert.equal(files.length, 1, `expected one non-empty ${String(suffix)} file, found ${files.join(", ")}`);
  return files[0]!;
}


function flipByte(file: string, offset: number): void {
  const bytes = readFileSync(file);
  bytes[offset] ^= 0x5a;
  writeFileSync(file, bytes);
}

async function refusedNaming(t: TestContext, dir: string, key: DataKey, file: string): Promise<ShoalError> {
  const err = await EncryptedStore.open(dir, { current: key }).then(
    async (store) => {
      await store.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  assert.ok(isShoalError(err, "STORE_CORRUPT"), `expected STORE_CORRUPT, got ${String(err)}`);
  assert.ok(err.message.includes(file), `the message names ${file}: ${err.message}`);
  assert.match(err.message, /restore .* from a backup/i);
  assert.match(err.message, /join it again with a manager token/);
  assert.doesNotMatch(err.message, /another (shoal )?process|bug in shoal/);
  t.diagnostic(err.message);
  return err;
}

test("a flipped byte in the middle of the write-ahead log is refused at open, naming the log", async (t) => {
  const dir = tempDir(t, "corrupt-wal");
  const key = DataKey.generate();
  t.after(() => key.dispose());
  await writeStore(dir, key);
  const wal = onlyFile(dir, ".log");
  const bytes = readFileSync(wal);
  assert.ok(bytes.length > 2 * LOG_BLOCK_BYTES, `the log holds the writes (${bytes.length} bytes)`);
  const records = physicalRecords(bytes);
  const victim = records[Math.floor(records.length / 2)]!;
  flipByte(wal, victim.data + Math.floor((victim.end - victim.data) / 2));
  const err = await refusedNaming(t, dir, key, wal);
  assert.match(err.message, /checksum mismatch/);
});

test("a flipped byte in the last block of the log, with records after it, is refused", async (t) => {
  const dir = tempDir(t, "corrupt-wal-last-block");
  const key = DataKey.generate();
  t.after(() => key.dispose());
  await writeStore(dir, key);
  const wal = onlyFile(dir, ".log");
  const records = physicalRecords(readFileSync(wal));
  // Second-to-last record: no later block start holds a record, only the byte scan finds the last one.
  const victim = records[records.length - 2]!;
  assert.equal(Math.floor(victim.at / LOG_BLOCK_BYTES), Math.floor(records[records.length - 1]!.at / LOG_BLOCK_BYTES));
  flipByte(wal, victim.at + 5); // the length field: the record can no longer be skipped by its length
  await refusedNaming(t, dir, key, wal);
});

test("a flipped byte inside the log's very last record is refused: a whole record was altered, not cut short", async (t) => {
  const dir = tempDir(t, "corrupt-wal-last-record");
  const key = DataKey.generate();
  t.after(() => key.dispose());
  await writeStore(dir, key);
  const wal = onlyFile(dir, ".log");
  const bytes = readFileSync(wal);
  const last = physicalRecords(bytes).at(-1)!;
  assert.equal(last.end, bytes.length);
  flipByte(wal, last.data + Math.floor((last.end - last.data) / 2));
  const err = await refusedNaming(t, dir, key, wal);
  assert.match(err.message, /written and then altered/);
});

test("a flipped byte in a table file is refused at open, naming the table", async (t) => {
  for (const where of ["middle", "last byte"] as const) {
    const dir = tempDir(t, "corrupt-ldb");
    const key = DataKey.generate();
    t.after(() => key.dispose());
    await writeStore(dir, key, { flushToTable: true });
    const table = onlyFile(dir, ".ldb");
    const size = statSync(table).size;
    flipByte(table, where === "middle" ? Math.floor(size / 2) : size - 1);
    const err = await refusedNaming(t, dir, key, table);
    assert.match(err.message, where === "middle" ? /checksum mismatch in the data block/ : /magic number/);
  }
});

test("a flipped byte in the MANIFEST is refused at open, naming the MANIFEST", async (t) => {
  const dir = tempDir(t, "corrupt-manifest");
  const key = DataKey.generate();
  t.after(() => key.dispose());
  await writeStore(dir, key, { flushToTable: true });
  const manifest = onlyFile(dir, /^MANIFEST-\d+$/);
  const records = physicalRecords(readFileSync(manifest));
  const victim = records[0]!;
  flipByte(manifest, victim.data + Math.floor((victim.end - victim.data) / 2));
  await refusedNaming(t, dir, key, manifest);
});

test("a missing table or a missing CURRENT is refused instead of opening an emptier store", async (t) => {
  const dir = tempDir(t, "missing-files");
  const key = DataKey.generate();
  t.after(() => key.dispose());
  await writeStore(dir, key, { flushToTable: true });
  const current = join(dir, "CURRENT");
  const saved = readFileSync(current);
  unlinkSync(current);
  await refusedNaming(t, dir, key, current);
  writeFileSync(current, saved);
  const table = onlyFile(dir, ".ldb");
  truncateSync(table, statSync(table).size - 100);
  await refusedNaming(t, dir, key, table);
});

test("a torn tail of the newest log still opens with every synced save", async (t) => {
  for (const tail of ["cut last record", "last record's sectors zeroed", "garbage appended", "zeros appended"] as const) {
    await t.test(tail, async (t) => {
      const dir = tempDir(t, "torn-tail");
      const key = DataKey.generate();
      t.after(() => key.dispose());
      await writeStore(dir, key);
      const wal = onlyFile(dir, ".log");
      const bytes = readFileSync(wal);
      const records = physicalRecords(bytes);
      const lastRecord = records[records.length - 1]!;
      assert.equal(lastRecord.end, bytes.length);
      let synced = SAVES;
      if (tail === "cut last record") {
        // The last save's append cut short by a crash: it was never acknowledged.
        truncateSync(wal, lastRecord.end - 100);
        synced = SAVES - 1;
      } else if (tail === "last record's sectors zeroed") {
        // The file's size reached the disk but the record's last sectors did not (they read as zeros).
        const sector = lastRecord.data - (lastRecord.data % 512) + 512;
        assert.ok(sector < lastRecord.end);
        bytes.fill(0, sector, lastRecord.end);
        writeFileSync(wal, bytes);
        synced = SAVES - 1;
      } else if (tail === "garbage appended") {
        // Its first 7 bytes are no plausible record header, as garbage's almost never are; a whole
        // record of a valid type with a wrong checksum and no zeroed sector counts as altered data.
        appendFileSync(wal, Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 131 + 7) & 0xff)));
      } else {
        appendFileSync(wal, Buffer.alloc(4096));
      }
      const { last, store } = await lastIndexAfterOpen(dir, key);
      t.after(() => store.close());
      assert.equal(last, synced * ENTRIES_PER_SAVE);
      assert.ok(store.openCheck.tornTail !== undefined, "the torn tail is reported");
      assert.equal(store.openCheck.tornTail.file, wal);
    });
  }
});

test("an intact store opens with nothing to report, and reopens after LevelDB rewrote its files", async (t) => {
  const dir = tempDir(t, "intact");
  const key = DataKey.generate();
  t.after(() => key.dispose());
  await writeStore(dir, key, { flushToTable: true });
  for (let round = 0; round < 2; round++) {
    const { last, store } = await lastIndexAfterOpen(dir, key);
    assert.equal(last, SAVES * ENTRIES_PER_SAVE);
    assert.equal(store.openCheck.tornTail, undefined);
    assert.ok(store.openCheck.files >= 3, `checked ${store.openCheck.files} files`);
    await store.close();
  }
});

test("a second open of a store in use says another process holds it; only then", async (t) => {
  const dir = tempDir(t, "locked");
  const key = DataKey.generate();
  t.after(() => key.dispose());
  const store = await EncryptedStore.open(dir, { current: key });
  t.after(() => store.close());
  await assert.rejects(EncryptedStore.open(dir, { current: key }), (err: unknown) => {
    assert.ok(isShoalError(err, "UNAVAILABLE"), String(err));
    assert.match(err.message, /another process holds its lock/);
    return true;
  });
});
