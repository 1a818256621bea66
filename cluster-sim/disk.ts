// A simulated disk for one node: a durable image plus the writes made since the last sync. A crash
// keeps a random prefix of those writes and may tear the last one, which recovery detects by
// checksum and cuts off (so a torn entry write keeps only its leading whole entries). Every record
// keeps the checksum it was written with, so corruption of synced bytes (a different fault from a
// torn tail: the data was durable, then went bad) is found when the log is loaded.
import type { Random } from "../src/base/random.js";
import type { ConfState, Entry, HardState, RestoreState, Snapshot } from "../src/raft/core/types.js";
import { NO_NODE } from "../src/raft/core/types.js";
import { SimViolation } from "./violation.js";

export interface DiskImage {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  /** Contiguous entries after the snapshot (or from index 1). */
  entries: Entry[];
}

export type DiskWrite =
  | { kind: "entries"; entries: Entry[] }
  | { kind: "hardState"; hardState: HardState }
  /** `keepSuffix`: a local compaction keeps later entries; a snapshot from the leader replaces the log. */
  | { kind: "snapshot"; snapshot: Snapshot; keepSuffix: boolean };

export function cloneEntry(e: Entry): Entry {
  return { term: e.term, index: e.index, type: e.type, data: e.data.slice() };
}

export function cloneConfState(c: ConfState): ConfState {
  return { voters: [...c.voters], learners: [...c.learners], ...(c.removed ? { removed: [...c.removed] } : {}) };
}

export function cloneSnapshot(s: Snapshot): Snapshot {
  return {
    metadata: { index: s.metadata.index, term: s.metadata.term, confState: cloneConfState(s.metadata.confState) },
    data: s.data.slice(),
  };
}

function emptyImage(): DiskImage {
  return { hardState: { term: 0, vote: NO_NODE, commit: 0 }, snapshot: undefined, entries: [] };
}

export function snapshotIndexOf(image: DiskImage): number {
  return image.snapshot?.metadata.index ?? 0;
}

export function lastIndexOf(image: DiskImage): number {
  return snapshotIndexOf(image) + image.entries.length;
}

/** The term stored at `index`, or undefined when the image does not hold it (compacted or beyond the end). */
export function termAt(image: DiskImage, index: number): number | undefined {
  const snapIndex = snapshotIndexOf(image);
  if (index === snapIndex) return image.snapshot?.metadata.term ?? 0;
  if (index < snapIndex) return undefined;
  return image.entries[index - snapIndex - 1]?.term;
}

export function entryAt(image: DiskImage, index: number): Entry | undefined {
  const snapIndex = snapshotIndexOf(image);
  return index > snapIndex ? image.entries[index - snapIndex - 1] : undefined;
}

function applyWrite(image: DiskImage, write: DiskWrite): void {
  switch (write.kind) {
    case "hardState":
      image.hardState = { ...write.hardState };
      return;
    case "snapshot": {
      const meta = write.snapshot.metadata;
      const keep = write.keepSuffix && termAt(image, meta.index) === meta.term;
      image.entries = keep ? image.entries.filter((e) => e.index > meta.index) : [];
      image.snapshot = write.snapshot;
      return;
    }
    case "entries": {
      if (write.entries.length === 0) return;
      const first = write.entries[0]!.index;
      const last = lastIndexOf(image);
      if (first > last + 1) {
        throw new SimViolation("ready-contract", `Ready.entries start at ${first} but the stored log ends at ${last}`);
      }
      const snapIndex = snapshotIndexOf(image);
      const kept = image.entries.filter((e) => e.index < first);
      for (const e of write.entries) {
        if (e.index <= snapIndex) continue;
        if (e.index !== snapIndex + kept.length + 1) {
          throw new SimViolation("ready-contract", `Ready.entries are not contiguous at index ${e.index}`);
        }
        kept.push(e);
      }
      image.entries = kept;
      return;
    }
  }
}

function copyImage(image: DiskImage): DiskImage {
  return { hardState: { ...image.hardState }, snapshot: image.snapshot, entries: [...image.entries] };
}

/** FNV-1a over a record's bytes: enough to tell a flipped byte, which is all the simulator needs. */
function checksumOf(parts: ReadonlyArray<Uint8Array | string | number | bigint>): number {
  let h = 0x811c9dc5;
  const mix = (byte: number): void => {
    h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  };
  for (const part of parts) {
    if (part instanceof Uint8Array) for (const b of part) mix(b);
    else for (const ch of String(part)) mix(ch.charCodeAt(0) & 0xff);
    mix(0x1f);
  }
  return h;
}

function entryChecksum(e: Entry): number {
  return checksumOf([e.index, e.term, e.type, e.data]);
}

function snapshotChecksum(s: Snapshot): number {
  const c = s.metadata.confState;
  return checksumOf([s.metadata.index, s.metadata.term, c.voters.join(","), c.learners.join(","), (c.removed ?? []).join(","), s.data]);
}

