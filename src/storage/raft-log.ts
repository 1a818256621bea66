// Durable Raft log storage (DESIGN.md §4) on top of the EncryptedStore: entries, hard state and the
// last snapshot, each sealed with the DEK. Every `save` is ONE atomic classic-level batch written
// with sync:true, so a crash leaves the state before or after a Ready, never a mix. Recovery
// checks the log's shape and stops with RAFT_LOG_CORRUPT rather than hand a damaged log to Raft.
//
// Storage is layer 1 and may not import src/raft, so the types below mirror src/raft/core/types.ts
// structurally (Entry, HardState, SnapshotMetadata).
//
// Key layout (the bytes 0x01–0x0f are reserved for this module in the shared store):
//   0x01 ‖ index u64 BE      an entry         [ver 1][type u8][term u64][index u64][data…]
//   0x02                     the hard state   [ver 1][term u64][vote u64][commit u64]
//   0x03                     snapshot meta    [ver 1][index u64][term u64][data bytes u64]
//                                             [chunk bytes u32][chunk count u32]
//                                             [voters n u32][n × u64][learners n u32][n × u64]
//   0x04 ‖ chunk u32 BE      snapshot data, in chunks of at most 1 MiB
import { ShoalError, isShoalError } from "../base/errors.js";
import type { EncryptedStore, StoreOp } from "./encrypted-store.js";

export interface RaftLogEntry {
  term: number;
  index: number;
  /** EntryType of src/raft/core/types.ts (0 Normal, 1 ConfChange); stored as one byte. */
  type: number;
  data: Uint8Array;
}

export interface RaftHardState {
  term: number;
  vote: bigint;
  commit: number;
}

export interface RaftConfState {
  voters: bigint[];
  learners: bigint[];
}

export interface RaftSnapshotMetadata {
  index: number;
  term: number;
  confState: RaftConfState;
}

export interface RaftLogSnapshot {
  metadata: RaftSnapshotMetadata;
  data: Uint8Array;
}

export interface LoadedRaftLog {
  hardState: RaftHardState;
  snapshot?: { metadata: RaftSnapshotMetadata; data: Buffer };
  /** Every stored entry after the snapshot, contiguous from firstIndex(). */
  entries: RaftLogEntry[];
}

export interface RaftLogUpdate {
  hardState?: RaftHardState;
  /** Entries to append; a stored suffix from entries[0].index on is replaced (conflict truncation). */
  entries: RaftLogEntry[];
  /** A snapshot received from the leader: stored before `entries`, and the log is cut at its index. */
  snapshot?: RaftLogSnapshot;
}

export interface RaftLogOptions {
  /** How many of the newest entries are kept in memory for entries()/term(). Default 4096. */
  tailCacheEntries?: number;
  /** Snapshot data chunk size; at most (and by default) 1 MiB. */
  snapshotChunkBytes?: number;
}

const PREFIX_ENTRY = 0x01;
const PREFIX_HARD_STATE = 0x02;
const PREFIX_SNAPSHOT_META = 0x03;
const PREFIX_SNAPSHOT_CHUNK = 0x04;
const VALUE_VERSION = 1;
const ENTRY_HEADER_BYTES = 1 + 1 + 8 + 8;
const HARD_STATE_BYTES = 1 + 8 + 8 + 8;
export const MAX_SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
const DEFAULT_TAIL_CACHE_ENTRIES = 4096;
const U32 = 2 ** 32;

const HARD_STATE_KEY = Buffer.from([PREFIX_HARD_STATE]);
const SNAPSHOT_META_KEY = Buffer.from([PREFIX_SNAPSHOT_META]);
const ENTRY_RANGE_END = Buffer.from([PREFIX_ENTRY + 1]);
const CHUNK_RANGE_END = Buffer.from([PREFIX_SNAPSHOT_CHUNK + 1]);

function corrupt(message: string, cause?: unknown): ShoalError {
  return new ShoalError("RAFT_LOG_CORRUPT", `the raft log is corrupt: ${message}; this manager must not run on it: remove it from the cluster and rejoin it, or restore the data directory from a backup`, cause === undefined ? undefined : { cause });
}

function misuse(message: string): ShoalError {
  return new ShoalError("RAFT_INVARIANT", `raft log storage refused an update: ${message}`);
}

