// The leader's view of one follower's replication (etcd's tracker.Progress): how far it matches,
// what to send next, and the flow-control state that bounds what is in flight to it.
import type { Progress as ProgressView } from "./types.js";

export type ProgressState = "probe" | "replicate" | "snapshot";

/** A ring of the last index of each Append in flight, freed as acknowledgements arrive. */
export class Inflights {
  private readonly buffer: number[];
  private start = 0;
  count = 0;

  constructor(readonly capacity: number) {
    this.buffer = new Array<number>(capacity).fill(0);
  }

  full(): boolean {
    return this.count >= this.capacity;
  }

  add(lastIndex: number): void {
    this.buffer[(this.start + this.count) % this.capacity] = lastIndex;
    this.count++;
  }

  /** Free every message whose last index is <= index. */
  freeLE(index: number): void {
    while (this.count > 0 && this.buffer[this.start]! <= index) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
  }

  /** Free the oldest slot: a heartbeat answer shows the follower is alive though an Append was lost. */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.capacity;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

export class FollowerProgress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** Probe state: an Append was sent and we wait for its answer (or the next heartbeat). */
  probeSent = false;
  /** Snapshot state: the index of the snapshot in flight. */
  pendingSnapshot = 0;
  /** Snapshot state: leader ticks since the snapshot was sent (a lost snapshot must not pause forever). */
  snapshotTicks = 0;
  /** The commit index carried by the last Append sent, so a commit change is announced once. */
  sentCommit = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: number, maxInflightMsgs: number, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(Math.max(1, maxInflightMsgs));
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, resume right after it: the follower has at least that much.
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acknowledgement of `index`: returns true if it moved match forward. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the Append at `rejected` with the follower's hint: move `next` back. Returns
   * false for a stale rejection (one that no longer says anything about what to send next).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }

  /** Account for an Append carrying entries up to `lastIndex` (count 0 for an empty probe). */
  sentEntries(count: number, lastIndex: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  view(): ProgressView {
    return { match: this.match, next: this.next, state: this.state, recentActive: this.recentActive, inflight: this.inflights.count };
  }
}
