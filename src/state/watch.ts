// Watchers of store changes: each has a bounded queue; one that falls behind is closed with
// QUEUE_FULL (its consumer must re-read the store) instead of growing memory without bound.
import { ShoalError } from "../base/errors.js";
import type { Cluster, Node, Secret, Service, Task } from "../proto/shoal/v1/objects.js";
import type { KeyValue } from "../proto/shoal/v1/store.js";
import { DEFAULT_WATCH_QUEUE_EVENTS } from "./limits.js";

export type StoreTable = "nodes" | "services" | "tasks" | "secrets" | "clusters" | "kv";

export interface TableObjects {
  nodes: Node;
  services: Service;
  tasks: Task;
  secrets: Secret;
  clusters: Cluster;
  kv: KeyValue;
}

export type ChangeKind = "create" | "update" | "remove";

/**
 * One object changed by an applied proposal. Objects are frozen copies shared by all watchers:
 * copy before editing. Secrets carry no data; the cluster carries no CA key, unlock key or tokens.
 */
export type StoreChange = {
  [T in StoreTable]: {
    table: T;
    kind: ChangeKind;
    /** The object after the change; for "remove", the object as it was. */
    object: Readonly<TableObjects[T]>;
    /** The object before an "update". */
    oldObject?: Readonly<TableObjects[T]>;
  };
}[StoreTable];

export type StoreEvent =
  | (StoreChange & { index: number })
  /** The whole store was replaced from a snapshot: re-read everything. */
  | { kind: "reset"; index: number };

export interface WatchFilter {
  tables?: readonly StoreTable[];
  kinds?: readonly ChangeKind[];
  /** Extra predicate, e.g. tasks of one node. Runs inside apply: keep it cheap and never throw. */
  match?: (change: StoreChange) => boolean;
}

export interface WatchOptions {
  maxQueuedEvents?: number;
  /**
   * Deliver each event by calling this, synchronously inside apply, instead of queueing it for
   * `events`. Keep it short; if it throws, the watcher is closed.
   */
  onEvent?: (event: StoreEvent) => void;
}

/** The consumer side of a watch: iterate `events` (in apply order), call `close()` when done. */
export interface StoreWatch {
  readonly events: AsyncIterable<StoreEvent>;
  close(): void;
}

export class StoreWatcher implements StoreWatch, AsyncIterator<StoreEvent> {
  readonly events: AsyncIterable<StoreEvent>;
  private queue: StoreEvent[] = [];
  private head = 0;
  private waiter: { resolve: (r: IteratorResult<StoreEvent>) => void; reject: (e: unknown) => void } | undefined;
  private failure: ShoalError | undefined;
  private closed = false;
  private readonly maxQueuedEvents: number;
  private readonly onEvent: ((event: StoreEvent) => void) | undefined;

  constructor(
    private readonly filter: WatchFilter,
    options: WatchOptions,
    private readonly onClose: (w: StoreWatcher) => void,
  ) {
    this.maxQueuedEvents = options.maxQueuedEvents ?? DEFAULT_WATCH_QUEUE_EVENTS;
    if (!Number.isInteger(this.maxQueuedEvents) || this.maxQueuedEvents < 1) {
      throw new ShoalError("INVALID_ARGUMENT", "maxQueuedEvents must be a positive integer");
    }
    this.onEvent = options.onEvent;
    this.events = { [Symbol.asyncIterator]: () => this };
  }

  get queuedEvents(): number {
    return this.queue.length - this.head;
  }

  /** Called by the store for every event, in order. */
  offer(event: StoreEvent): void {
    if (this.closed) return;
    let wanted: boolean;
    try {
      wanted = event.kind === "reset" || this.accepts(event);
    } catch (err) {
      // Apply has already committed; a faulty filter must not turn into an apply failure.
      this.fail(new ShoalError("INTERNAL", "a store watch filter threw; the watcher was closed", { cause: err }));
      return;
    }
    if (!wanted) return;
    if (this.onEvent !== undefined) {
      try {
        this.onEvent(event);
      } catch (err) {
        this.fail(new ShoalError("INTERNAL", "a store watch callback threw; the watcher was closed", { cause: err }));
      }
      return;
    }
    if (this.waiter !== undefined) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve({ value: event, done: false });
      return;
    }
    if (this.queuedEvents >= this.maxQueuedEvents) {
      this.fail(
        new ShoalError("QUEUE_FULL", `store watcher fell more than ${this.maxQueuedEvents} events behind and was closed; re-read the store and watch again`),
      );
      return;
    }
    this.queue.push(event);
  }

  private accepts(change: StoreChange): boolean {
    const f = this.filter;
    if (f.tables !== undefined && !f.tables.includes(change.table)) return false;
    if (f.kinds !== undefined && !f.kinds.includes(change.kind)) return false;
    return f.match === undefined || f.match(change);
  }

  next(): Promise<IteratorResult<StoreEvent>> {
    if (this.head < this.queue.length) {
      const event = this.queue[this.head]!;
      this.head++;
      // Drop consumed slots now and then so the array does not keep them alive.
      if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value: event, done: false });
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter !== undefined) return Promise.reject(new ShoalError("FAILED_PRECONDITION", "a store watcher has one reader at a time"));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<StoreEvent>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.head = 0;
    this.onClose(this);
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.resolve({ value: undefined, done: true });
  }

  private fail(error: ShoalError): void {
    this.failure = error;
    const waiter = this.waiter;
    this.waiter = undefined;
    this.close();
    waiter?.reject(error);
  }
}
