// Heartbeat timing on the leader: the period each agent is told (5 s by default, with jitter so that
// agents that connected together do not beat together forever), and the deadlines after which a
// silent node is reported DOWN (3 of the periods it was told), checked on the injected clock.
import type { Clock, Timer } from "../../base/clock.js";
import type { Random } from "../../base/random.js";

export const DEFAULT_HEARTBEAT_PERIOD_MS = 5_000;
/** Missed heartbeats before a node is marked DOWN. */
export const HEARTBEAT_TTL_PERIODS = 3;
/** Each told period is the base period ± this fraction of it (SwarmKit: 5 s ± 0.5 s). */
export const HEARTBEAT_JITTER_FRACTION = 0.1;

export interface HeartbeatMonitorOptions {
  periodMs: number;
  clock: Clock;
  random: Random;
  /** The nodes that count as alive now (READY in the store): only these can become overdue. */
  readyNodes: () => string[];
  /** Called from the check timer with the IDs of ready nodes whose deadline passed. */
  onExpired: (nodeIds: string[]) => void;
}

export class HeartbeatMonitor {
  readonly periodMs: number;
  private readonly jitterMs: number;
  /** Node ID → time after which it is DOWN unless it beats again. */
  private readonly deadlineMs = new Map<string, number>();
  private sinceMs = 0;
  private timer: Timer | undefined;

  constructor(private readonly opts: HeartbeatMonitorOptions) {
    this.periodMs = opts.periodMs;
    this.jitterMs = Math.floor(opts.periodMs * HEARTBEAT_JITTER_FRACTION);
  }

  /** The longest period an agent may be told: the TTL of a node not heard from since `start`. */
  get maxPeriodMs(): number {
    return this.periodMs + this.jitterMs;
  }

  /** A period in [period − jitter, period + jitter]. */
  choosePeriodMs(): number {
    if (this.jitterMs === 0) return this.periodMs;
    return this.periodMs - this.jitterMs + this.opts.random.int(0, 2 * this.jitterMs + 1);
  }

  /** Starts checking (on becoming leader): nodes not heard from yet get one full TTL from now. */
  start(): void {
    this.stop();
    this.sinceMs = this.opts.clock.nowMs();
    this.deadlineMs.clear();
    // Through the injected clock, so the simulator and tests drive the DOWN marking.
    this.timer = this.opts.clock.setInterval(() => this.check(), this.periodMs);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** The node beat now and was told `toldPeriodMs`: it is DOWN after missing 3 of those. */
  beat(nodeId: string, toldPeriodMs: number): void {
    this.deadlineMs.set(nodeId, this.opts.clock.nowMs() + toldPeriodMs * HEARTBEAT_TTL_PERIODS);
  }

  /** Whether `nodeId`'s deadline has passed at `nowMs`. */
  expired(nodeId: string, nowMs: number): boolean {
    const deadline = this.deadlineMs.get(nodeId) ?? this.sinceMs + this.maxPeriodMs * HEARTBEAT_TTL_PERIODS;
    return nowMs > deadline;
  }

  private check(): void {
    const nowMs = this.opts.clock.nowMs();
    const overdue = this.opts.readyNodes().filter((id) => this.expired(id, nowMs));
    if (overdue.length > 0) this.opts.onExpired(overdue);
  }
}
