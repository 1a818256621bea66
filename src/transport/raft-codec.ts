// Raft messages on the wire: conversion between the raft core's Message (number terms and indexes,
// bigint member IDs) and the proto RaftMessage (all 64-bit), and snapshot chunking for StreamSnapshot
// with a bounded, order-checking reassembler. src/raft is a sibling layer, so its types are mirrored
// structurally here (same field names and enum numbers); the daemon passes core Messages straight in.
import { ShoalError } from "../base/errors.js";
import {
  EntryType as ProtoEntryType,
  RaftMessageType,
  type ConfState as ProtoConfState,
  type Entry as ProtoEntry,
  type RaftMessage,
  type SnapshotMetadata as ProtoSnapshotMetadata,
} from "../proto/shoal/v1/raft.js";

/** MessageType numbers of src/raft/core/types.ts (= RaftMessageType in raft.proto). */
export type WireMessageType = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13 | 14 | 15;
export const SNAPSHOT_MESSAGE_TYPE = 9;
export type WireEntryType = 0 | 1;

export interface WireEntry {
  term: number;
  index: number;
  type: WireEntryType;
  data: Uint8Array;
}

export interface WireConfState {
  voters: bigint[];
  learners: bigint[];
}

export interface WireSnapshotMetadata {
  index: number;
  term: number;
  confState: WireConfState;
}

export interface WireSnapshot {
  metadata: WireSnapshotMetadata;
  data: Uint8Array;
}

/** Structurally the raft core's Message. */
export interface WireMessage {
  type: WireMessageType;
  to: bigint;
  from: bigint;
  term: number;
  logTerm: number;
  index: number;
  entries: WireEntry[];
  commit: number;
  reject: boolean;
  rejectHint: number;
  context: Uint8Array;
  snapshot?: WireSnapshot;
}

/** Snapshot data per StreamSnapshot message; keeps each message well under the 4 MiB gRPC default. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
const MAX_U64 = (1n << 64n) - 1n;

function bad(message: string): ShoalError {
  return new ShoalError("INVALID_ARGUMENT", `raft message rejected: ${message}`);
}

function u64(value: number, field: string): bigint {
  if (!Number.isSafeInteger(value) || value < 0) throw bad(`${field} must be a non-negative safe integer, got ${value}`);
  return BigInt(value);
}

function num(value: bigint, field: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${field} ${value} is out of range`);
  return Number(value);
}

function id(value: bigint, field: string, allowZero: boolean): bigint {
  if (value < 0n || value > MAX_U64 || (!allowZero && value === 0n)) throw bad(`${field} must be a non-zero 64-bit member ID`);
  return value;
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function bytesOf(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function isWireMessageType(value: number): value is WireMessageType {
  return Number.isInteger(value) && value >= 1 && value <= 15;
}

function entryToProto(e: WireEntry, i: number): ProtoEntry {
  if (e.type !== 0 && e.type !== 1) throw bad(`entries[${i}].type ${String(e.type)} is unknown`);
  return { term: u64(e.term, `entries[${i}].term`), index: u64(e.index, `entries[${i}].index`), type: e.type as number as ProtoEntryType, data: view(e.data) };
}

function entryFromProto(e: ProtoEntry, i: number): WireEntry {
  const type = e.type as number;
  if (type !== 0 && type !== 1) throw bad(`entries[${i}].type ${type} is unknown`);
  return { term: num(e.term, `entries[${i}].term`), index: num(e.index, `entries[${i}].index`), type, data: bytesOf(e.data) };
}

function confStateToProto(c: WireConfState): ProtoConfState {
  return { voters: c.voters.map((v) => id(v, "voter", false)), learners: c.learners.map((v) => id(v, "learner", false)) };
}

function confStateFromProto(c: ProtoConfState | undefined): WireConfState {
  if (!c) throw bad("snapshot metadata has no conf state");
  return { voters: c.voters.map((v) => id(v, "voter", false)), learners: c.learners.map((v) => id(v, "learner", false)) };
}

function metadataToProto(m: WireSnapshotMetadata): ProtoSnapshotMetadata {
  return { index: u64(m.index, "snapshot.index"), term: u64(m.term, "snapshot.term"), confState: confStateToProto(m.confState) };
}

function metadataFromProto(m: ProtoSnapshotMetadata | undefined): WireSnapshotMetadata {
  if (!m) throw bad("snapshot chunk has no metadata");
  return { index: num(m.index, "snapshot.index"), term: num(m.term, "snapshot.term"), confState: confStateFromProto(m.confState) };
}

function baseToProto(m: WireMessage): RaftMessage {
  if (!isWireMessageType(m.type)) throw bad(`type ${String(m.type)} is unknown`);
  return {
    type: m.type as number as RaftMessageType,
    to: id(m.to, "to", false),
    from: id(m.from, "from", false),
    term: u64(m.term, "term"),
    logTerm: u64(m.logTerm, "logTerm"),
    index: u64(m.index, "index"),
    entries: m.entries.map(entryToProto),
    commit: u64(m.commit, "commit"),
    reject: m.reject,
    rejectHint: u64(m.rejectHint, "rejectHint"),
    context: view(m.context),
    snapshot: undefined,
    snapshotOffset: 0n,
    snapshotChunk: Buffer.alloc(0),
    snapshotDone: false,
    snapshotTotalBytes: 0n,
  };
}

function baseFromProto(p: RaftMessage): WireMessage {
  const type = p.type as number;
  if (!isWireMessageType(type)) throw bad(`type ${type} is unknown`);
  return {
    type,
    to: id(p.to, "to", false),
    from: id(p.from, "from", false),
    term: num(p.term, "term"),
    logTerm: num(p.logTerm, "logTerm"),
    index: num(p.index, "index"),
    entries: p.entries.map(entryFromProto),
    commit: num(p.commit, "commit"),
    reject: p.reject,
    rejectHint: num(p.rejectHint, "rejectHint"),
    context: bytesOf(p.context),
  };
}

/** A message without a snapshot, for ProcessRaftMessages. Snapshot messages go through snapshotToChunks. */
export function messageToProto(m: WireMessage): RaftMessage {
  if (m.type === SNAPSHOT_MESSAGE_TYPE || m.snapshot !== undefined) {
    throw bad("a snapshot message must be sent as chunks over StreamSnapshot (snapshotToChunks)");
  }
  return baseToProto(m);
}

