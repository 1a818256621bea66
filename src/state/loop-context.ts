// What a leader loop (orchestrator, scheduler, constraint enforcer, revocation GC) is given: a narrow
// view of the store, not the manager. Defined here, below `manager/`, so that the loops' folders and
// the leadership wiring that fills it in share it without importing each other; an in-memory
// ObjectStore with a propose that applies at once satisfies it too (tests, cluster-sim).
import type { Clock, Timer } from "../base/clock.js";
import type { Random } from "../base/random.js";
import type { Node, RevocationList, Service, Task } from "../proto/shoal/v1/objects.js";
import type { StoreTransaction } from "./store.js";
import type { StoreEvent, WatchFilter } from "./watch.js";

/** Reads a loop may do (copies; no secret data, no CA key). */
export interface StoreView {
  readonly lastAppliedIndex: number;
  getNode(id: string): Node | undefined;
  listNodes(): Node[];
  getService(id: string): Service | undefined;
  listServices(): Service[];
  getTask(id: string): Task | undefined;
  listTasks(filter?: { serviceId?: string; nodeId?: string }): Task[];
  getRevocationList(): RevocationList;
}

/** pino's Logger satisfies this. */
export interface LoopLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface LoopProposal {
  index: number;
}

export interface LoopContext {
  /** The loop's name, for logs. */
  readonly name: string;
  /** The raft term this loop runs in; every proposal is fenced with it. */
  readonly term: number;
  readonly store: StoreView;
  readonly clock: Clock;
  readonly random: Random;
  /** IDs for objects a loop creates: random in a manager, drawn from the seed in the simulator. */
  newId(): string;
  readonly logger: LoopLogger;
  /** True once leadership of `term` ended (or the manager stopped): the loop must do nothing more. */
  readonly stopped: boolean;
  /**
   * The loop's one watch: `onEvent` runs synchronously inside apply for every change that passes
   * `filter` (keep it cheap: note what changed and trigger a run). A second call throws.
   */
  watch(filter: WatchFilter, onEvent: (event: StoreEvent) => void): void;
  /** One transaction through raft, refused with NOT_LEADER once `term` is over. */
  propose(build: (tx: StoreTransaction) => void): Promise<LoopProposal>;
  /**
   * Read-modify-write: runs `build` (which must read through `tx`) and proposes; on VERSION_CONFLICT
   * (someone wrote in between) runs it again against the new state, up to `attempts` times (default 5).
   * `build` returning false means "nothing to write any more" and ends without a proposal.
   */
  update(build: (tx: StoreTransaction) => boolean | void, options?: { attempts?: number }): Promise<LoopProposal | undefined>;
  /** Timers of the injected clock that are cancelled when the loop stops. */
  timer(fn: () => void, ms: number): Timer;
  interval(fn: () => void, ms: number): Timer;
}

/** A started loop. */
export interface LeaderLoop {
  /** Stops at once: no further proposals, timers or watch events. */
  stop(): void;
  /** True while a pass runs or is asked for. */
  readonly busy: boolean;
  /** Resolves when the loop has nothing left to do for what it has seen (tests, simulation). */
  idle(): Promise<void>;
}

export interface LeaderLoopFactory {
  readonly name: string;
  start(ctx: LoopContext): LeaderLoop;
}
