// The in-memory Raft log: a snapshot base, the entries after it (a stable prefix that the driver
// has persisted and an unstable suffix it has not), and the commit and applied marks.
import { ShoalError } from "../../base/errors.js";
import type { Entry, Snapshot } from "./types.js";

/** Wire overhead counted per entry when batching (term, index, type, length prefix). */
export const ENTRY_OVERHEAD_BYTES = 24;

/** Returned by `term()` for an index that is compacted or beyond the last entry. */
export const TERM_UNAVAILABLE = -1;

function violated(message: string): never {
  throw new ShoalError("RAFT_INVARIANT", `raft log invariant violated: ${message}`);
}

export class RaftLog {
  /** Index and term of the last entry folded into the snapshot (0/0 when never compacted). */
  snapIndex: number;
  snapTerm: number;
  /** entries[i] has index snapIndex + 1 + i. */
  private entries: Entry[];
  /** Highest index the driver has made durable. Entries above it are unstable. */
  stableIndex: number;
  committed: number;
  applied: number;
  /** A snapshot received from the leader that the driver has not yet persisted. */
  pendingSnapshot: Snapshot | undefined;
  /**
   * Lowest index below which the log was cut since the last ready(): entries a Ready handed out
   * above it were replaced, so its acknowledgement must not mark the replacements stable.
   */
  private cutSinceReady = Number.MAX_SAFE_INTEGER;