/** Validates and converts a received non-snapshot message; anything malformed is INVALID_ARGUMENT. */
export function messageFromProto(p: RaftMessage): WireMessage {
  if ((p.type as number) === SNAPSHOT_MESSAGE_TYPE || p.snapshot !== undefined || p.snapshotChunk.length > 0) {
    throw bad("snapshot data arrived outside StreamSnapshot");
  }
  return baseFromProto(p);
}

/** Splits a snapshot message into StreamSnapshot chunks of at most `chunkBytes` data each (views, no copy). */
export function snapshotToChunks(m: WireMessage, chunkBytes = SNAPSHOT_CHUNK_BYTES): RaftMessage[] {
  if (m.type !== SNAPSHOT_MESSAGE_TYPE || !m.snapshot) throw bad("snapshotToChunks needs a Snapshot message with a snapshot");
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > SNAPSHOT_CHUNK_BYTES) {
    throw new ShoalError("INVALID_ARGUMENT", `chunkBytes must be between 1 and ${SNAPSHOT_CHUNK_BYTES}`);
  }
  const base = baseToProto({ ...m, snapshot: undefined });
  const metadata = metadataToProto(m.snapshot.metadata);
  const data = view(m.snapshot.data);
  const total = data.length;
  const chunks: RaftMessage[] = [];
  for (let offset = 0; offset < total || chunks.length === 0; offset += chunkBytes) {
    const end = Math.min(total, offset + chunkBytes);
    chunks.push({
      ...base,
      // Entries ride only on the first chunk (a Snapshot message has none, but keep the rule exact).
      entries: chunks.length === 0 ? base.entries : [],
      snapshot: metadata,
      snapshotOffset: BigInt(offset),
      snapshotChunk: data.subarray(offset, end),
      snapshotDone: end === total,
      snapshotTotalBytes: BigInt(total),
    });
  }
  return chunks;
}

export interface SnapshotAssemblerOptions {
  /** Largest snapshot accepted; a larger announced or actual size is MESSAGE_TOO_LARGE. */
  maxTotalBytes: number;
  /** Largest data per chunk (default SNAPSHOT_CHUNK_BYTES). */
  maxChunkBytes?: number;
}

function sameMetadata(a: WireSnapshotMetadata, b: WireSnapshotMetadata): boolean {
  const eq = (x: bigint[], y: bigint[]): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  return a.index === b.index && a.term === b.term && eq(a.confState.voters, b.confState.voters) && eq(a.confState.learners, b.confState.learners);
}

