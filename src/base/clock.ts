// Time and timers are injected so that the simulator can drive them and a seed replays a run
// exactly. Logic under src/raft, src/state and src/manager takes a Clock and never calls Date.now,
// setTimeout or setInterval itself.

/** A scheduled callback; `cancel` is idempotent and safe after it fired. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch (virtual time under a ManualClock). */
  nowMs(): number;
  /** Runs `fn` once, `ms` from now (at least 0). */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Runs `fn` every `ms` (at least 1) until cancelled. */
  setInterval(fn: () => void, ms: number): Timer;
  /** A promise that resolves `ms` from now. */
  sleep(ms: number): Promise<void>;
}

/** Wall-clock time and Node's timers (they keep the process alive until cancelled, as Node's do). */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(handle) };
  },
  setInterval(fn, ms) {
    const handle = setInterval(fn, Math.max(1, ms));
    return { cancel: () => clearInterval(handle) };
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))),
};

interface Scheduled {
  atMs: number;
  /** Insertion order: timers due at the same instant fire in the order they were set. */
  seq: number;
  fn: () => void;
  everyMs?: number;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to; used by tests and the simulator. `advance` fires every
 * timer that falls due on the way, in time order (ties in the order they were set), each with the
 * clock set to its due time, so the same calls always give the same interleaving.
 */
export class ManualClock implements Clock {
  private readonly timers: Scheduled[] = [];
  private seq = 0;

  constructor(private currentMs = 0) {}

  nowMs(): number {
    return this.currentMs;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.schedule(fn, Math.max(0, ms));
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.schedule(fn, Math.max(1, ms), Math.max(1, ms));
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  /** How many timers are waiting. */
  get pendingTimers(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** The due time of the earliest live timer, if any. */
  nextDueMs(): number | undefined {
    this.timers.sort(byDue);
    return this.timers.find((t) => !t.cancelled)?.atMs;
  }

  /** Moves time forward by `ms`, firing every timer due up to the new time. */
  advance(ms: number): void {
    if (ms < 0) throw new RangeError("a clock cannot go backwards");
    this.advanceTo(this.currentMs + ms);
  }

  /** Moves time forward to `targetMs`, firing every timer due up to it. */
  advanceTo(targetMs: number): void {
    if (targetMs < this.currentMs) throw new RangeError("a clock cannot go backwards");
    for (;;) {
      this.timers.sort(byDue);
      const next = this.timers[0];
      if (next === undefined || next.atMs > targetMs) break;
      this.timers.shift();
      if (next.cancelled) continue;
      this.currentMs = next.atMs;
      if (next.everyMs !== undefined) {
        next.atMs += next.everyMs;
        next.seq = this.seq++;
        this.timers.push(next);
      }
      next.fn();
    }
    this.currentMs = targetMs;
  }

  /** Sets the time without firing timers (a clock jump); timers keep their due times. */
  set(ms: number): void {
    this.currentMs = ms;
  }

  private schedule(fn: () => void, delayMs: number, everyMs?: number): Timer {
    const entry: Scheduled = { atMs: this.currentMs + delayMs, seq: this.seq++, fn, everyMs, cancelled: false };
    this.timers.push(entry);
    return {
      cancel: () => {
        entry.cancelled = true;
      },
    };
  }
}

function byDue(a: Scheduled, b: Scheduled): number {
  return a.atMs - b.atMs || a.seq - b.seq;
}
