// Feeds the event history from this manager's own applied store (so every manager, leader or not,
// has the same events, and a stream survives leader changes). The watch delivers each change
// synchronously inside apply (onEvent), so it never falls behind and is never closed with
// QUEUE_FULL; a change the deriver cannot handle is logged and skipped, never the end of the feed.
//
// Times are this manager's clock when it applies a change. Entries this manager had already
// committed when it started (the raft log it replays at start) make no events: their real times
// are gone with the previous process, and its history starts empty. A store replaced from a
// snapshot (a follower that fell too far behind) puts a `cluster reset` marker in the stream: what
// changed in between is not derived.
import { createHmac, randomBytes } from "node:crypto";
import type { Clock } from "../../base/clock.js";
import type { Cluster } from "../../proto/shoal/v1/objects.js";
import type { ClusterEvent } from "../../proto/shoal/v1/control.js";
import { deriveEvents, resetEvent, type JoinTokenRole, type StoreEvent, type StoreWatch } from "../../state/index.js";
import type { EventHistory } from "./event-history.js";

/** What the feed needs of the store: a watch, and the full cluster to tell that a join token changed. */
export interface EventSource {
  watch(filter: object, options: { onEvent: (event: StoreEvent) => void }): StoreWatch;
  /** The cluster with its join tokens (read inside apply, right after the change). */
  getCluster(): Cluster | undefined;
}

export interface EventFeedLogger {
  warn(obj: object, msg: string): void;
}

export class EventFeed {
  private readonly watch: StoreWatch;
  /** Entries at or below this index are the start-up replay; undefined until `goLive`. */
  private replayedUntil: number | undefined;
  /** Keyed hashes of the join tokens (the tokens themselves are not kept here). */
  private readonly tokenKey = randomBytes(32);
  private tokenMacs: Record<JoinTokenRole, string> = { worker: "", manager: "" };

  constructor(
    private readonly source: EventSource,
    private readonly history: EventHistory,
    private readonly clock: Clock,
    private readonly logger: EventFeedLogger,
  ) {
    this.watch = source.watch({}, { onEvent: (event) => this.onEvent(event) });
  }

  /** The start-up replay is over at `index` (the commit index raft started with): later entries make events. */
  goLive(index: number): void {
    this.replayedUntil = index;
    this.tokenMacs = this.currentTokenMacs();
  }

  close(): void {
    this.watch.close();
  }

  private onEvent(event: StoreEvent): void {
    if (this.replayedUntil === undefined || event.index <= this.replayedUntil) return;
    try {
      const ctx = { timeMs: this.clock.nowMs(), index: event.index };
      if (event.kind === "reset") {
        this.tokenMacs = this.currentTokenMacs();
        this.history.append([resetEvent(ctx, "snapshot")]);
        return;
      }
      let rotatedJoinTokens: JoinTokenRole[] = [];
      if (event.table === "clusters") {
        const macs = this.currentTokenMacs();
        rotatedJoinTokens = (["worker", "manager"] as const).filter((r) => this.tokenMacs[r] !== "" && macs[r] !== this.tokenMacs[r]);
        this.tokenMacs = macs;
      }
      this.history.append(deriveEvents(event, { ...ctx, rotatedJoinTokens }));
    } catch (err) {
      this.logger.warn({ err: err instanceof Error ? err.message : String(err), index: event.index }, "cannot derive events from an applied change; skipped");
      const marker: ClusterEvent = { type: "cluster", action: "error", id: "", name: "", attributes: { reason: "an applied change could not be turned into events" }, time: new Date(this.clock.nowMs()), index: BigInt(event.index) };
      this.history.append([marker]);
    }
  }

  private currentTokenMacs(): Record<JoinTokenRole, string> {
    const tokens = this.source.getCluster()?.rootCa?.joinTokens;
    const mac = (token: string | undefined): string => (token === undefined || token === "" ? "" : createHmac("sha256", this.tokenKey).update(token).digest("hex"));
    return { worker: mac(tokens?.worker), manager: mac(tokens?.manager) };
  }
}
