// `shoal daemon --p2p-upload-rate` and `--p2p-download-rate`: bytes per second, 0 for unlimited,
// with the binary suffixes the other size flags take ("10M" is 10 MiB/s; "512k", "1.5G", "64MiB",
// "64MiB/s" too). `--content-max-bytes` takes a size in the same syntax without the "/s" ("10G",
// "512M"; 0 for no cap). Checked again where the daemon starts, so a DaemonOptions built in code
// gets the same refusal as the command line.
import { ShoalError } from "../base/errors.js";
import { checkRate, MAX_RATE_BYTES_PER_SEC } from "../agent/p2p/rate-limit.js";

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
/** The largest content store cap: 1024 TiB (more than any disk; well within a safe integer). */
export const MAX_CONTENT_BYTES = 1024 ** 5;

export function parseByteRate(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)([kmgt]?)(i?b)?(\/s)?$/i.exec(text.trim());
  const bytes = match === null ? NaN : Math.floor(Number(match[1]) * UNITS[match[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes) || bytes > MAX_RATE_BYTES_PER_SEC) {
    throw new ShoalError("INVALID_ARGUMENT", `${flag} "${text}" is not a rate: give bytes per second, e.g. 10M (10 MiB/s), 512k or 0 for unlimited, at most 1T`);
  }
  return bytes;
}

/** A rate given in code (DaemonOptions): the same bounds, named by its flag. */
export function checkByteRate(bytesPerSec: number | undefined, flag: string): number {
  const rate = bytesPerSec ?? 0;
  try {
    checkRate(rate, flag);
  } catch {
    throw new ShoalError("INVALID_ARGUMENT", `${flag} must be a whole number of bytes per second from 0 (unlimited) to ${MAX_RATE_BYTES_PER_SEC}, got ${rate}`);
  }
  return rate;
}

/** `--content-max-bytes SIZE`: bytes with binary suffixes (10G, 512M, 1.5T, 64MiB); 0 is no cap. */
export function parseByteSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)([kmgt]?)(i?b)?$/i.exec(text.trim());
  const bytes = match === null ? NaN : Math.floor(Number(match[1]) * UNITS[match[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes) || bytes > MAX_CONTENT_BYTES) {
    throw new ShoalError("INVALID_ARGUMENT", `${flag} "${text}" is not a size: give bytes, e.g. 10G or 512M (binary: 1G is 1024 MiB), or 0 for no cap, at most 1024T`);
  }
  return bytes;
}

/** A size given in code (DaemonOptions): the same bounds, named by its flag. */
export function checkByteSize(bytes: number | undefined, flag: string): number {
  const size = bytes ?? 0;
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_CONTENT_BYTES) {
    throw new ShoalError("INVALID_ARGUMENT", `${flag} must be a whole number of bytes from 0 (no cap) to ${MAX_CONTENT_BYTES}, got ${size}`);
  }
  return size;
}
