// A streaming reader of tar archives as image layers carry them: ustar headers, PAX extended
// headers (path, linkpath, size, uid, gid, mtime) and GNU long names, with header checksums
// checked. It yields one entry at a time; the caller reads (or skips) its body before the next.
import { ShoalError } from "../base/errors.js";

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarEntry {
  /** As written in the archive (not normalised; the unpacker decides what is allowed). */
  path: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  size: number;
  linkTarget: string;
  devMajor: number;
  devMinor: number;
}

export interface TarItem {
  entry: TarEntry;
  /** The entry's bytes; iterate at most once, before asking for the next entry. */
  body: AsyncIterable<Buffer>;
}

const BLOCK = 512;
/** Bounds on what an archive may make us hold in memory. */
const MAX_META_BYTES = 1024 * 1024;

function corrupt(what: string, why: string): ShoalError {
  return new ShoalError("INVALID_ARGUMENT", `${what} is not a valid tar archive: ${why}`);
}

/** Pulls exact byte counts out of a chunked stream. */
class ByteSource {
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;
  private readonly iterator: AsyncIterator<Buffer>;

  constructor(source: AsyncIterable<Buffer>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buffer.length < n && !this.ended) {
      const next = await this.iterator.next();
      if (next.done === true) this.ended = true;
      else this.buffer = this.buffer.length === 0 ? next.value : Buffer.concat([this.buffer, next.value]);
    }
    return this.buffer.length >= n;
  }

  /** Exactly `n` bytes, or undefined at a clean end of stream before any of them. */
  async take(n: number, what: string): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.buffer.length === 0) return undefined;
      throw corrupt(what, "it ends in the middle of a block");
    }
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** `n` bytes as chunks, without holding them all. */
  async *chunks(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buffer.length === 0 && !(await this.fill(1))) throw corrupt(what, "it ends inside an entry's data");
      const piece = this.buffer.subarray(0, Math.min(left, this.buffer.length));
      this.buffer = this.buffer.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  }

  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.chunks(n, what)) {
      // dropped
    }
  }

  /** Skips up to `n` bytes; false when the stream ended first. */
  async skipPadding(n: number): Promise<boolean> {
    const ok = await this.fill(n);
    this.buffer = this.buffer.subarray(Math.min(n, this.buffer.length));
    return ok;
  }

  /** Drains what follows the end-of-archive marker (compressors may pad). */
  async drain(): Promise<void> {
    while (!this.ended) {
      const next = await this.iterator.next();
      if (next.done === true) this.ended = true;
    }
    this.buffer = Buffer.alloc(0);
  }
}

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const nul = field.indexOf(0);
  return (nul < 0 ? field : field.subarray(0, nul)).toString("utf8");
}

/** An octal field, or a base-256 one (high bit set) as GNU tar writes large values. */
function numeric(block: Buffer, start: number, length: number, what: string, field: string): number {
  const bytes = block.subarray(start, start + length);
  if ((bytes[0]! & 0x80) !== 0) {
    let value = bytes[0]! & 0x7f;
    for (let i = 1; i < bytes.length; i++) {
      value = value * 256 + bytes[i]!;
      if (!Number.isSafeInteger(value)) throw corrupt(what, `the ${field} field is too large`);
    }
    return value;
  }
  const text = bytes.toString("latin1").replace(/\0.*$/s, "").trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw corrupt(what, `the ${field} field '${text.slice(0, 20)}' is not octal`);
  return parseInt(text, 8);
}

function checksumOk(block: Buffer, what: string): boolean {
  const stored = numeric(block, 148, 8, what, "checksum");
  let unsigned = 0;
  for (let i = 0; i < BLOCK; i++) unsigned += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return stored === unsigned;
}

/** PAX records `LEN key=value\n`. */
function parsePax(data: Buffer, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) throw corrupt(what, "a PAX record has no length");
    const len = Number(data.subarray(pos, space).toString("latin1"));
    if (!Number.isSafeInteger(len) || len <= space - pos || pos + len > data.length) throw corrupt(what, "a PAX record's length is wrong");
    const record = data.subarray(space + 1, pos + len - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq < 0) throw corrupt(what, "a PAX record has no '='");
    out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

