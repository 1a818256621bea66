// One node's clock in the simulation: RaftNode's timers become events on the simulator's queue, so
// virtual time drives its ticks and deadlines and a seed replays them exactly. A drifting node's
// timers run fast or slow; a paused node (SIGSTOP) misses its ticks and runs its one-shot timers
// on resume; a crashed incarnation's timers never fire again.
import type { Clock, Timer } from "../src/base/clock.js";
import type { EventQueue } from "./events.js";

/** The node state a clock consults when one of its timers falls due. */
export interface ClockHost {
  readonly drift: number;
  readonly paused: boolean;
  /** Work held while paused, run in order on resume. */
  readonly held: Array<() => void>;
}

export class SimNodeClock implements Clock {
  private dead = false;

  constructor(
    private readonly queue: EventQueue,
    /** Names the node in event labels (they are hashed into the trace). */
    private readonly name: string,
    private readonly host: ClockHost,
  ) {}

  /** The incarnation crashed: none of its timers may fire again. */
  kill(): void {
    this.dead = true;
  }

  nowMs(): number {
    return this.queue.nowMs;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    let cancelled = false;
    this.queue.schedule(this.drifted(Math.max(0, ms)), `timer ${this.name}`, () => {
      if (cancelled || this.dead) return;
      if (this.host.paused) this.host.held.push(fn);
      else fn();
    });
    return {
      cancel: () => {
        cancelled = true;
      },
    };
  }

  setInterval(fn: () => void, ms: number): Timer {
    let cancelled = false;
    const periodMs = Math.max(1, ms);
    const arm = (): void => {
      this.queue.schedule(Math.max(1, this.drifted(periodMs)), `tick ${this.name}`, () => {
        if (cancelled || this.dead) return;
        arm();
        if (!this.host.paused) fn();
      });
    };
    arm();
    return {
      cancel: () => {
        cancelled = true;
      },
    };
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  private drifted(ms: number): number {
    return Math.round(ms * this.host.drift);
  }
}
