// A tiny ustar writer for tests: builds hostile or unusual layers that no well-behaved tool
// would produce (`../` paths, links out of the rootfs, device nodes, PAX long names).
import { gzipSync } from "node:zlib";

export interface TarSpec {
  path: string;
  type?: "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";
  content?: string | Buffer;
  linkTarget?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Writes the path in a PAX extended header (for names over 100 bytes). */
  pax?: boolean;
}

const TYPEFLAG = { file: "0", hardlink: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" } as const;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(name: string, typeflag: string, size: number, opts: { mode: number; uid: number; gid: number; linkTarget: string }): Buffer {
  const block = Buffer.alloc(512);
  block.write(name.slice(0, 100), 0, "utf8");
  block.write(octal(opts.mode, 8), 100, "latin1");
  block.write(octal(opts.uid, 8), 108, "latin1");
  block.write(octal(opts.gid, 8), 116, "latin1");
  block.write(octal(size, 12), 124, "latin1");
  block.write(octal(1_700_000_000, 12), 136, "latin1");
  block.write("        ", 148, "latin1");
  block.write(typeflag, 156, "latin1");
  block.write(opts.linkTarget.slice(0, 100), 157, "utf8");
  block.write("ustar\0", 257, "latin1");
  block.write("00", 263, "latin1");
  block.write(octal(1, 8), 329, "latin1");
  block.write(octal(3, 8), 337, "latin1");
  let sum = 0;
  for (const b of block) sum += b;
  block.write(octal(sum, 7) + " ", 148, "latin1");
  return block;
}

function pad(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

export function buildTar(entries: TarSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? "file";
    const content = type === "file" ? Buffer.from(e.content ?? "") : Buffer.alloc(0);
    const meta = { mode: e.mode ?? (type === "dir" ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0, linkTarget: e.linkTarget ?? "" };
    if (e.pax === true) {
      const record = (key: string, value: string): string => {
        const body = ` ${key}=${value}\n`;
        let len = body.length + 1;
        while (`${len}${body}`.length !== len) len++;
        return `${len}${body}`;
      };
      const paxData = Buffer.from(record("path", e.path), "utf8");
      parts.push(header("PaxHeader", "x", paxData.length, { mode: 0o644, uid: 0, gid: 0, linkTarget: "" }), pad(paxData));
    }
    parts.push(header(e.path, TYPEFLAG[type], content.length, meta), pad(content));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function buildTarGz(entries: TarSpec[]): Buffer {
  return gzipSync(buildTar(entries));
}

export async function* chunksOf(data: Buffer, size = 700): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}
