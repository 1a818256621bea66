// The pieces of the open-time check against known answers: CRC-32C test vectors (RFC 3720 B.4, as
// in LevelDB's crc32c_test), raw snappy with an overlapping copy and malformed streams, LevelDB
// tables whose blocks are snappy-compressed, and logical records fragmented across 32 KiB blocks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ClassicLevel } from "classic-level";
import { crc32c, maskCrc } from "../../src/storage/leveldb/crc32c.js";
import { snappyUncompress } from "../../src/storage/leveldb/snappy.js";
import { tableDamage } from "../../src/storage/leveldb/table-check.js";
import { scanLog, LOG_BLOCK_BYTES } from "../../src/storage/leveldb/log-format.js";
import { tempDir } from "./temp-dir.js";

test("crc32c matches the RFC 3720 vectors and continues across calls", () => {
  assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
  assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
  assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c);
  const text = Buffer.from("hello world, in two pieces of uneven length");
  assert.equal(crc32c(text, 13, text.length, crc32c(text, 0, 13)), crc32c(text));
  assert.notEqual(maskCrc(0x8a9136aa), 0x8a9136aa);
});

test("snappy: literals, an overlapping copy, and malformed streams refused", () => {
  // 12 bytes out: literal "abcd" (tag 3<<2), then copy-1 of length 8 at offset 4 ((8-4)<<2 | 1).
  const stream = Buffer.from([12, 3 << 2, 0x61, 0x62, 0x63, 0x64, ((8 - 4) << 2) | 1, 4]);
  assert.equal(snappyUncompress(stream, 1024)?.toString(), "abcdabcdabcd");
  assert.equal(snappyUncompress(Buffer.from([12, 3 << 2, 0x61, 0x62, 0x63, 0x64, ((8 - 4) << 2) | 1, 0]), 1024), undefined, "offset 0");
  assert.equal(snappyUncompress(Buffer.from([12, 3 << 2, 0x61, 0x62, 0x63, 0x64, ((8 - 4) << 2) | 1, 9]), 1024), undefined, "before the start");
  assert.equal(snappyUncompress(stream.subarray(0, 5), 1024), undefined, "cut short");
  assert.equal(snappyUncompress(stream, 8), undefined, "larger than allowed");
});

function readVarint(bytes: Buffer, at: number): [number, number] {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const b = bytes[at++]!;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [value, at];
  }
}

test("tables with snappy-compressed blocks pass; a flipped byte in the index block is found", async (t) => {
  const dir = tempDir(t, "snappy-table");
  const db = new ClassicLevel<string, string>(dir);
  await db.open();
  const batch = db.batch();
  for (let i = 0; i < 20_000; i++) batch.put(`key-${String(i).padStart(8, "0")}`, `a compressible value, number ${i}`);
  await batch.write();
  await db.close();
  await db.open(); // replays the log into a table
  await db.close();
  const tables = readdirSync(dir).filter((n) => n.endsWith(".ldb"));
  assert.ok(tables.length >= 1);
  const table = readFileSync(join(dir, tables[0]!));
  assert.equal(tableDamage(table), undefined);
  const footer = table.length - 48;
  const [, afterMetaOffset] = readVarint(table, footer);
  const [, afterMetaSize] = readVarint(table, afterMetaOffset);
  const [indexOffset, afterIndexOffset] = readVarint(table, afterMetaSize);
  const [indexSize] = readVarint(table, afterIndexOffset);
  assert.equal(table[indexOffset + indexSize], 1, "the index block is snappy-compressed, so the check inflated it");
  table[indexOffset + Math.floor(indexSize / 2)] ^= 0x10;
  assert.match(tableDamage(table) ?? "", /checksum mismatch in the index block/);
});

/** A LevelDB log holding `records`, fragmented at block boundaries as log_writer.cc does. */
function buildLog(records: Buffer[]): Buffer {
  const out: Buffer[] = [];
  let offset = 0;
  for (const record of records) {
    let left = record;
    let first = true;
    do {
      const room = LOG_BLOCK_BYTES - (offset % LOG_BLOCK_BYTES);
      if (room < 7) {
        out.push(Buffer.alloc(room));
        offset += room;
        continue;
      }
      const length = Math.min(left.length, room - 7);
      const last = length === left.length;
      const type = first && last ? 1 : first ? 2 : last ? 4 : 3;
      const header = Buffer.alloc(7);
      const typed = Buffer.concat([Buffer.from([type]), left.subarray(0, length)]);
      header.writeUInt32LE(maskCrc(crc32c(typed)), 0);
      header.writeUInt16LE(length, 4);
      header[6] = type;
      out.push(header, left.subarray(0, length));
      offset += 7 + length;
      left = left.subarray(length);
      first = false;
    } while (left.length > 0);
  }
  return Buffer.concat(out);
}

test("log records fragmented across blocks reassemble; a cut inside the last one is a torn tail, a flip before it is not", () => {
  const records = [Buffer.alloc(100, 1), Buffer.alloc(3 * LOG_BLOCK_BYTES, 2), Buffer.alloc(50, 3), Buffer.alloc(LOG_BLOCK_BYTES, 4)];
  const log = buildLog(records);
  const whole = scanLog(log, true);
  assert.equal(whole.damage, undefined);
  assert.deepEqual(whole.records, records);

  const cut = scanLog(log.subarray(0, log.length - 1000), true);
  assert.equal(cut.records.length, 3);
  assert.equal(cut.damage?.pastEnd, true);
  assert.equal(cut.damage?.validRecordAfter, undefined);
  assert.equal(cut.damage?.tornAppend, true);

  const flipped = Buffer.from(log);
  flipped[LOG_BLOCK_BYTES + 10] ^= 1; // inside the middle fragments of the big record
  const damaged = scanLog(flipped, false).damage;
  assert.ok(damaged !== undefined && damaged.validRecordAfter !== undefined, "valid records follow the damage");
  assert.equal(damaged.tornAppend, false);
});
