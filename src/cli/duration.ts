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