function writeU64(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / U32), offset);
  buf.writeUInt32BE(value % U32, offset + 4);
}

function readU64(buf: Buffer, offset: number): number {
  const high = buf.readUInt32BE(offset);
  if (high >= 2 ** 21) throw corrupt(`a stored number at byte ${offset} exceeds 2^53`);
  return high * U32 + buf.readUInt32BE(offset + 4);
}

function checkIndex(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw misuse(`${what} must be a non-negative safe integer, got ${value}`);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function raftEntryKey(index: number): Buffer {
  const key = Buffer.allocUnsafe(9);
  key[0] = PREFIX_ENTRY;
  writeU64(key, 1, index);
  return key;
}

function snapshotChunkKey(chunk: number): Buffer {
  const key = Buffer.allocUnsafe(5);
  key[0] = PREFIX_SNAPSHOT_CHUNK;
  key.writeUInt32BE(chunk, 1);
  return key;
}

/** Exported for tests that plant a damaged log. */
export function encodeRaftEntry(entry: RaftLogEntry): Buffer {
  const data = asBuffer(entry.data);
  const out = Buffer.allocUnsafe(ENTRY_HEADER_BYTES + data.length);
  out[0] = VALUE_VERSION;
  out[1] = entry.type;
  writeU64(out, 2, entry.term);
  writeU64(out, 10, entry.index);
  data.copy(out, ENTRY_HEADER_BYTES);
  return out;
}

function decodeEntry(value: Buffer, where: string): RaftLogEntry {
  if (value.length < ENTRY_HEADER_BYTES || value[0] !== VALUE_VERSION) throw corrupt(`${where} is not an entry record`);
  return { type: value[1]!, term: readU64(value, 2), index: readU64(value, 10), data: value.subarray(ENTRY_HEADER_BYTES) };
}

function encodeHardState(hs: RaftHardState): Buffer {
  const out = Buffer.allocUnsafe(HARD_STATE_BYTES);
  out[0] = VALUE_VERSION;
  writeU64(out, 1, hs.term);
  out.writeBigUInt64BE(hs.vote, 9);
  writeU64(out, 17, hs.commit);
  return out;
}

function decodeHardState(value: Buffer): RaftHardState {
  if (value.length !== HARD_STATE_BYTES || value[0] !== VALUE_VERSION) throw corrupt("the hard state record is malformed");
  return { term: readU64(value, 1), vote: value.readBigUInt64BE(9), commit: readU64(value, 17) };
}

interface StoredSnapshotMeta {
  metadata: RaftSnapshotMetadata;
  dataBytes: number;
  chunkBytes: number;
  chunkCount: number;
}

function encodeSnapshotMeta(meta: StoredSnapshotMeta): Buffer {
  const { voters, learners } = meta.metadata.confState;
  const out = Buffer.allocUnsafe(1 + 8 + 8 + 8 + 4 + 4 + 4 + 8 * voters.length + 4 + 8 * learners.length);
  let at = 0;
  out[at++] = VALUE_VERSION;
  writeU64(out, at, meta.metadata.index);
  writeU64(out, (at += 8), meta.metadata.term);
  writeU64(out, (at += 8), meta.dataBytes);
  out.writeUInt32BE(meta.chunkBytes, (at += 8));
  out.writeUInt32BE(meta.chunkCount, (at += 4));
  out.writeUInt32BE(voters.length, (at += 4));
  at += 4;
  for (const id of voters) at = out.writeBigUInt64BE(id, at);
  at = out.writeUInt32BE(learners.length, at);
  for (const id of learners) at = out.writeBigUInt64BE(id, at);
  return out;
}

function decodeSnapshotMeta(value: Buffer): StoredSnapshotMeta {
  const bad = (): ShoalError => corrupt("the snapshot metadata record is malformed");
  if (value.length < 1 + 8 + 8 + 8 + 4 + 4 + 4 + 4 || value[0] !== VALUE_VERSION) throw bad();
  let at = 1;
  const index = readU64(value, at);
  const term = readU64(value, (at += 8));
  const dataBytes = readU64(value, (at += 8));
  const chunkBytes = value.readUInt32BE((at += 8));
  const chunkCount = value.readUInt32BE((at += 4));
  const ids = (): bigint[] => {
    if (at + 4 > value.length) throw bad();
    const n = value.readUInt32BE(at);
    at += 4;
    if (at + 8 * n > value.length) throw bad();
    const out: bigint[] = [];
    for (let i = 0; i < n; i++, at += 8) out.push(value.readBigUInt64BE(at));
    return out;
  };
  at += 4;
  const voters = ids();
  const learners = ids();
  if (at !== value.length) throw bad();
  if (chunkBytes === 0 || chunkCount !== Math.ceil(dataBytes / chunkBytes)) throw corrupt("the snapshot metadata's chunk count does not match its size");
  return { metadata: { index, term, confState: { voters, learners } }, dataBytes, chunkBytes, chunkCount };
}

/** The persistent Raft log. Calls are serialized; entries handed in or out must not be mutated. */
export class RaftLogStorage {
  private readonly store: EncryptedStore;
  private readonly tailCacheEntries: number;
  private readonly chunkBytes: number;
  private hardState: RaftHardState = { term: 0, vote: 0n, commit: 0 };
  private snapIndex = 0;
  private snapTerm = 0;
  private snapChunkCount = 0;
  private hasSnapshot = false;
  private last = 0;
  /** The newest entries, contiguous and ending at `last`. */
  private cache: RaftLogEntry[] = [];
  private recovered: LoadedRaftLog | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private failure: ShoalError | undefined;

  private constructor(store: EncryptedStore, opts: RaftLogOptions) {
    this.store = store;
    this.tailCacheEntries = Math.max(1, opts.tailCacheEntries ?? DEFAULT_TAIL_CACHE_ENTRIES);
    this.chunkBytes = opts.snapshotChunkBytes ?? MAX_SNAPSHOT_CHUNK_BYTES;
    if (!(Number.isInteger(this.chunkBytes) && this.chunkBytes >= 1 && this.chunkBytes <= MAX_SNAPSHOT_CHUNK_BYTES)) {
      throw new ShoalError("INVALID_ARGUMENT", `snapshotChunkBytes must be an integer in [1, ${MAX_SNAPSHOT_CHUNK_BYTES}]`);
    }
  }

  /** Opens the log and runs recovery (RAFT_LOG_CORRUPT stops it); `load()` then returns the result. */
  static async open(store: EncryptedStore, opts: RaftLogOptions = {}): Promise<RaftLogStorage> {
    const log = new RaftLogStorage(store, opts);
    log.recovered = await log.recover();
    return log;
  }

  /** What stable storage holds, for a restarting node. */
  async load(): Promise<LoadedRaftLog> {
    return this.serialized(async () => {
      const ready = this.recovered;
      this.recovered = undefined;
      return ready ?? (await this.recover());
    });
  }

  firstIndex(): number {
    return this.snapIndex + 1;
  }

  lastIndex(): number {
    return this.last;
  }

  currentHardState(): RaftHardState {
    return { ...this.hardState };
  }

  /** Metadata of the stored snapshot, if any. */
  snapshotMetadata(): RaftSnapshotMetadata | undefined {
    return this.hasSnapshot ? { index: this.snapIndex, term: this.snapTerm, confState: this.storedConfState } : undefined;
  }
  private storedConfState: RaftConfState = { voters: [], learners: [] };

  /**
   * Entries in [lo, hi), at most `maxBytes` of data (but at least one entry). lo below firstIndex()
   * → FAILED_PRECONDITION (compacted); hi above lastIndex() + 1 → INVALID_ARGUMENT.
   */
  async entries(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Promise<RaftLogEntry[]> {
    return this.serialized(async () => {
      if (lo < this.firstIndex()) throw new ShoalError("FAILED_PRECONDITION", `entries before ${this.firstIndex()} were compacted into a snapshot`);
      if (hi > this.last + 1 || hi < lo) throw new ShoalError("INVALID_ARGUMENT", `entries [${lo}, ${hi}) are outside the log, which ends at ${this.last}`);
      let out: RaftLogEntry[];
      const cacheStart = this.cache.length > 0 ? this.cache[0]!.index : this.last + 1;
      if (lo >= cacheStart) {
        out = this.cache.slice(lo - cacheStart, hi - cacheStart);
      } else {
        out = await this.readEntries(lo, hi);
      }
      return limitBytes(out, maxBytes);
    });
  }

  /** The term of entry `index`, or undefined when it was compacted away or is beyond the log. */
  async term(index: number): Promise<number | undefined> {
    return this.serialized(() => this.termAt(index));
  }

  /** Persists one Ready: snapshot, then entries (replacing a conflicting suffix), then hard state. */
  async save(update: RaftLogUpdate): Promise<void> {
    return this.serialized(async () => {
      const ops: StoreOp[] = [];
      let snapIndex = this.snapIndex;
      let last = this.last;
      let cache = this.cache;
      let snapshotState: { meta: StoredSnapshotMeta } | undefined;

      if (update.snapshot !== undefined) {
        const meta = update.snapshot.metadata;
        checkIndex(meta.index, "snapshot index");
        checkIndex(meta.term, "snapshot term");
        if (meta.index < this.snapIndex) throw misuse(`snapshot at ${meta.index} is older than the stored one at ${this.snapIndex}`);
        // Raft §7: keep the entries after the snapshot only if the log already holds its last entry.
        const keepSuffix = meta.index <= this.last && (await this.termAt(meta.index)) === meta.term;
        const cutTo = keepSuffix ? meta.index : this.last;
        for (let i = this.snapIndex + 1; i <= cutTo; i++) ops.push({ type: "del", key: raftEntryKey(i) });
        snapshotState = { meta: this.snapshotOps(update.snapshot, ops) };
        snapIndex = meta.index;
        last = keepSuffix ? this.last : meta.index;
        cache = keepSuffix ? cache.filter((e) => e.index > meta.index) : [];
      }

      const entries = update.entries;
      if (entries.length > 0) {
        const first = entries[0]!.index;
        checkIndex(first, "entry index");
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i]!;
          checkIndex(e.term, "entry term");
          if (e.index !== first + i) throw misuse(`entries are not contiguous: position ${i} holds index ${e.index}, expected ${first + i}`);
          if (!(Number.isInteger(e.type) && e.type >= 0 && e.type <= 255)) throw misuse(`entry ${e.index} has type ${e.type}, outside 0..255`);
          if (i > 0 && e.term < entries[i - 1]!.term) throw misuse(`entry ${e.index} has a lower term than the entry before it`);
        }
        if (first <= snapIndex) throw misuse(`entry ${first} is at or below the snapshot index ${snapIndex} and cannot be rewritten`);
        if (first > last + 1) throw misuse(`entry ${first} would leave a gap after the last stored entry ${last}`);
        const newLast = entries[entries.length - 1]!.index;
        for (let i = newLast + 1; i <= last; i++) ops.push({ type: "del", key: raftEntryKey(i) });
        for (const e of entries) ops.push({ type: "put", key: raftEntryKey(e.index), value: encodeRaftEntry(e) });
        const kept = cache.length > 0 && cache[0]!.index < first ? cache.slice(0, first - cache[0]!.index) : [];
        cache = kept.concat(entries);
        last = newLast;
      }

      if (update.hardState !== undefined) {
        checkIndex(update.hardState.term, "hard state term");
        checkIndex(update.hardState.commit, "hard state commit");
        if (update.hardState.vote < 0n || update.hardState.vote >= 2n ** 64n) throw misuse("hard state vote is not a 64-bit unsigned integer");
        ops.push({ type: "put", key: HARD_STATE_KEY, value: encodeHardState(update.hardState) });
      }
      if (ops.length === 0) return;

      await this.store.batch(ops, { sync: true });

      if (snapshotState !== undefined) this.adoptSnapshot(snapshotState.meta);
      if (update.hardState !== undefined) this.hardState = { ...update.hardState };
      this.last = last;
      this.cache = this.trimmed(cache);
    });
  }

  /** Stores a snapshot the local state machine took and deletes the entries it covers. */
  async compact(snapshot: RaftLogSnapshot): Promise<void> {
    return this.serialized(async () => {
      const meta = snapshot.metadata;
      checkIndex(meta.index, "snapshot index");
      if (meta.index < this.snapIndex) throw misuse(`cannot compact to ${meta.index}: the log is already compacted to ${this.snapIndex}`);
      if (meta.index > this.last) throw misuse(`cannot compact to ${meta.index}: the log ends at ${this.last}`);
      const term = await this.termAt(meta.index);
      if (term !== meta.term) throw misuse(`snapshot term ${meta.term} does not match the log's term ${term} at index ${meta.index}`);
      const ops: StoreOp[] = [];
      for (let i = this.snapIndex + 1; i <= meta.index; i++) ops.push({ type: "del", key: raftEntryKey(i) });
      const stored = this.snapshotOps(snapshot, ops);
      await this.store.batch(ops, { sync: true });
      this.adoptSnapshot(stored);
      this.cache = this.cache.filter((e) => e.index > meta.index);
    });
  }

  // ---- internals ----

  private async serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The newest `tailCacheEntries` of `cache`, always a fresh array (callers may hold the input). */
  private trimmed(cache: RaftLogEntry[]): RaftLogEntry[] {
    return cache.slice(Math.max(0, cache.length - this.tailCacheEntries));
  }

  /** Adds the ops that store `snapshot` (meta, chunks, removal of stale chunks) and returns its meta. */
  private snapshotOps(snapshot: RaftLogSnapshot, ops: StoreOp[]): StoredSnapshotMeta {
    const data = asBuffer(snapshot.data);
    for (const id of [...snapshot.metadata.confState.voters, ...snapshot.metadata.confState.learners]) {
      if (id <= 0n || id >= 2n ** 64n) throw misuse(`member ID ${id} is not a non-zero 64-bit integer`);
    }
    const chunkCount = Math.ceil(data.length / this.chunkBytes);
    const meta: StoredSnapshotMeta = {
      metadata: { index: snapshot.metadata.index, term: snapshot.metadata.term, confState: { voters: [...snapshot.metadata.confState.voters], learners: [...snapshot.metadata.confState.learners] } },
      dataBytes: data.length,
      chunkBytes: this.chunkBytes,
      chunkCount,
    };
    ops.push({ type: "put", key: SNAPSHOT_META_KEY, value: encodeSnapshotMeta(meta) });
    for (let c = 0; c < chunkCount; c++) {
      ops.push({ type: "put", key: snapshotChunkKey(c), value: data.subarray(c * this.chunkBytes, (c + 1) * this.chunkBytes) });
    }
    for (let c = chunkCount; c < this.snapChunkCount; c++) ops.push({ type: "del", key: snapshotChunkKey(c) });
    return meta;
  }

  private adoptSnapshot(meta: StoredSnapshotMeta): void {
    this.hasSnapshot = true;
    this.snapIndex = meta.metadata.index;
    this.snapTerm = meta.metadata.term;
    this.snapChunkCount = meta.chunkCount;
    this.storedConfState = meta.metadata.confState;
    if (this.last < this.snapIndex) this.last = this.snapIndex;
  }

  private async termAt(index: number): Promise<number | undefined> {
    if (index === this.snapIndex) return this.snapTerm;
    if (index < this.snapIndex || index > this.last) return undefined;
    const cacheStart = this.cache.length > 0 ? this.cache[0]!.index : this.last + 1;
    if (index >= cacheStart) return this.cache[index - cacheStart]!.term;
    const [entry] = await this.readEntries(index, index + 1);
    return entry?.term;
  }

  /** Reads [lo, hi) from the store and checks it is exactly those entries. */
  private async readEntries(lo: number, hi: number): Promise<RaftLogEntry[]> {
    const out: RaftLogEntry[] = [];
    await this.guard(async () => {
      for await (const [key, value] of this.store.iterate({ gte: raftEntryKey(lo), lt: raftEntryKey(hi) })) {
        const expected = lo + out.length;
        const entry = decodeEntry(value, `entry key ${key.toString("hex")}`);
        if (entry.index !== readU64(key, 1)) throw corrupt(`the entry stored under index ${readU64(key, 1)} says it is index ${entry.index}`);
        if (entry.index !== expected) throw corrupt(`entry ${expected} is missing (found ${entry.index})`);
        out.push(entry);
      }
    });
    if (out.length !== hi - lo) throw this.fail(corrupt(`entries ${lo + out.length}..${hi - 1} are missing`));
    return out;
  }

  private fail(err: ShoalError): ShoalError {
    this.failure = err;
    return err;
  }

  /** Runs a read; a value that does not open or a malformed record stops this log for good. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isShoalError(err, "RAFT_LOG_CORRUPT")) throw this.fail(err);
      if (isShoalError(err, "STORE_CORRUPT")) throw this.fail(corrupt(err.message, err));
      throw err;
    }
  }

  private async recover(): Promise<LoadedRaftLog> {
    return this.guard(async () => {
      const hsValue = await this.store.get(HARD_STATE_KEY);
      const hardState = hsValue === undefined ? { term: 0, vote: 0n, commit: 0 } : decodeHardState(hsValue);

      let snapshot: LoadedRaftLog["snapshot"];
      let meta: StoredSnapshotMeta | undefined;
      const metaValue = await this.store.get(SNAPSHOT_META_KEY);
      if (metaValue !== undefined) {
        meta = decodeSnapshotMeta(metaValue);
        const chunks: Buffer[] = [];
        for await (const [key, value] of this.store.iterate({ gte: snapshotChunkKey(0), lt: CHUNK_RANGE_END })) {
          const chunk = key.length === 5 ? key.readUInt32BE(1) : -1;
          if (chunk !== chunks.length) throw corrupt(`snapshot chunk ${chunks.length} is missing or misplaced (found key ${key.toString("hex")})`);
          const expectedBytes = chunk < meta.chunkCount - 1 ? meta.chunkBytes : meta.dataBytes - meta.chunkBytes * (meta.chunkCount - 1);
          if (chunk >= meta.chunkCount || value.length !== expectedBytes) throw corrupt(`snapshot chunk ${chunk} has the wrong size or should not exist`);
          chunks.push(value);
        }
        if (chunks.length !== meta.chunkCount) throw corrupt(`the snapshot has ${chunks.length} of its ${meta.chunkCount} chunks`);
        snapshot = { metadata: meta.metadata, data: Buffer.concat(chunks, meta.dataBytes) };
      } else {
        for await (const [key] of this.store.iterate({ gte: snapshotChunkKey(0), lt: CHUNK_RANGE_END, limit: 1 })) {
          throw corrupt(`snapshot chunk ${key.toString("hex")} exists without snapshot metadata`);
        }
      }

      const snapIndex = meta?.metadata.index ?? 0;
      const snapTerm = meta?.metadata.term ?? 0;
      const entries: RaftLogEntry[] = [];
      let prevTerm = snapTerm;
      for await (const [key, value] of this.store.iterate({ gt: Buffer.from([PREFIX_ENTRY]), lt: ENTRY_RANGE_END })) {
        if (key.length !== 9) throw corrupt(`entry key ${key.toString("hex")} is not 9 bytes`);
        const keyIndex = readU64(key, 1);
        const entry = decodeEntry(value, `entry ${keyIndex}`);
        if (entry.index !== keyIndex) throw corrupt(`the entry stored under index ${keyIndex} says it is index ${entry.index}`);
        const expected = snapIndex + 1 + entries.length;
        if (keyIndex < expected) throw corrupt(`entry ${keyIndex} is at or below the snapshot index ${snapIndex}`);
        if (keyIndex > expected) throw corrupt(`entries ${expected}..${keyIndex - 1} are missing (a gap in the log)`);
        if (entry.term < prevTerm) throw corrupt(`entry ${keyIndex} has term ${entry.term}, lower than the ${prevTerm} before it`);
        prevTerm = entry.term;
        entries.push(entry);
      }
      const last = snapIndex + entries.length;
      if (hardState.commit > last) throw corrupt(`the hard state's commit index ${hardState.commit} is beyond the last stored entry ${last}`);

      this.hardState = hardState;
      this.hasSnapshot = meta !== undefined;
      this.snapIndex = snapIndex;
      this.snapTerm = snapTerm;
      this.snapChunkCount = meta?.chunkCount ?? 0;
      this.storedConfState = meta?.metadata.confState ?? { voters: [], learners: [] };
      this.last = last;
      this.cache = this.trimmed(entries);
      return snapshot === undefined ? { hardState: { ...hardState }, entries } : { hardState: { ...hardState }, snapshot, entries };
    });
  }
}

function limitBytes(entries: RaftLogEntry[], maxBytes: number): RaftLogEntry[] {
  if (maxBytes === Number.POSITIVE_INFINITY) return entries;
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    bytes += entries[i]!.data.byteLength;
    if (bytes > maxBytes && i > 0) return entries.slice(0, i);
  }
  return entries;
}
