// When a node renews its certificate (DESIGN.md §2): a random point in 50–80 % of the validity
// window, so that a cluster whose certificates were issued together does not renew all at once.
import type { Random } from "../base/random.js";
import { ShoalError } from "../base/errors.js";
import { NOT_BEFORE_BACKDATE_MS } from "./root-ca.js";

export const RENEWAL_WINDOW_START = 0.5;
export const RENEWAL_WINDOW_END = 0.8;

/**
 * Picks a renewal time uniformly in [50 %, 80 %] of the *real* validity window, which starts at
 * issuance, i.e. at NotBefore + 1 h (NotBefore is backdated by an hour to absorb clock skew; counting
 * that hour would shift renewal earlier for no reason). If the window is not longer than the
 * backdate (not a certificate we issued), the whole NotBefore..NotAfter window is used.
 */
export function pickRenewalTime(args: { notBefore: Date; notAfter: Date; random: Random }): Date {
  const notBeforeMs = args.notBefore.getTime();
  const notAfterMs = args.notAfter.getTime();
  if (!Number.isFinite(notBeforeMs) || !Number.isFinite(notAfterMs) || notAfterMs <= notBeforeMs) {
    throw new ShoalError("INVALID_ARGUMENT", "a certificate's notAfter must be later than its notBefore");
  }
  const issuedMs = notAfterMs - notBeforeMs > NOT_BEFORE_BACKDATE_MS ? notBeforeMs + NOT_BEFORE_BACKDATE_MS : notBeforeMs;
  const windowMs = notAfterMs - issuedMs;
  const fraction = RENEWAL_WINDOW_START + args.random.float() * (RENEWAL_WINDOW_END - RENEWAL_WINDOW_START);
  return new Date(issuedMs + Math.floor(windowMs * fraction));
}
