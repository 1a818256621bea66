// PEM armour: strict decoding of the blocks Shoal reads, and one canonical encoding (64-character
// lines, trailing newline) so that digests over a PEM bundle are stable.
import { ShoalError } from "../base/errors.js";

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END \1-----/g;
const MAX_PEM_CHARS = 1024 * 1024;

export interface PemBlock {
  label: string;
  der: Buffer;
}

/** All PEM blocks in `text`; PEM_INVALID when there is none or a body is not base64. */
export function decodePemBlocks(text: string, what: string): PemBlock[] {
  if (typeof text !== "string" || text.length > MAX_PEM_CHARS) {
    throw new ShoalError("PEM_INVALID", `${what} is not PEM text; pass the contents of a PEM file`);
  }
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const body = match[2]!.replace(/[\r\n]/g, "");
    if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
      throw new ShoalError("PEM_INVALID", `${what} has a PEM block whose body is not valid base64`);
    }
    blocks.push({ label: match[1]!, der: Buffer.from(body, "base64") });
  }
  if (blocks.length === 0) {
    throw new ShoalError("PEM_INVALID", `${what} contains no PEM block (-----BEGIN ...-----); pass the contents of a PEM file`);
  }
  return blocks;
}

/** The DER of the first block labelled `label`; PEM_INVALID if there is none. */
export function decodePem(text: string, label: string, what: string): Buffer {
  const block = decodePemBlocks(text, what).find((b) => b.label === label);
  if (!block) throw new ShoalError("PEM_INVALID", `${what} has no "${label}" PEM block`);
  return block.der;
}

export function encodePem(label: string, der: Uint8Array): string {
  const base64 = Buffer.from(der).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < base64.length; i += 64) lines.push(base64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
