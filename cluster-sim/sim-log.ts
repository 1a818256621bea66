// RaftNode's durable log over the simulated disk: a save writes its records at once (unsynced) and
// resolves only when the simulated fsync completes, so a crash in between loses or tears them as
// the disk models. Loading verifies every synced record's checksum and refuses a corrupted log
// with RAFT_LOG_CORRUPT, as the real log must (never a silent loss of acknowledged entries).
import { ShoalError } from "../src/base/errors.js";
import type { DurableRaftLog } from "../src/raft/node/index.js";
import type { Entry, HardState, SnapshotMetadata } from "../src/raft/core/types.js";
import { cloneConfState, cloneEntry, type SimDisk } from "./disk.js";

type LoadedLog = Awaited<ReturnType<DurableRaftLog["load"]>>;
type SnapshotRecord = { metadata: SnapshotMetadata; data: Uint8Array };

/** What the simulation does around each write: check it, then complete the fsync in virtual time. */
export interface SimLogHooks {
  /** Called before a save's records reach the disk (the checkers compare them with what is stored). */
  beforeSave(update: { hardState?: HardState; entries: Entry[]; snapshot?: SnapshotRecord }): void;
  /** Called before a local compaction replaces entries with a snapshot. */
  beforeCompact(): void;
  /** Resolves once the disk's pending writes are synced; never, if the node crashes first. */
  fsync(): Promise<void>;
}

export class SimDurableLog implements DurableRaftLog {
  constructor(
    private readonly disk: SimDisk,
    private readonly hooks: SimLogHooks,
  ) {}

  async load(): Promise<LoadedLog> {
    const bad = this.disk.verifyDurable();
    if (bad !== undefined) {
      throw new ShoalError("RAFT_LOG_CORRUPT", `the raft log is corrupt: ${bad}; this manager must not run on it: remove it from the cluster and rejoin it`);
    }
    const image = this.disk.current;
    return {
      hardState: { ...image.hardState },
      ...(image.snapshot !== undefined
        ? {
            snapshot: {
              metadata: { index: image.snapshot.metadata.index, term: image.snapshot.metadata.term, confState: cloneConfState(image.snapshot.metadata.confState) },
              data: image.snapshot.data.slice(),
            },
          }
        : {}),
      entries: image.entries.map(cloneEntry),
    };
  }

  save(update: { hardState?: HardState; entries: Entry[]; snapshot?: SnapshotRecord }): Promise<void> {
    this.hooks.beforeSave(update);
    if (update.snapshot !== undefined) this.disk.write({ kind: "snapshot", snapshot: update.snapshot, keepSuffix: false });
    if (update.entries.length > 0) this.disk.write({ kind: "entries", entries: update.entries });
    if (update.hardState !== undefined) this.disk.write({ kind: "hardState", hardState: update.hardState });
    return this.hooks.fsync();
  }

  compact(snapshot: SnapshotRecord): Promise<void> {
    this.hooks.beforeCompact();
    this.disk.write({ kind: "snapshot", snapshot, keepSuffix: true });
    return this.hooks.fsync();
  }
}
