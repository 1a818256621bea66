// Verifies a LevelDB table file (`NNNNNN.ldb`) end to end: the footer's magic number, and the
// CRC-32C of every block the index and meta-index name (data, filter, index). LevelDB itself
// checks block CRCs only when paranoid_checks or verify_checksums is set, which classic-level
// leaves off, so a flipped bit in a table would otherwise surface (if ever) as a wrong value or a
// confusing error long after open.
import { crc32c, maskCrc } from "./crc32c.js";
import { snappyUncompress } from "./snappy.js";

const FOOTER_BYTES = 48;
const BLOCK_TRAILER_BYTES = 5;
const MAGIC = Buffer.from([0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]);
const NO_COMPRESSION = 0;
const SNAPPY = 1;
/** LevelDB blocks are ~4 KiB; an index of a 2 MiB table is far smaller. Bounds a bogus length. */
const MAX_INFLATED_BLOCK_BYTES = 64 * 1024 * 1024;

interface BlockHandle {
  offset: number;
  size: number;
}

class TableDamage extends Error {}

function varint(bytes: Uint8Array, pos: { at: number }, limit: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos.at >= limit) throw new TableDamage("a block handle runs past its block");
    const byte = bytes[pos.at++]!;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) {
      if (!Number.isSafeInteger(value)) throw new TableDamage("a block handle is out of range");
      return value;
    }
    scale *= 128;
  }
  throw new TableDamage("a block handle is malformed");
}

function readHandle(bytes: Uint8Array, pos: { at: number }, limit: number): BlockHandle {
  return { offset: varint(bytes, pos, limit), size: varint(bytes, pos, limit) };
}

/** The block's contents after checking its CRC (inflated only if `inflate`). */
function readBlock(table: Uint8Array, handle: BlockHandle, what: string, inflate: boolean): Uint8Array | undefined {
  const end = handle.offset + handle.size;
  if (end + BLOCK_TRAILER_BYTES > table.length - FOOTER_BYTES) throw new TableDamage(`the ${what} block at offset ${handle.offset} runs past the end of the table`);
  const stored = (table[end + 1]! | (table[end + 2]! << 8) | (table[end + 3]! << 16) | (table[end + 4]! << 24)) >>> 0;
  if (maskCrc(crc32c(table, handle.offset, end + 1)) !== stored) throw new TableDamage(`checksum mismatch in the ${what} block at offset ${handle.offset}`);
  if (!inflate) return undefined;
  const contents = table.subarray(handle.offset, end);
  const type = table[end]!;
  if (type === NO_COMPRESSION) return contents;
  if (type === SNAPPY) {
    const inflated = snappyUncompress(contents, MAX_INFLATED_BLOCK_BYTES);
    if (inflated === undefined) throw new TableDamage(`the ${what} block at offset ${handle.offset} does not decompress`);
    return inflated;
  }
  throw new TableDamage(`the ${what} block at offset ${handle.offset} has unknown compression type ${type}`);
}

/** The values of a block's entries (an index block's values are the handles of its data blocks). */
function blockValues(block: Uint8Array, what: string): BlockHandle[] {
  if (block.length < 4) throw new TableDamage(`the ${what} block is too short`);
  const restarts = (block[block.length - 4]! | (block[block.length - 3]! << 8) | (block[block.length - 2]! << 16) | (block[block.length - 1]! << 24)) >>> 0;
  const limit = block.length - 4 - 4 * restarts;
  if (limit < 0) throw new TableDamage(`the ${what} block's restart count is out of range`);
  const handles: BlockHandle[] = [];
  const pos = { at: 0 };
  while (pos.at < limit) {
    varint(block, pos, limit); // shared key bytes
    const keyBytes = varint(block, pos, limit);
    const valueBytes = varint(block, pos, limit);
    pos.at += keyBytes;
    const valueEnd = pos.at + valueBytes;
    if (valueEnd > limit) throw new TableDamage(`an entry of the ${what} block runs past the block`);
    handles.push(readHandle(block, pos, valueEnd));
    pos.at = valueEnd;
  }
  return handles;
}

/** Undefined if the table reads back whole, else what is wrong with it. */
export function tableDamage(table: Uint8Array): string | undefined {
  try {
    if (table.length < FOOTER_BYTES) throw new TableDamage(`the file is ${table.length} bytes, shorter than a table footer`);
    const footer = table.length - FOOTER_BYTES;
    if (!MAGIC.equals(table.subarray(table.length - MAGIC.length))) throw new TableDamage("the footer's magic number is wrong");
    const pos = { at: footer };
    const metaIndex = readHandle(table, pos, table.length - MAGIC.length);
    const index = readHandle(table, pos, table.length - MAGIC.length);
    for (const handle of blockValues(readBlock(table, index, "index", true)!, "index")) readBlock(table, handle, "data", false);
    for (const handle of blockValues(readBlock(table, metaIndex, "meta-index", true)!, "meta-index")) readBlock(table, handle, "filter", false);
    return undefined;
  } catch (err) {
    if (err instanceof TableDamage) return err.message;
    throw err;
  }
}
