// A byte-rate limit on the injected clock (token bucket), shared by every stream of one peer server
// (upload) or one peer client (download), so the node's limit holds however many peers it talks to.
import type { Clock } from "../../base/clock.js";
import { ShoalError } from "../../base/errors.js";

/** Largest accepted limit: 1 TiB/s; more is a typo, not a limit. */
export const MAX_RATE_BYTES_PER_SEC = 2 ** 40;

/**
 * Reservation-style bucket (as Go's rate.Limiter.Reserve): a caller takes its bytes at once, going
 * into debt if need be, and waits until the debt would have refilled. Concurrent callers queue
 * behind each other's debt, so the total rate holds without a waiter list, and a chunk larger than
 * the burst still passes (it just waits longer).
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  /** `bytesPerSec` 0 means unlimited. `burstBytes` is what may go at once after an idle spell. */
  constructor(
    private readonly bytesPerSec: number,
    private readonly burstBytes: number,
    private readonly clock: Clock,
  ) {
    checkRate(bytesPerSec, "the rate limit");
    if (!Number.isSafeInteger(burstBytes) || burstBytes < 1) throw new ShoalError("INVALID_ARGUMENT", `the burst must be a positive integer of bytes, got ${burstBytes}`);
    this.tokens = burstBytes;
    this.lastMs = clock.nowMs();
  }

  get unlimited(): boolean {
    return this.bytesPerSec === 0;
  }

  /**
   * Reserves `bytes` and waits until they may go. On abort the reservation is handed back and the
   * promise rejects with the signal's reason.
   */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited || bytes <= 0) return;
    signal?.throwIfAborted();
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return;
    const waitMs = Math.ceil((-this.tokens * 1000) / this.bytesPerSec);
    try {
      await sleepUnlessAborted(this.clock, waitMs, signal);
    } catch (err) {
      this.tokens += bytes;
      throw err;
    }
  }

  private refill(): void {
    const nowMs = this.clock.nowMs();
    const elapsedMs = Math.max(0, nowMs - this.lastMs);
    this.lastMs = nowMs;
    this.tokens = Math.min(this.burstBytes, this.tokens + (elapsedMs * this.bytesPerSec) / 1000);
  }
}

export function checkRate(bytesPerSec: number, what: string): void {
  if (!Number.isSafeInteger(bytesPerSec) || bytesPerSec < 0 || bytesPerSec > MAX_RATE_BYTES_PER_SEC) {
    throw new ShoalError("INVALID_ARGUMENT", `${what} must be a whole number of bytes per second between 0 (unlimited) and ${MAX_RATE_BYTES_PER_SEC}, got ${bytesPerSec}`);
  }
}

function sleepUnlessAborted(clock: Clock, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
