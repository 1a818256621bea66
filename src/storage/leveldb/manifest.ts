// Decodes a LevelDB MANIFEST's version edits (db/version_edit.cc's tags) into the live version:
// which table files exist at which size, and which write-ahead logs LevelDB will replay. The
// open-time check needs exactly this to know which files must be intact: an unlisted table is an
// orphan of a crashed compaction that LevelDB deletes, not data.

const TAG_COMPARATOR = 1;
const TAG_LOG_NUMBER = 2;
const TAG_NEXT_FILE_NUMBER = 3;
const TAG_LAST_SEQUENCE = 4;
const TAG_COMPACT_POINTER = 5;
const TAG_DELETED_FILE = 6;
const TAG_NEW_FILE = 7;
const TAG_PREV_LOG_NUMBER = 9;
const LEVELS = 7;

export interface LiveVersion {
  /** Table file number → its size in bytes as LevelDB recorded it. */
  tables: Map<number, number>;
  /** Logs numbered at or above this (or equal to prevLogNumber) hold writes not yet in a table. */
  logNumber: number;
  prevLogNumber: number;
}

class EditReader {
  pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.bytes[this.pos++];
      if (byte === undefined) throw new Error("a number runs past the end of the edit");
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        if (!Number.isSafeInteger(value)) throw new Error("a number is too large");
        return value;
      }
      scale *= 128;
    }
    throw new Error("a number is more than 10 bytes long");
  }

  level(): number {
    const level = this.varint();
    if (level >= LEVELS) throw new Error(`level ${level} is out of range`);
    return level;
  }

  skipSlice(): void {
    const length = this.varint();
    if (this.pos + length > this.bytes.length) throw new Error("a string runs past the end of the edit");
    this.pos += length;
  }
}

/** Applies the MANIFEST's edits in order; throws an Error saying what is malformed. */
export function liveVersion(edits: readonly Uint8Array[]): LiveVersion {
  const tables = new Map<number, number>();
  let logNumber: number | undefined;
  let prevLogNumber = 0;
  let sawNextFile = false;
  let sawLastSequence = false;
  edits.forEach((edit, i) => {
    const r = new EditReader(edit);
    try {
      while (!r.done) {
        const tag = r.varint();
        switch (tag) {
          case TAG_COMPARATOR:
            r.skipSlice();
            break;
          case TAG_LOG_NUMBER:
            logNumber = r.varint();
            break;
          case TAG_NEXT_FILE_NUMBER:
            r.varint();
            sawNextFile = true;
            break;
          case TAG_LAST_SEQUENCE:
            r.varint();
            sawLastSequence = true;
            break;
          case TAG_COMPACT_POINTER:
            r.level();
            r.skipSlice();
            break;
          case TAG_DELETED_FILE:
            r.level();
            tables.delete(r.varint());
            break;
          case TAG_NEW_FILE: {
            r.level();
            const number = r.varint();
            tables.set(number, r.varint());
            r.skipSlice();
            r.skipSlice();
            break;
          }
          case TAG_PREV_LOG_NUMBER:
            prevLogNumber = r.varint();
            break;
          default:
            throw new Error(`unknown tag ${tag}`);
        }
      }
    } catch (err) {
      throw new Error(`version edit ${i + 1} is malformed (${(err as Error).message})`);
    }
  });
  if (logNumber === undefined || !sawNextFile || !sawLastSequence) throw new Error("it lacks the log number, next file number or last sequence");
  return { tables, logNumber, prevLogNumber };
}
