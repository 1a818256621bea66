// The one place that starts the leader loops when this manager becomes raft leader and stops them
// when it is not leader any more. Each loop gets a LoopContext for one term: the store's read view,
// one watch, proposals fenced with that term, and timers that die with it.
import type { Clock, Timer } from "../../base/clock.js";
import { ShoalError, isShoalError } from "../../base/errors.js";
import { newId } from "../../base/ids.js";
import type { Random } from "../../base/random.js";
import type {
  LeaderLoop,
  LeaderLoopFactory,
  LoopContext,
  LoopLogger,
  LoopProposal,
  ObjectStore,
  StoreTransaction,
  StoreWatch,
} from "../../state/index.js";

/** Puts one transaction through raft only if `term` is still this manager's leader term. */
export type TermFencedPropose = (build: (tx: StoreTransaction) => void, options: { term: number }) => Promise<LoopProposal>;

export interface LeaderLoopsOptions {
  store: ObjectStore;
  propose: TermFencedPropose;
  clock: Clock;
  random: Random;
  logger: LoopLogger & { child?(bindings: object): LoopLogger };
  loops: readonly LeaderLoopFactory[];
  /** IDs for what the loops create (default: random, from the OS CSPRNG). */
  newId?: () => string;
}

const DEFAULT_UPDATE_ATTEMPTS = 5;

class TermContext implements LoopContext {
  stopped = false;
  private readonly timers = new Set<Timer>();
  private watchHandle: StoreWatch | undefined;

  constructor(
    readonly name: string,
    readonly term: number,
    private readonly opts: LeaderLoopsOptions,
    readonly logger: LoopLogger,
  ) {}

  get store(): ObjectStore {
    return this.opts.store;
  }
  get clock(): Clock {
    return this.opts.clock;
  }
  get random(): Random {
    return this.opts.random;
  }
  newId(): string {
    return (this.opts.newId ?? newId)();
  }

  watch(filter: Parameters<LoopContext["watch"]>[0], onEvent: Parameters<LoopContext["watch"]>[1]): void {
    if (this.watchHandle !== undefined) throw new ShoalError("FAILED_PRECONDITION", `leader loop ${this.name} already has its watch`);
    if (this.stopped) return;
    this.watchHandle = this.opts.store.watch(filter, {
      onEvent: (event) => {
        if (!this.stopped) onEvent(event);
      },
    });
  }

  private refuse(): ShoalError {
    return new ShoalError("NOT_LEADER", `leader loop ${this.name}: leadership of term ${this.term} has ended; nothing was written`);
  }

  async propose(build: (tx: StoreTransaction) => void): Promise<LoopProposal> {
    if (this.stopped) throw this.refuse();
    return this.opts.propose(build, { term: this.term });
  }

  async update(build: (tx: StoreTransaction) => boolean | void, options: { attempts?: number } = {}): Promise<LoopProposal | undefined> {
    const attempts = options.attempts ?? DEFAULT_UPDATE_ATTEMPTS;
    for (let attempt = 1; ; attempt++) {
      let skipped = false;
      try {
        return await this.propose((tx) => {
          skipped = build(tx) === false;
          if (skipped) throw new NothingToWrite();
        });
      } catch (err) {
        if (err instanceof NothingToWrite) return undefined;
        if (!isShoalError(err, "VERSION_CONFLICT") || attempt >= attempts || this.stopped) throw err;
      }
    }
  }

  timer(fn: () => void, ms: number): Timer {
    let wrapped: Timer | undefined = undefined;
    const inner = this.opts.clock.setTimeout(() => {
      if (wrapped !== undefined) this.timers.delete(wrapped);
      this.fire(fn);
    }, ms);
    wrapped = this.track(inner);
    return wrapped;
  }

  interval(fn: () => void, ms: number): Timer {
    return this.track(this.opts.clock.setInterval(() => this.fire(fn), ms));
  }

  private track(inner: Timer): Timer {
    const wrapped: Timer = {
      cancel: () => {
        inner.cancel();
        this.timers.delete(wrapped);
      },
    };
    this.timers.add(wrapped);
    return wrapped;
  }

  private fire(fn: () => void): void {
    if (this.stopped) return;
    try {
      fn();
    } catch (err) {
      this.logger.error({ loop: this.name, err: String(err) }, "leader loop timer callback failed");
    }
  }

  stop(): void {
    this.stopped = true;
    this.watchHandle?.close();
    for (const t of [...this.timers]) t.cancel();
    this.timers.clear();
  }
}

class NothingToWrite extends Error {}

export class LeaderLoops {
  private running: { ctx: TermContext; loop: LeaderLoop }[] = [];
  private currentTerm: number | undefined;

  constructor(private readonly opts: LeaderLoopsOptions) {}

  /** The term the loops run in now, if they run. */
  get term(): number | undefined {
    return this.currentTerm;
  }

  /** Called on every leader change: stops the loops of the old term, starts them for a new one. */
  leaderChanged(isLeader: boolean, term: number): void {
    if (isLeader && this.currentTerm === term) return;
    this.stopAll();
    if (!isLeader) return;
    this.currentTerm = term;
    for (const factory of this.opts.loops) {
      const logger = this.opts.logger.child?.({ loop: factory.name, term }) ?? this.opts.logger;
      const ctx = new TermContext(factory.name, term, this.opts, logger);
      try {
        this.running.push({ ctx, loop: factory.start(ctx) });
      } catch (err) {
        ctx.stop();
        logger.error({ err: String(err) }, "leader loop failed to start");
      }
    }
  }

  /**
   * Waits until no loop has work left (their passes trigger each other through the store): for
   * tests and the simulator, which drive time with a ManualClock.
   */
  async idle(maxRounds = 10_000): Promise<void> {
    for (let round = 0; round < maxRounds; round++) {
      const running = this.running;
      if (!running.some((r) => r.loop.busy)) return;
      await Promise.all(running.map((r) => r.loop.idle()));
    }
    throw new ShoalError("TIMEOUT", `leader loops did not settle within ${maxRounds} rounds`);
  }

  stop(): void {
    this.stopAll();
  }

  private stopAll(): void {
    for (const { ctx, loop } of this.running) {
      ctx.stop();
      try {
        loop.stop();
      } catch (err) {
        ctx.logger.error({ err: String(err) }, "leader loop failed to stop");
      }
    }
    this.running = [];
    this.currentTerm = undefined;
  }
}
