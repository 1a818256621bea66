// The events this manager has derived, kept in memory for `shoal events --since`, and the streams
// that follow them. Bounded twice: the history keeps the last EVENT_HISTORY_SIZE events (docker
// keeps a fixed number too), and a client that reads more slowly than events arrive is ended with
// QUEUE_FULL once MAX_QUEUED_LIVE_EVENTS new events wait for it, instead of queueing without bound.
import { ShoalError } from "../../base/errors.js";
import type { ClusterEvent, EventsRequest } from "../../proto/shoal/v1/control.js";
import { EVENT_TYPES } from "../../state/index.js";

/**
 * Events kept. A rolling update of a 1,000-task service makes about 7 events per task (create,
 * the states up to running, and the old task's shutdown), so 10,000 hold one such update and its
 * surroundings for `--since`; at a few hundred bytes each that is a few MB of memory.
 */
export const EVENT_HISTORY_SIZE = 10_000;
/** New events that may wait for one slow client (beyond its replay) before it is ended. */
export const MAX_QUEUED_LIVE_EVENTS = 4_096;
/** Open `shoal events` streams on one manager. */
export const MAX_EVENT_SUBSCRIBERS = 64;
/** Events per stream message. */
export const EVENTS_PER_MESSAGE = 256;

/** Where a subscription's events go: the client's stream. */
export interface EventSink {
  /** Sends one message; false when the client's buffer is full (wait for `onDrain`). */
  write(events: ClusterEvent[]): boolean;
  /** Calls `listener` once, when the client's buffer has room again. */
  onDrain(listener: () => void): void;
  end(err?: ShoalError): void;
}

interface Filter {
  types: ReadonlySet<string> | undefined;
}

/** Whether `event` passes the type filter. Stream markers (type "cluster") always do: they say events were lost. */
function passes(filter: Filter, event: ClusterEvent): boolean {
  return filter.types === undefined || event.type === "cluster" || filter.types.has(event.type);
}

class Subscription {
  private queue: ClusterEvent[] = [];
  private head = 0;
  private waitingForDrain = false;
  private pumpScheduled = false;
  private ended = false;
  /** Queued events allowed: the replay plus MAX_QUEUED_LIVE_EVENTS. */
  private limit: number;

  constructor(
    private readonly sink: EventSink,
    private readonly filter: Filter,
    private readonly follow: boolean,
    replay: ClusterEvent[],
    private readonly onEnd: (s: Subscription) => void,
  ) {
    this.queue = replay.filter((e) => passes(filter, e));
    this.limit = this.queue.length + MAX_QUEUED_LIVE_EVENTS;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  start(): void {
    this.pump();
  }

  offer(events: readonly ClusterEvent[]): void {
    if (this.ended || !this.follow) return;
    for (const e of events) if (passes(this.filter, e)) this.queue.push(e);
    if (this.queued > this.limit) {
      this.end(new ShoalError("QUEUE_FULL", `this client fell more than ${MAX_QUEUED_LIVE_EVENTS} events behind and was disconnected; read the stream faster, or filter it with --filter type=...`));
      return;
    }
    // Every change of one applied proposal arrives in the same tick: send them as one message.
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      queueMicrotask(() => {
        this.pumpScheduled = false;
        this.pump();
      });
    }
  }

  private pump(): void {
    while (!this.ended && !this.waitingForDrain && this.head < this.queue.length) {
      const batch = this.queue.slice(this.head, this.head + EVENTS_PER_MESSAGE);
      this.head += batch.length;
      if (!this.sink.write(batch)) {
        this.waitingForDrain = true;
        this.sink.onDrain(() => {
          this.waitingForDrain = false;
          this.pump();
        });
      }
    }
    if (this.head === this.queue.length && this.head > 0) {
      this.queue = [];
      this.head = 0;
      // After the replay has gone out, only live events count against the bound.
      this.limit = MAX_QUEUED_LIVE_EVENTS;
    }
    if (!this.ended && !this.follow && this.queued === 0) this.end();
  }

  end(err?: ShoalError): void {
    if (this.ended) return;
    this.ended = true;
    this.queue = [];
    this.head = 0;
    this.onEnd(this);
    this.sink.end(err);
  }
}

/** Checks an EventsRequest's type filter: the known types, each at most once. */
export function eventTypeFilter(types: readonly string[]): ReadonlySet<string> | undefined {
  if (types.length === 0) return undefined;
  for (const t of types) {
    if (!(EVENT_TYPES as readonly string[]).includes(t)) {
      throw new ShoalError("INVALID_ARGUMENT", `unknown event type "${t}": use one of ${EVENT_TYPES.join(", ")}`);
    }
  }
  return new Set(types);
}

export class EventHistory {
  private events: ClusterEvent[] = [];
  private start = 0;
  private readonly subs = new Set<Subscription>();

  constructor(private readonly capacity = EVENT_HISTORY_SIZE) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new ShoalError("INVALID_ARGUMENT", "the event history needs a positive capacity");
  }

  get size(): number {
    return this.events.length - this.start;
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** Kept events at or after `sinceMs`, oldest first. */
  since(sinceMs: number): ClusterEvent[] {
    const out: ClusterEvent[] = [];
    for (let i = this.start; i < this.events.length; i++) {
      const e = this.events[i]!;
      if ((e.time?.getTime() ?? 0) >= sinceMs) out.push(e);
    }
    return out;
  }

  append(events: readonly ClusterEvent[]): void {
    if (events.length === 0) return;
    for (const e of events) this.events.push(e);
    if (this.size > this.capacity) {
      this.start = this.events.length - this.capacity;
      // Drop the dropped slots now and then so the array does not keep them alive.
      if (this.start >= this.capacity) {
        this.events = this.events.slice(this.start);
        this.start = 0;
      }
    }
    for (const s of [...this.subs]) s.offer(events);
  }

  /**
   * Starts a stream: the kept events at or after `request.since` (none when unset), then, unless
   * `noFollow`, every new one. Returns the function that cancels it (the client went away).
   */
  subscribe(request: EventsRequest, sink: EventSink): () => void {
    const types = eventTypeFilter(request.types);
    if (this.subs.size >= MAX_EVENT_SUBSCRIBERS) {
      throw new ShoalError("QUEUE_FULL", `this manager already serves ${MAX_EVENT_SUBSCRIBERS} event streams; end one or retry later`);
    }
    const sinceMs = request.since?.getTime();
    if (sinceMs !== undefined && !Number.isFinite(sinceMs)) throw new ShoalError("INVALID_ARGUMENT", "since is not a valid time");
    const replay = sinceMs === undefined ? [] : this.since(sinceMs);
    // Replay and registration in one tick: no event falls between them.
    const sub = new Subscription(sink, { types }, !request.noFollow, replay, (s) => this.subs.delete(s));
    if (!request.noFollow) this.subs.add(sub);
    sub.start();
    return () => sub.end();
  }

  /** Ends every stream (the manager stops). */
  close(err: ShoalError): void {
    for (const s of [...this.subs]) s.end(err);
  }
}
