// Identifiers of DESIGN.md §2: 128 random bits in base 36, zero-padded to 25 characters.
import { randomFillSync } from "node:crypto";
import { ShoalError } from "./errors.js";

export const ID_LENGTH = 25;
const ID_PATTERN = /^[0-9a-z]{25}$/;

/** Big-endian bytes as base 36, zero-padded to `width` characters. */
export function bytesToBase36(bytes: Uint8Array, width: number): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Eight bytes at a time: building the number through a hex string cost most of newId().
  let value = 0n;
  let i = 0;
  for (; i + 8 <= buf.length; i += 8) value = (value << 64n) | buf.readBigUInt64BE(i);
  for (; i < buf.length; i++) value = (value << 8n) | BigInt(buf[i]!);
  const text = value.toString(36);
  if (text.length > width) throw new RangeError(`value needs ${text.length} base-36 digits, more than ${width}`);
  return text.padStart(width, "0");
}

// Random bytes are drawn 4 KiB at a time (as node's own randomUUID does): one synchronous
// randomBytes(16) per ID was about a third of the cost of preparing a replicated write.
const pool = Buffer.allocUnsafe(4096);
let poolOffset = pool.length;

export function newId(): string {
  if (poolOffset + 16 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = pool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  return bytesToBase36(bytes, ID_LENGTH);
}

export function isValidId(value: unknown): value is string {
  return typeof value === "string" && ID_PATTERN.test(value);
}

export function assertValidId(value: unknown, what: string): string {
  if (!isValidId(value)) throw new ShoalError("INVALID_ARGUMENT", `${what} must be 25 characters of [0-9a-z]`);
  return value;
}