  constructor(snapIndex: number, snapTerm: number, entries: Entry[], committed: number) {
    this.snapIndex = snapIndex;
    this.snapTerm = snapTerm;
    this.entries = entries.slice();
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.index !== snapIndex + 1 + i) violated(`restored entries are not contiguous at position ${i} (index ${e.index})`);
      const prevTerm = i === 0 ? snapTerm : this.entries[i - 1]!.term;
      if (e.term < prevTerm) violated(`restored entry ${e.index} has term ${e.term} below the previous term ${prevTerm}`);
    }
    this.stableIndex = this.lastIndex();
    if (committed > this.lastIndex()) violated(`restored commit ${committed} is above the last index ${this.lastIndex()}`);
    this.committed = Math.max(committed, snapIndex);
    this.applied = snapIndex;
    this.pendingSnapshot = undefined;
  }

  firstIndex(): number {
    return this.snapIndex + 1;
  }

  lastIndex(): number {
    return this.snapIndex + this.entries.length;
  }

  lastTerm(): number {
    const n = this.entries.length;
    return n === 0 ? this.snapTerm : this.entries[n - 1]!.term;
  }

  /** Term of the entry at `index`, or TERM_UNAVAILABLE if it is compacted or not yet appended. */
  term(index: number): number {
    if (index === this.snapIndex) return this.snapTerm;
    if (index < this.snapIndex || index > this.lastIndex()) return TERM_UNAVAILABLE;
    return this.entries[index - this.snapIndex - 1]!.term;
  }

  matchTerm(index: number, term: number): boolean {
    const t = this.term(index);
    return t !== TERM_UNAVAILABLE && t === term;
  }

  entryAt(index: number): Entry | undefined {
    if (index <= this.snapIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapIndex - 1];
  }

  /**
   * Entries [lo, hi) (hi exclusive, clamped to lastIndex + 1), cut before the first entry that would
   * push the total size (data plus ENTRY_OVERHEAD_BYTES each) above maxBytes (at least one entry is
   * always returned when available).
   * Returns undefined when lo is compacted.
   */
  slice(lo: number, hi: number, maxBytes: number): Entry[] | undefined {
    if (lo <= this.snapIndex) return undefined;
    const end = Math.min(hi, this.lastIndex() + 1);
    if (lo >= end) return [];
    const base = this.snapIndex + 1;
    let bytes = 0;
    let stop = end;
    for (let i = lo; i < end; i++) {
      bytes += this.entries[i - base]!.data.length + ENTRY_OVERHEAD_BYTES;
      if (bytes > maxBytes && i > lo) {
        stop = i;
        break;
      }
    }
    return this.entries.slice(lo - base, stop - base);
  }

  /** True if a candidate's log (lastTerm, lastIndex) is at least as up to date as ours (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Leader-side append of new entries at the end. */
  appendNew(entry: Entry): void {
    if (entry.index !== this.lastIndex() + 1) violated(`appending index ${entry.index} after last index ${this.lastIndex()}`);
    if (entry.term < this.lastTerm()) violated(`appending term ${entry.term} after term ${this.lastTerm()}`);
    this.entries.push(entry);
  }

  /**
   * Follower-side append (§5.3): if our log matches (prevIndex, prevTerm), merge `ents` and return
   * the index of the last new entry; otherwise return -1. `skipTruncation` is the planted fault.
   */
  maybeAppend(prevIndex: number, prevTerm: number, leaderCommit: number, ents: Entry[], skipTruncation: boolean): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      if (conflict <= this.committed) violated(`entry ${conflict} conflicts with the committed prefix (commit ${this.committed})`);
      const from = conflict - prevIndex - 1;
      if (skipTruncation && conflict <= this.lastIndex()) this.overwriteKeepingSuffix(ents, from);
      else this.truncateAndAppend(ents, from);
    }
    this.commitTo(Math.min(leaderCommit, lastNew));
    return lastNew;
  }

  /**
   * First index in `ents` whose term differs from ours or which we do not have; 0 when all of
   * `ents` is already in our log.
   */
  private findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /** Replace everything from ents[from].index on with ents[from..]. */
  private truncateAndAppend(ents: Entry[], from: number): void {
    const first = ents[from]!.index;
    if (first <= this.snapIndex) violated(`append at ${first} reaches into the snapshot at ${this.snapIndex}`);
    if (first > this.lastIndex() + 1) violated(`append at ${first} leaves a gap after last index ${this.lastIndex()}`);
    if (first <= this.lastIndex()) this.truncateFrom(first);
    for (let i = from; i < ents.length; i++) this.appendNew(ents[i]!);
  }

  /** PLANTED FAULT skipConflictTruncation: overwrite positions in place and keep the old suffix. */
  private overwriteKeepingSuffix(ents: Entry[], from: number): void {
    const first = ents[from]!.index;
    this.cutSinceReady = Math.min(this.cutSinceReady, first - 1);
    // The kept suffix must be re-persisted after the overwritten positions, so it becomes unstable.
    this.stableIndex = Math.min(this.stableIndex, first - 1);
    for (let i = from; i < ents.length; i++) {
      const e = ents[i]!;
      const pos = e.index - this.snapIndex - 1;
      if (pos < this.entries.length) this.entries[pos] = e;
      else this.entries.push(e);
    }
  }

  /** Drop entries >= index. Never below commit. */
  truncateFrom(index: number): void {
    if (index <= this.committed) violated(`truncating from ${index} would drop committed entries (commit ${this.committed})`);
    this.entries.length = index - this.snapIndex - 1;
    if (this.stableIndex >= index) this.stableIndex = index - 1;
    this.cutSinceReady = Math.min(this.cutSinceReady, index - 1);
  }

  commitTo(index: number): boolean {
    if (index <= this.committed) return false;
    if (index > this.lastIndex()) violated(`commit ${index} is above the last index ${this.lastIndex()}`);
    this.committed = index;
    return true;
  }

  /**
   * Largest index <= `index` whose term is <= `term`, with that term (etcd's findConflictByTerm):
   * lets a rejected probe skip a whole term of divergent entries in one round trip.
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (let i = Math.min(index, this.lastIndex()); i > 0; i--) {
      const t = this.term(i);
      if (t === TERM_UNAVAILABLE) return [i, 0];
      if (t <= term) return [i, t];
    }
    return [0, 0];
  }

  unstableEntries(): Entry[] {
    if (this.stableIndex >= this.lastIndex()) return [];
    return this.entries.slice(this.stableIndex - this.snapIndex);
  }

  /** Committed, persisted, not yet applied entries. */
  nextCommitted(maxIndex: number): Entry[] {
    if (this.pendingSnapshot !== undefined) return [];
    const hi = Math.min(this.committed, this.stableIndex, maxIndex);
    if (hi <= this.applied) return [];
    return this.entries.slice(this.applied - this.snapIndex, hi - this.snapIndex);
  }

  hasNextCommitted(): boolean {
    return this.pendingSnapshot === undefined && Math.min(this.committed, this.stableIndex) > this.applied;
  }

  /** A Ready is being handed out: later cuts are measured from here. */
  markReady(): void {
    this.cutSinceReady = Number.MAX_SAFE_INTEGER;
  }

  /** The Ready whose entries ended at `index` is durable (minus anything cut since). */
  stableTo(index: number): void {
    const durable = Math.min(index, this.cutSinceReady, this.lastIndex());
    if (durable > this.stableIndex) this.stableIndex = durable;
    this.cutSinceReady = Number.MAX_SAFE_INTEGER;
  }

  appliedTo(index: number): void {
    if (index < this.applied) violated(`applied moving back from ${this.applied} to ${index}`);
    if (index > this.committed) violated(`applying ${index} beyond commit ${this.committed}`);
    this.applied = index;
  }

  /** Replace the whole log with a snapshot from the leader (held unstable until persisted). */
  restore(snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    if (index < this.committed) violated(`restoring snapshot ${index} below commit ${this.committed}`);
    this.entries = [];
    this.snapIndex = index;
    this.snapTerm = term;
    this.committed = index;
    this.stableIndex = index;
    this.cutSinceReady = Math.min(this.cutSinceReady, index);
    this.pendingSnapshot = snapshot;
  }

  snapshotPersisted(snapshot: Snapshot): void {
    if (this.pendingSnapshot === snapshot) this.pendingSnapshot = undefined;
    if (snapshot.metadata.index > this.applied) this.applied = snapshot.metadata.index;
  }

  /** Fold entries <= index into the snapshot base. */
  compact(index: number): void {
    if (index <= this.snapIndex) return;
    if (index > this.applied) violated(`compacting to ${index} beyond applied ${this.applied}`);
    if (index > this.stableIndex) violated(`compacting to ${index} beyond the stable index ${this.stableIndex}`);
    const term = this.term(index);
    this.entries.splice(0, index - this.snapIndex);
    this.snapIndex = index;
    this.snapTerm = term;
  }

  /** Whole-log consistency check (tests and debugging; O(n)). */
  checkInvariants(): void {
    let prevTerm = this.snapTerm;
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.index !== this.snapIndex + 1 + i) violated(`entry at position ${i} has index ${e.index}, expected ${this.snapIndex + 1 + i}`);
      if (e.term < prevTerm) violated(`entry ${e.index} has term ${e.term} below the previous term ${prevTerm}`);
      prevTerm = e.term;
    }
    if (this.committed > this.lastIndex()) violated(`commit ${this.committed} above last index ${this.lastIndex()}`);
    if (this.applied > this.committed) violated(`applied ${this.applied} above commit ${this.committed}`);
  }
}
