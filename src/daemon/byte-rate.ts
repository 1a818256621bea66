// `shoal daemon --p2p-upload-rate` and `--p2p-download-rate`: bytes per second, 0 for unlimited,
// with the binary suffixes the other size flags take ("10M" is 10 MiB/s; "512k", "1.5G", "64MiB",
// "64MiB/s" too). Checked again where the daemon starts, so a DaemonOptions built in code gets the
// same refusal as the command line.
import { ShoalError } from "../base/errors.js";
import { checkRate, MAX_RATE_BYTES_PER_SEC } from "../agent/p2p/rate-limit.js";

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

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