const TYPES: Record<string, TarEntryType> = { "0": "file", "\0": "file", "7": "file", "1": "hardlink", "2": "symlink", "3": "char", "4": "block", "5": "dir", "6": "fifo" };

function paddedSize(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** Yields the entries of a (decompressed) tar stream. `what` names the archive in errors. */
export async function* readTar(source: AsyncIterable<Buffer>, what: string): AsyncGenerator<TarItem> {
  const bytes = new ByteSource(source);
  let pax: Record<string, string> = {};
  let globalPax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const block = await bytes.take(BLOCK, what);
    if (block === undefined) return; // some writers omit the end-of-archive blocks
    if (block.every((b) => b === 0)) {
      await bytes.drain();
      return;
    }
    if (!checksumOk(block, what)) throw corrupt(what, "a header's checksum is wrong");
    const typeflag = String.fromCharCode(block[156]!);
    const size = numeric(block, 124, 12, what, "size");
    if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
      if (size > MAX_META_BYTES) throw corrupt(what, `an extended header of ${size} bytes is larger than ${MAX_META_BYTES}`);
      const data = (await bytes.take(paddedSize(size), what)) ?? Buffer.alloc(0);
      if (data.length < size) throw corrupt(what, "it ends inside an extended header");
      const content = data.subarray(0, size);
      if (typeflag === "x") pax = { ...pax, ...parsePax(content, what) };
      else if (typeflag === "g") globalPax = { ...globalPax, ...parsePax(content, what) };
      else if (typeflag === "L") longName = cString(content, 0, content.length);
      else longLink = cString(content, 0, content.length);
      continue;
    }
    const type = TYPES[typeflag];
    const merged = { ...globalPax, ...pax };
    const ustar = block.subarray(257, 262).toString("latin1") === "ustar";
    const prefix = ustar ? cString(block, 345, 155) : "";
    const name = cString(block, 0, 100);
    const path = merged["path"] ?? longName ?? (prefix !== "" ? `${prefix}/${name}` : name);
    const dataSize = merged["size"] !== undefined ? Number(merged["size"]) : size;
    if (!Number.isSafeInteger(dataSize) || dataSize < 0) throw corrupt(what, `entry '${path}' has an invalid size`);
    const entry: TarEntry = {
      path,
      type: type ?? "file",
      mode: numeric(block, 100, 8, what, "mode") & 0o7777,
      uid: merged["uid"] !== undefined ? Number(merged["uid"]) : numeric(block, 108, 8, what, "uid"),
      gid: merged["gid"] !== undefined ? Number(merged["gid"]) : numeric(block, 116, 8, what, "gid"),
      mtimeSec: merged["mtime"] !== undefined ? Math.floor(Number(merged["mtime"])) : numeric(block, 136, 12, what, "mtime"),
      size: type === "file" || type === undefined ? dataSize : 0,
      linkTarget: merged["linkpath"] ?? longLink ?? cString(block, 157, 100),
      devMajor: ustar ? numeric(block, 329, 8, what, "devmajor") : 0,
      devMinor: ustar ? numeric(block, 337, 8, what, "devminor") : 0,
    };
    if (![entry.uid, entry.gid, entry.mtimeSec].every(Number.isSafeInteger)) throw corrupt(what, `entry '${path}' has an invalid uid, gid or mtime`);
    pax = {};
    longName = undefined;
    longLink = undefined;
    if (type === undefined) throw corrupt(what, `entry '${path}' has unsupported type '${typeflag.replace(/[^\x20-\x7e]/g, "?")}'`);
    // Data follows only regular files (and, per POSIX, may follow others: skip it).
    let consumed = false;
    const body: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => {
        if (consumed) throw new ShoalError("INTERNAL", "a tar entry's body was read twice");
        consumed = true;
        return bytes.chunks(entry.size, what)[Symbol.asyncIterator]();
      },
    };
    yield { entry, body };
    const dataBytes = type === "file" ? dataSize : size;
    if (!consumed) await bytes.skip(dataBytes, what);
    // umoci 0.4.7's `insert` layers end right after the last entry's data, without its padding
    // or the end-of-archive blocks. Tolerated as GNU tar does: the entry itself is complete, and
    // the bytes are pinned by the layer digest and the diff_id either way.
    if (!(await bytes.skipPadding(paddedSize(dataBytes) - dataBytes))) return;
  }
}
