// Identifiers of DESIGN.md §2: 128 random bits in base 36, zero-padded to 25 characters.
import { randomBytes } from "node:crypto";
import { ShoalError } from "./errors.js";

export const ID_LENGTH = 25;
const ID_PATTERN = /^[0-9a-z]{25}$/;

/** Big-endian bytes as base 36, zero-padded to `width` characters. */
export function bytesToBase36(bytes: Uint8Array, width: number): string {
  const hex = Buffer.from(bytes).toString("hex");
  const text = (hex.length === 0 ? 0n : BigInt("0x" + hex)).toString(36);
  if (text.length > width) throw new RangeError(`value needs ${text.length} base-36 digits, more than ${width}`);
  return text.padStart(width, "0");
}

export function newId(): string {
  return bytesToBase36(randomBytes(16), ID_LENGTH);
}

export function isValidId(value: unknown): value is string {
  return typeof value === "string" && ID_PATTERN.test(value);
}

export function assertValidId(value: unknown, what: string): string {
  if (!isValidId(value)) throw new ShoalError("INVALID_ARGUMENT", `${what} must be 25 characters of [0-9a-z]`);
  return value;
}
