// Slows down repeated failed attempts at a secret (join tokens per source address, unlock keys on the
// local socket), as SwarmKit rate-limits session registrations. The secrets are 128 and 256 bits, so
// this is defence in depth: guessing is hopeless either way, but nobody should get 800 tries a second.
//
// After a few free failures (typos), an attempt from a key with failures behind it waits before it
// is evaluated: 250 ms after the 4th failure, doubling up to 2 s. The wait is fixed when the attempt
// arrives, so a right secret given just after a burst of wrong ones is evaluated within 2 s and
// succeeds (which forgets the key's failures). Attempts waiting at once are capped per key and in
// total (refused with QUEUE_FULL beyond), so parallel guessing gains little: at most
// MAX_WAITING_PER_KEY per MAX_DELAY_MS. Keys are bounded too (least recently failed dropped first).
import type { Clock } from "../base/clock.js";
import { ShoalError } from "../base/errors.js";

export interface FailureLimiterOptions {
  clock: Clock;
  /** What is limited, for the refusal's message: "join attempts", "unlock attempts". */
  what: string;
  /** Failures answered without delay. */
  freeFailures?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Failures older than this (since the last one) are forgotten. */
  forgetAfterMs?: number;
  maxWaitingPerKey?: number;
  maxWaitingTotal?: number;
  /** Keys tracked at most; beyond it the least recently failed key is dropped. */
  maxKeys?: number;
}

export const FAILURE_LIMITER_DEFAULTS = {
  freeFailures: 3,
  baseDelayMs: 250,
  maxDelayMs: 2_000,
  forgetAfterMs: 60_000,
  maxWaitingPerKey: 4,
  maxWaitingTotal: 256,
  maxKeys: 10_000,
} as const;

interface KeyState {
  failures: number;
  lastFailureMs: number;
  /** Attempts that arrive before this wait until it. */
  readyAtMs: number;
  waiting: number;
}

export class FailureLimiter {
  private readonly keys = new Map<string, KeyState>();
  private waitingTotal = 0;
  private readonly o: { [K in keyof typeof FAILURE_LIMITER_DEFAULTS]: number };

  constructor(private readonly opts: FailureLimiterOptions) {
    const d = FAILURE_LIMITER_DEFAULTS;
    this.o = {
      freeFailures: opts.freeFailures ?? d.freeFailures,
      baseDelayMs: opts.baseDelayMs ?? d.baseDelayMs,
      maxDelayMs: opts.maxDelayMs ?? d.maxDelayMs,
      forgetAfterMs: opts.forgetAfterMs ?? d.forgetAfterMs,
      maxWaitingPerKey: opts.maxWaitingPerKey ?? d.maxWaitingPerKey,
      maxWaitingTotal: opts.maxWaitingTotal ?? d.maxWaitingTotal,
      maxKeys: opts.maxKeys ?? d.maxKeys,
    };
  }

  /** Keys with failures on record (bounded by maxKeys). */
  get trackedKeys(): number {
    return this.keys.size;
  }

  /** How long an attempt from `key` arriving now would wait. */
  delayMs(key: string): number {
    const state = this.current(key);
    return state === undefined ? 0 : Math.max(0, state.readyAtMs - this.opts.clock.nowMs());
  }

  /**
   * Runs `attempt` for `key` after the key's current delay. An error for which `isFailure` holds
   * counts as a failure; success forgets the key. Other errors change nothing.
   */
  async run<T>(key: string, attempt: () => Promise<T>, isFailure: (err: unknown) => boolean): Promise<T> {
    const waitMs = this.delayMs(key);
    if (waitMs > 0) await this.wait(key, waitMs);
    let result: T;
    try {
      result = await attempt();
    } catch (err) {
      if (isFailure(err)) this.recordFailure(key);
      throw err;
    }
    this.keys.delete(key);
    return result;
  }

  private async wait(key: string, waitMs: number): Promise<void> {
    const state = this.keys.get(key)!;
    if (state.waiting >= this.o.maxWaitingPerKey || this.waitingTotal >= this.o.maxWaitingTotal) {
      throw new ShoalError("QUEUE_FULL", `too many ${this.opts.what} after recent failures are waiting; retry in ${Math.ceil(this.o.maxDelayMs / 1000)} s`);
    }
    state.waiting++;
    this.waitingTotal++;
    try {
      await this.opts.clock.sleep(waitMs);
    } finally {
      state.waiting--;
      this.waitingTotal--;
    }
  }

  private current(key: string): KeyState | undefined {
    const state = this.keys.get(key);
    if (state !== undefined && state.waiting === 0 && this.opts.clock.nowMs() - state.lastFailureMs > this.o.forgetAfterMs) {
      this.keys.delete(key);
      return undefined;
    }
    return state;
  }

  private recordFailure(key: string): void {
    const nowMs = this.opts.clock.nowMs();
    const state = this.current(key) ?? { failures: 0, lastFailureMs: nowMs, readyAtMs: nowMs, waiting: 0 };
    state.failures++;
    state.lastFailureMs = nowMs;
    const over = state.failures - this.o.freeFailures;
    const delay = over <= 0 ? 0 : Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(over - 1, 30));
    state.readyAtMs = Math.max(state.readyAtMs, nowMs + delay);
    // Re-insert so the Map's order is least recently failed first.
    this.keys.delete(key);
    this.keys.set(key, state);
    // A dropped key's waiting attempts still hold its state object, so the counts stay right.
    while (this.keys.size > this.o.maxKeys) this.keys.delete(this.keys.keys().next().value as string);
  }
}

/** The client's address without its port, from grpc-js's `call.getPeer()` ("10.0.0.1:5000", "::1:5000"). */
export function sourceAddressOf(call: { getPeer(): string }): string {
  const peer = call.getPeer();
  const colon = peer.lastIndexOf(":");
  return colon > 0 && /^\d+$/.test(peer.slice(colon + 1)) ? peer.slice(0, colon) : peer;
}