/**
 * Reassembles one StreamSnapshot stream. Chunks must come in order with consistent offsets, one
 * sender, one total and one metadata; the first violation throws and the assembler is then spent.
 */
export class SnapshotAssembler {
  private first: { message: WireMessage; metadata: WireSnapshotMetadata; total: number } | undefined;
  private readonly parts: Buffer[] = [];
  private received = 0;
  private state: "receiving" | "done" | "failed" = "receiving";
  private readonly maxChunkBytes: number;

  constructor(private readonly opts: SnapshotAssemblerOptions) {
    if (!Number.isSafeInteger(opts.maxTotalBytes) || opts.maxTotalBytes < 0) throw new ShoalError("INVALID_ARGUMENT", "maxTotalBytes must be a non-negative integer");
    this.maxChunkBytes = opts.maxChunkBytes ?? SNAPSHOT_CHUNK_BYTES;
  }

  get receivedBytes(): number {
    return this.received;
  }

  get done(): boolean {
    return this.state === "done";
  }

  /** Adds a chunk; returns the whole Snapshot message after the last one. */
  push(chunk: RaftMessage): WireMessage | undefined {
    if (this.state !== "receiving") throw bad(this.state === "done" ? "chunk after the last snapshot chunk" : "the snapshot stream already failed");
    try {
      return this.accept(chunk);
    } catch (err) {
      this.state = "failed";
      this.parts.length = 0;
      throw err;
    }
  }

  /** Call when the stream ends: throws if the last chunk never came. */
  finish(): void {
    if (this.state !== "done") {
      this.state = "failed";
      throw bad(`the snapshot stream ended after ${this.received} bytes without its last chunk`);
    }
  }

  private accept(chunk: RaftMessage): WireMessage | undefined {
    if ((chunk.type as number) !== SNAPSHOT_MESSAGE_TYPE) throw bad("a StreamSnapshot chunk must have type Snapshot");
    if (chunk.snapshotChunk.length > this.maxChunkBytes) {
      throw new ShoalError("MESSAGE_TOO_LARGE", `snapshot chunk of ${chunk.snapshotChunk.length} bytes exceeds ${this.maxChunkBytes}`);
    }
    const metadata = metadataFromProto(chunk.snapshot);
    const totalBig = chunk.snapshotTotalBytes;
    if (totalBig > BigInt(this.opts.maxTotalBytes)) {
      throw new ShoalError("MESSAGE_TOO_LARGE", `snapshot of ${totalBig} bytes exceeds the limit of ${this.opts.maxTotalBytes}`);
    }
    const total = Number(totalBig);
    if (chunk.snapshotOffset !== BigInt(this.received)) {
      throw bad(`snapshot chunk at offset ${chunk.snapshotOffset}, expected ${this.received}`);
    }
    if (this.first === undefined) {
      this.first = { message: baseFromProto({ ...chunk, snapshot: undefined, snapshotChunk: Buffer.alloc(0) }), metadata, total };
    } else {
      const f = this.first.message;
      if (chunk.from !== f.from || chunk.to !== f.to || chunk.term !== BigInt(f.term) || total !== this.first.total || !sameMetadata(metadata, this.first.metadata)) {
        throw bad("snapshot chunks disagree on sender, term, size or metadata");
      }
      if (chunk.entries.length > 0) throw bad("only the first snapshot chunk may carry entries");
    }
    const after = this.received + chunk.snapshotChunk.length;
    if (after > total) throw bad(`snapshot chunks carry more than the announced ${total} bytes`);
    if (chunk.snapshotDone !== (after === total)) {
      throw bad(chunk.snapshotDone ? `last snapshot chunk at ${after} of ${total} bytes` : "a snapshot chunk after all bytes arrived is not marked last");
    }
    if (!chunk.snapshotDone && chunk.snapshotChunk.length === 0) throw bad("empty snapshot chunk that is not the last");
    // Copy: the chunk's buffer belongs to the decoder and may be a view into a larger frame.
    this.parts.push(Buffer.from(chunk.snapshotChunk));
    this.received = after;
    if (!chunk.snapshotDone) return undefined;
    this.state = "done";
    const data = Buffer.concat(this.parts, total);
    this.parts.length = 0;
    return { ...this.first.message, snapshot: { metadata: this.first.metadata, data: bytesOf(data) } };
  }
}