export class SimDisk {
  /** The checksum each record was written with; records are owned by the disk, so keyed by object. */
  private readonly sums = new WeakMap<object, number>();
  /** What survives any crash. */
  private durableImage: DiskImage = emptyImage();
  /** What the node has written, synced or not: the durable image with `pending` applied. */
  private currentImage: DiskImage = emptyImage();
  private pending: DiskWrite[] = [];
  syncs = 0;
  tornWrites = 0;

  /** Buffers a write; entries and snapshots are cloned so later mutation by the caller cannot leak in. */
  write(write: DiskWrite): void {
    const owned: DiskWrite =
      write.kind === "entries"
        ? { kind: "entries", entries: write.entries.map(cloneEntry) }
        : write.kind === "snapshot"
          ? { kind: "snapshot", snapshot: cloneSnapshot(write.snapshot), keepSuffix: write.keepSuffix }
          : { kind: "hardState", hardState: { ...write.hardState } };
    if (owned.kind === "entries") for (const e of owned.entries) this.sums.set(e, entryChecksum(e));
    else if (owned.kind === "snapshot") this.sums.set(owned.snapshot, snapshotChecksum(owned.snapshot));
    applyWrite(this.currentImage, owned);
    this.pending.push(owned);
  }

  /** fsync: every buffered write becomes durable. */
  sync(): void {
    if (this.pending.length === 0) return;
    for (const w of this.pending) applyWrite(this.durableImage, w);
    this.pending = [];
    this.syncs++;
  }

  get unsyncedWrites(): number {
    return this.pending.length;
  }

  get durable(): Readonly<DiskImage> {
    return this.durableImage;
  }

  get current(): Readonly<DiskImage> {
    return this.currentImage;
  }

  /**
   * Power loss: a random prefix of the unsynced writes reaches the platter, and the next one may be
   * torn. Only whole entries of a torn entry write survive recovery; a torn hard-state or snapshot
   * write fails its checksum and is dropped.
   */
  crash(random: Random): void {
    const survivors = random.int(0, this.pending.length + 1);
    for (let i = 0; i < survivors; i++) applyWrite(this.durableImage, this.pending[i]!);
    const torn = this.pending[survivors];
    if (torn !== undefined && torn.kind === "entries" && random.float() < 0.5) {
      const whole = random.int(0, torn.entries.length);
      if (whole > 0) applyWrite(this.durableImage, { kind: "entries", entries: torn.entries.slice(0, whole) });
      this.tornWrites++;
    }
    this.pending = [];
    this.currentImage = copyImage(this.durableImage);
  }

  /**
   * Bit rot or a misdirected write on synced data: one byte of a durable entry (or of the snapshot)
   * flips after it was synced. Returns what was damaged, or undefined when nothing synced holds data.
   * Call it on a stopped node (after `crash`): the running node keeps its own copies in memory.
   */
  corruptSynced(random: Random): string | undefined {
    const image = this.durableImage;
    const withData = image.entries.filter((e) => e.data.length > 0);
    const targets: Array<{ bytes: Uint8Array; what: string }> = withData.map((e) => ({ bytes: e.data, what: `entry ${e.index}` }));
    if (image.snapshot !== undefined && image.snapshot.data.length > 0) targets.push({ bytes: image.snapshot.data, what: `snapshot ${image.snapshot.metadata.index}` });
    if (targets.length === 0) return undefined;
    const target = targets[random.int(0, targets.length)]!;
    const at = random.int(0, target.bytes.length);
    target.bytes[at] = target.bytes[at]! ^ (1 << random.int(0, 8));
    this.corruptions++;
    return `${target.what} byte ${at}`;
  }

  corruptions = 0;

  /** Checks every durable record against the checksum it was written with; names the first bad one. */
  verifyDurable(): string | undefined {
    const image = this.durableImage;
    if (image.snapshot !== undefined && this.sums.get(image.snapshot) !== snapshotChecksum(image.snapshot)) {
      return `the snapshot record at index ${image.snapshot.metadata.index} fails its checksum`;
    }
    for (const e of image.entries) {
      if (this.sums.get(e) !== entryChecksum(e)) return `the entry record at index ${e.index} (term ${e.term}) fails its checksum`;
    }
    return undefined;
  }

  /** What a restarted node hands to a fresh core: exactly the durable image. */
  restoreState(initialConfState: ConfState): RestoreState {
    const image = this.durableImage;
    return {
      hardState: { ...image.hardState },
      ...(image.snapshot
        ? {
            snapshot: { ...image.snapshot.metadata, confState: cloneConfState(image.snapshot.metadata.confState) },
            snapshotData: image.snapshot.data.slice(),
          }
        : {}),
      entries: image.entries.map(cloneEntry),
      initialConfState: cloneConfState(initialConfState),
    };
  }
}
