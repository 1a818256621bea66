// Runs a loop's reconcile pass one at a time: any number of triggers while a pass runs coalesce into
// one more pass, and a failed pass is retried after a back-off on the injected clock. Passes start
// from a microtask, not a timer, so a ManualClock test or the simulator needs no clock step to see one.
import type { Clock, Timer } from "../base/clock.js";

export interface ReconcileTriggerOptions {
  clock: Clock;
  /** Wait before a failed pass is tried again. */
  retryDelayMs?: number;
  onError: (err: unknown) => void;
}

export class ReconcileTrigger {
  private running = false;
  private requested = false;
  private closed = false;
  private retryTimer: Timer | undefined;
  private waiters: (() => void)[] = [];
  private readonly retryDelayMs: number;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly options: ReconcileTriggerOptions,
  ) {
    this.retryDelayMs = options.retryDelayMs ?? 1000;
  }

  /** Asks for a pass soon (another one if a pass is running now). */
  request(): void {
    if (this.closed) return;
    this.requested = true;
    if (!this.running) {
      this.running = true;
      queueMicrotask(() => void this.drain());
    }
  }

  get busy(): boolean {
    return this.running && !this.closed;
  }

  /** Resolves when no pass is running or asked for. */
  idle(): Promise<void> {
    if (!this.running || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    this.retryTimer?.cancel();
    this.wake();
  }

  private async drain(): Promise<void> {
    while (this.requested && !this.closed) {
      this.requested = false;
      try {
        await this.pass();
      } catch (err) {
        if (this.closed) break;
        this.options.onError(err);
        this.retryTimer?.cancel();
        this.retryTimer = this.options.clock.setTimeout(() => this.request(), this.retryDelayMs);
      }
    }
    this.running = false;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
