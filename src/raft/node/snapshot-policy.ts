// When RaftNode captures the state machine and when it compacts the log to that capture: the
// snapshot policy, kept apart from the loop that carries it out.
import type { SnapshotMetadata } from "../core/types.js";

export interface TakenSnapshot {
  metadata: SnapshotMetadata;
  data: Uint8Array;
}

export interface SnapshotPolicyOptions {
  /** Capture after this many applied entries... */
  intervalEntries: number;
  /** ...or after this many bytes of them, whichever comes first. */
  afterLogBytes: number;
  /** Compact only once this many more entries were applied after the capture. */
  keepEntries: number;
}

/**
 * Every `intervalEntries` applied entries (or `afterLogBytes` of them), once they hold as many bytes
 * as the last snapshot, the state machine is captured; the log is compacted to that capture only
 * once `keepEntries` more entries were applied, so a follower that far behind still catches up
 * from the log instead of a full snapshot.
 *
 * The byte rule: a snapshot encodes the whole state, so taking one every N entries costs O(state)
 * per N writes, which grows with the state (in the 256-client write benchmark, about a fifth of a
 * follower's CPU with N = 1,000). Waiting until the log since the snapshot is as large as the
 * snapshot keeps that cost at about one byte encoded per byte written, at the price of a log in
 * memory up to the state's size (the rule the Raft thesis suggests for when to snapshot).
 */
export class SnapshotPolicy {
  private lastIndex = 0;
  /** Size of the last snapshot taken or restored, and data bytes applied since. */
  private lastBytes = 0;
  private bytesSince = 0;
  /** Captured, waiting for `keepEntries` more applied entries before the log is compacted to it. */
  private held: TakenSnapshot | undefined;

  constructor(private readonly opts: SnapshotPolicyOptions) {}

  /** A snapshot was loaded at start or installed from the leader. */
  restored(index: number, bytes: number): void {
    this.lastIndex = index;
    this.lastBytes = bytes;
    this.bytesSince = 0;
    if (this.held !== undefined && this.held.metadata.index <= index) this.held = undefined;
  }

  applied(dataBytes: number): void {
    this.bytesSince += dataBytes;
  }

  /** True when the state machine should be captured now, at `appliedIndex`. */
  captureDue(appliedIndex: number): boolean {
    return (
      this.held === undefined &&
      (appliedIndex - this.lastIndex >= this.opts.intervalEntries || this.bytesSince >= this.opts.afterLogBytes) &&
      this.bytesSince >= this.lastBytes
    );
  }

  captured(snapshot: TakenSnapshot): void {
    this.held = snapshot;
    this.lastIndex = snapshot.metadata.index;
    this.lastBytes = snapshot.data.length;
    this.bytesSince = 0;
  }

  /** The capture to compact the log to, once enough entries followed it; it is handed out once. */
  takeCompaction(appliedIndex: number): TakenSnapshot | undefined {
    const held = this.held;
    if (held === undefined || appliedIndex < held.metadata.index + this.opts.keepEntries) return undefined;
    this.held = undefined;
    return held;
  }
}
