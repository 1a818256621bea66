// Parses the duration flags of the CLI (`--cert-expiry`, `--expires-in`): "90d", "2160h",
// "1h30m", "45m", "30s" → whole seconds. Anything else is refused with a message that shows the form.
import { ShoalError } from "../base/errors.js";
import { MIN_NODE_CERT_VALIDITY_MS } from "../ca/root-ca.js";

const SECONDS_PER_UNIT = { d: 86_400, h: 3_600, m: 60, s: 1 } as const;
/** A bound far above any sensible expiry, so arithmetic stays exact and the server never sees garbage. */
export const MAX_DURATION_SECONDS = 100 * 365 * 86_400;
export const MIN_CERT_EXPIRY_SECONDS = MIN_NODE_CERT_VALIDITY_MS / 1000;

const DURATION_PATTERN = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** Seconds in a duration such as "1h30m"; units must appear in the order d, h, m, s, each at most once. */
export function parseDurationSeconds(text: string, flag = "duration"): number {
  const trimmed = text.trim();
  const match = DURATION_PATTERN.exec(trimmed);
  if (trimmed.length === 0 || match === null) {
    throw new ShoalError(
      "INVALID_ARGUMENT",
      `${flag} "${text}" is not a duration: use a number with a unit, e.g. 90d, 2160h, 1h30m, 45m or 30s`,
    );
  }
  const [, days, hours, minutes, seconds] = match;
  let total = 0;
  for (const [digits, unit] of [[days, "d"], [hours, "h"], [minutes, "m"], [seconds, "s"]] as const) {
    if (digits === undefined) continue;
    total += Number(digits) * SECONDS_PER_UNIT[unit];
    if (!Number.isSafeInteger(total) || total > MAX_DURATION_SECONDS) {
      throw new ShoalError("INVALID_ARGUMENT", `${flag} "${text}" is too long: use at most 100 years (36500d)`);
    }
  }
  return total;
}

/** A node certificate validity: at least one hour, as the CA enforces (DESIGN.md §2). */
export function parseCertExpirySeconds(text: string): number {
  const seconds = parseDurationSeconds(text, "--cert-expiry");
  if (seconds < MIN_CERT_EXPIRY_SECONDS) {
    throw new ShoalError("INVALID_ARGUMENT", `--cert-expiry ${text} is below the minimum of 1h: use 1h or more (default 2160h)`);
  }
  return seconds;
}

const MS_PER_UNIT: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const GO_DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;

/**
 * Milliseconds in a workload duration as Docker writes them (Go's syntax): "5s", "1m30s", "500ms",
 * "1.5h", or "0". Units ms, s, m, h; a sub-millisecond remainder is refused rather than rounded.
 */
export function parseDurationMs(text: string, flag: string): bigint {
  const trimmed = text.trim();
  const form = `use a number with a unit (ms, s, m, h), e.g. 500ms, 5s, 1m30s or 0`;
  if (trimmed === "0") return 0n;
  let totalMs = 0;
  let at = 0;
  GO_DURATION_PART.lastIndex = 0;
  for (let m = GO_DURATION_PART.exec(trimmed); m !== null; m = GO_DURATION_PART.exec(trimmed)) {
    totalMs += Number(m[1]) * MS_PER_UNIT[m[2]!]!;
    at = GO_DURATION_PART.lastIndex;
  }
  if (trimmed.length === 0 || at !== trimmed.length) throw new ShoalError("INVALID_ARGUMENT", `${flag} "${text}" is not a duration: ${form}`);
  if (!Number.isSafeInteger(Math.round(totalMs)) || totalMs > MAX_DURATION_SECONDS * 1000) {
    throw new ShoalError("INVALID_ARGUMENT", `${flag} "${text}" is too long: use at most 100 years`);
  }
  if (Math.abs(totalMs - Math.round(totalMs)) > 1e-6) throw new ShoalError("INVALID_ARGUMENT", `${flag} "${text}" is not a whole number of milliseconds`);
  return BigInt(Math.round(totalMs));
}
