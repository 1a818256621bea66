// Reads LevelDB's log format (the write-ahead `NNNNNN.log` files and the MANIFEST): 32 KiB blocks
// of physical records, each [masked CRC-32C 4][length 2][type 1][data], CRC over type + data;
// FULL, or FIRST MIDDLE* LAST fragments make one logical record; fewer than 7 bytes left in a block
// are zero padding. Unlike LevelDB's reader (without paranoid_checks), a damaged record is not
// skipped: the scan stops there and says whether any valid record follows it, which is what tells a
// torn tail (nothing after it: an append cut short by a crash) from damage to synced data.
import { crc32c, maskCrc } from "./crc32c.js";

export const LOG_BLOCK_BYTES = 32 * 1024;
export const LOG_HEADER_BYTES = 7;

const FULL = 1;
const FIRST = 2;
const MIDDLE = 3;
const LAST = 4;

export interface LogDamage {
  /** File offset of the first physical record that does not read back. */
  offset: number;
  reason: string;
  /** The damaged record runs past the end of the file (a cut-short append). */
  pastEnd: boolean;
  /** Offset of a valid physical record after the damage, if there is one. */
  validRecordAfter: number | undefined;
  /**
   * The damage can be an append cut short by a crash: nothing valid follows it, and it is not a
   * whole record whose bytes were altered. A crash leaves an unsynced record cut off by the end of
   * the file, or, where the file's size reached the disk before its data, with a sector that reads
   * as zeros (etcd's WAL uses the same test); a complete record of the right type with no zeroed
   * sector and a wrong checksum was written and then changed.
   */
  tornAppend: boolean;
}

export interface LogScan {
  /** The logical records before the damage (only if asked for). */
  records: Buffer[];
  /** The offset just past the last good record. */
  goodBytes: number;
  damage: LogDamage | undefined;
}

type Physical =
  | { ok: true; type: number; start: number; end: number }
  /** `end` is set when the record is whole (header, type and length in bounds) but its checksum fails. */
  | { ok: false; reason: string; pastEnd: boolean; end?: number };

const SECTOR_BYTES = 512;

function blockEnd(offset: number): number {
  return offset - (offset % LOG_BLOCK_BYTES) + LOG_BLOCK_BYTES;
}

function physicalAt(bytes: Uint8Array, offset: number): Physical {
  if (offset + LOG_HEADER_BYTES > bytes.length) return { ok: false, reason: "the record header is cut short by the end of the file", pastEnd: true };
  const length = bytes[offset + 4]! | (bytes[offset + 5]! << 8);
  const type = bytes[offset + 6]!;
  const end = offset + LOG_HEADER_BYTES + length;
  if (end > blockEnd(offset)) return { ok: false, reason: `the record length ${length} runs past its 32 KiB block`, pastEnd: end > bytes.length };
  if (end > bytes.length) return { ok: false, reason: "the record is cut short by the end of the file", pastEnd: true };
  if (type < FULL || type > LAST) return { ok: false, reason: `the record type ${type} is not a log record type`, pastEnd: false };
  const stored = (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
  if (maskCrc(crc32c(bytes, offset + 6, end)) !== stored) return { ok: false, reason: "checksum mismatch", pastEnd: false, end };
  return { ok: true, type, start: offset + LOG_HEADER_BYTES, end };
}

/** Some piece of [start, end) cut at disk-sector boundaries of the file is all zeros. */
function hasZeroedSector(bytes: Uint8Array, start: number, end: number): boolean {
  for (let piece = start; piece < end; ) {
    const pieceEnd = Math.min(end, piece - (piece % SECTOR_BYTES) + SECTOR_BYTES);
    let zero = true;
    for (let i = piece; i < pieceEnd && zero; i++) zero = bytes[i] === 0;
    if (zero) return true;
    piece = pieceEnd;
  }
  return false;
}

/** Where the next record may start: block trailers (under 7 bytes) are padding. */
function recordStart(offset: number): number {
  return blockEnd(offset) - offset < LOG_HEADER_BYTES ? blockEnd(offset) : offset;
}

/**
 * The first valid physical record after `from`: every later block start first (a block always
 * begins with a record), then every byte position in the damaged region. A random position passes
 * the 32-bit CRC with probability 2^-32, so a hit means real records follow.
 */
export function findValidRecordAfter(bytes: Uint8Array, from: number): number | undefined {
  for (let block = blockEnd(from); block + LOG_HEADER_BYTES <= bytes.length; block += LOG_BLOCK_BYTES) {
    if (physicalAt(bytes, block).ok) return block;
  }
  for (let p = from + 1; p + LOG_HEADER_BYTES <= bytes.length; p++) {
    const type = bytes[p + 6]!;
    if (type < FULL || type > LAST) continue;
    if (blockEnd(p) - p < LOG_HEADER_BYTES) continue;
    if (physicalAt(bytes, p).ok) return p;
  }
  return undefined;
}

/** Scans a whole log file; `keepRecords` collects the logical records (the MANIFEST's edits). */
export function scanLog(bytes: Uint8Array, keepRecords: boolean): LogScan {
  const records: Buffer[] = [];
  let fragments: Uint8Array[] | undefined;
  let fragmentStart = 0;
  let offset = 0;
  let goodBytes = 0;
  const damaged = (at: number, reason: string, pastEnd: boolean, searchFrom = at, wholeRecordEnd?: number): LogScan => {
    const validRecordAfter = findValidRecordAfter(bytes, searchFrom);
    const altered = wholeRecordEnd !== undefined && !hasZeroedSector(bytes, at, wholeRecordEnd);
    return { records, goodBytes, damage: { offset: at, reason, pastEnd, validRecordAfter, tornAppend: validRecordAfter === undefined && !altered } };
  };
  for (;;) {
    offset = recordStart(offset);
    if (offset >= bytes.length) break;
    const record = physicalAt(bytes, offset);
    if (!record.ok) return damaged(offset, record.reason, record.pastEnd, offset, record.end);
    const data = bytes.subarray(record.start, record.end);
    if (record.type === FULL || record.type === FIRST) {
      if (fragments !== undefined) return damaged(fragmentStart, "a fragmented record has no last fragment", false, offset - 1);
      if (record.type === FULL) {
        if (keepRecords) records.push(Buffer.from(data));
        goodBytes = record.end;
      } else {
        fragments = [data];
        fragmentStart = offset;
      }
    } else {
      if (fragments === undefined) return damaged(offset, "a record fragment has no first fragment", false);
      fragments.push(data);
      if (record.type === LAST) {
        if (keepRecords) records.push(Buffer.concat(fragments));
        fragments = undefined;
        goodBytes = record.end;
      }
    }
    offset = record.end;
  }
  // A FIRST with no LAST before the end of the file is an append cut short.
  // Every physical record after it read back, so nothing valid follows the damage.
  if (fragments !== undefined) {
    return { records, goodBytes, damage: { offset: fragmentStart, reason: "the last record's fragments are cut short by the end of the file", pastEnd: true, validRecordAfter: undefined, tornAppend: true } };
  }
  return { records, goodBytes, damage: undefined };
}
