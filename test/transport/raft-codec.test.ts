// Raft codec: core Message <-> proto RaftMessage round trips through real protobuf bytes, snapshot
// chunking and reassembly, and typed errors for malformed or oversized input.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ShoalError } from "../../src/base/errors.js";
import { RaftMessage, type EntryType, type RaftMessageType } from "../../src/proto/shoal/v1/raft.js";
import type { Message } from "../../src/raft/core/types.js";
import {
  messageFromProto,
  messageToProto,
  SnapshotAssembler,
  snapshotToChunks,
  type WireMessage,
} from "../../src/transport/raft-codec.js";

// The codec mirrors the core's types structurally: both directions must typecheck without casts.
const toWire = (m: Message): WireMessage => m;
const toCore = (m: WireMessage): Message => m;
void toWire;
void toCore;

const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const memberId = fc.bigInt({ min: 1n, max: (1n << 64n) - 1n });
const bytes = (maxLength: number) => fc.uint8Array({ maxLength });
const entry = fc.record({ term: u53, index: u53, type: fc.constantFrom(0 as const, 1 as const), data: bytes(64) });
const nonSnapshotType = fc.constantFrom(1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15) as fc.Arbitrary<Exclude<WireMessage["type"], 9>>;
const message = fc.record({
  type: nonSnapshotType,
  to: memberId,
  from: memberId,
  term: u53,
  logTerm: u53,
  index: u53,
  entries: fc.array(entry, { maxLength: 5 }),
  commit: u53,
  reject: fc.boolean(),
  rejectHint: u53,
  context: bytes(32),
});
const confState = fc.record({ voters: fc.array(memberId, { maxLength: 5 }), learners: fc.array(memberId, { maxLength: 3 }) });

function throughBytes(p: RaftMessage): RaftMessage {
  return RaftMessage.decode(RaftMessage.encode(p).finish());
}

function normalise<T>(value: T): T {
  // Compare byte fields by content: decoded ones are views of another buffer type.
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v)));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ShoalError, `expected a ShoalError, got ${String(err)}`);
    return err.code;
  }
  return undefined;
}

test("non-snapshot messages round-trip through protobuf bytes", () => {
  fc.assert(
    fc.property(message, (m) => {
      const back = messageFromProto(throughBytes(messageToProto(m)));
      assert.deepEqual(normalise(back), normalise(m));
      assert.ok(back.context instanceof Uint8Array);
    }),
    { numRuns: 300 },
  );
});

test("snapshot messages round-trip through chunks of any size", () => {
  fc.assert(
    fc.property(
      message,
      fc.record({ index: u53, term: u53, confState }),
      bytes(5000),
      fc.integer({ min: 1, max: 1500 }),
      (m, metadata, data, chunkBytes) => {
        const snap: WireMessage = { ...m, type: 9, entries: [], snapshot: { metadata, data } };
        const chunks = snapshotToChunks(snap, chunkBytes);
        assert.equal(chunks.length, Math.max(1, Math.ceil(data.length / chunkBytes)));
        const assembler = new SnapshotAssembler({ maxTotalBytes: 10_000, maxChunkBytes: chunkBytes });
        let result: WireMessage | undefined;
        for (const c of chunks) {
          assert.equal(result, undefined, "nothing before the last chunk");
          result = assembler.push(throughBytes(c));
        }
        assembler.finish();
        assert.deepEqual(normalise(result), normalise(snap));
      },
    ),
    { numRuns: 200 },
  );
});

test("a large snapshot is cut into chunks of at most 1 MiB", () => {
  const data = new Uint8Array(2.5 * 1024 * 1024).fill(7);
  const snap: WireMessage = {
    type: 9, to: 2n, from: 1n, term: 3, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: new Uint8Array(),
    snapshot: { metadata: { index: 10, term: 3, confState: { voters: [1n, 2n], learners: [] } }, data },
  };
  const chunks = snapshotToChunks(snap);
  assert.deepEqual(chunks.map((c) => c.snapshotChunk.length), [1048576, 1048576, 524288]);
  assert.ok(chunks.every((c) => RaftMessage.encode(c).finish().length < 1.1 * 1024 * 1024));
  assert.equal(codeOf(() => messageToProto(snap)), "INVALID_ARGUMENT");
});

function sampleChunks(size = 3000, chunkBytes = 1000) {
  const snap: WireMessage = {
    type: 9, to: 2n, from: 1n, term: 3, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: new Uint8Array(),
    snapshot: { metadata: { index: 10, term: 3, confState: { voters: [1n, 2n], learners: [3n] } }, data: new Uint8Array(size).fill(1) },
  };
  return snapshotToChunks(snap, chunkBytes).map(throughBytes);
}

function feed(chunks: RaftMessage[], opts = { maxTotalBytes: 1_000_000 }): string | undefined {
  const a = new SnapshotAssembler(opts);
  return codeOf(() => {
    for (const c of chunks) a.push(c);
    a.finish();
  });
}

test("reassembly refuses bad offsets, reordering, gaps and early ends", () => {
  const [c0, c1, c2] = sampleChunks();
  assert.equal(feed([c0!, c1!, c2!]), undefined);
  assert.equal(feed([c0!, c2!, c1!]), "INVALID_ARGUMENT", "out of order");
  assert.equal(feed([c1!, c0!, c2!]), "INVALID_ARGUMENT", "not starting at 0");
  assert.equal(feed([c0!, c0!, c1!, c2!]), "INVALID_ARGUMENT", "duplicate");
  assert.equal(feed([c0!, c1!]), "INVALID_ARGUMENT", "stream ended early");
  assert.equal(feed([c0!, { ...c1!, snapshotOffset: 999n }, c2!]), "INVALID_ARGUMENT", "overlapping offset");
  assert.equal(feed([c0!, { ...c1!, snapshotDone: true }]), "INVALID_ARGUMENT", "done too early");
  assert.equal(feed([c0!, c1!, { ...c2!, snapshotDone: false }]), "INVALID_ARGUMENT", "last chunk not marked");
  assert.equal(feed([c0!, c1!, c2!, c2!]), "INVALID_ARGUMENT", "chunk after the last");
  assert.equal(feed([c0!, { ...c1!, from: 9n }, c2!]), "INVALID_ARGUMENT", "other sender");
  assert.equal(feed([c0!, { ...c1!, snapshotTotalBytes: 4000n }, c2!]), "INVALID_ARGUMENT", "total changed");
  assert.equal(feed([c0!, { ...c1!, snapshot: { ...c1!.snapshot!, index: 11n } }, c2!]), "INVALID_ARGUMENT", "metadata changed");
  assert.equal(feed([{ ...c0!, snapshot: undefined }]), "INVALID_ARGUMENT", "no metadata");
  assert.equal(feed([{ ...c0!, type: 1 }]), "INVALID_ARGUMENT", "wrong type");
  assert.equal(feed([c0!, { ...c1!, snapshotChunk: Buffer.alloc(0) }]), "INVALID_ARGUMENT", "empty middle chunk");
  assert.equal(feed([c0!, c1!, { ...c2!, snapshotChunk: Buffer.alloc(1500) }]), "INVALID_ARGUMENT", "more than announced");
});

test("reassembly refuses oversize snapshots and chunks with MESSAGE_TOO_LARGE", () => {
  const chunks = sampleChunks();
  assert.equal(feed(chunks, { maxTotalBytes: 2999 }), "MESSAGE_TOO_LARGE");
  const a = new SnapshotAssembler({ maxTotalBytes: 10_000, maxChunkBytes: 500 });
  assert.equal(codeOf(() => a.push(chunks[0]!)), "MESSAGE_TOO_LARGE");
  // A lie about the total is refused before any byte is buffered.
  const huge = { ...chunks[0]!, snapshotTotalBytes: 1n << 62n };
  assert.equal(feed([huge]), "MESSAGE_TOO_LARGE");
});

test("received messages with garbage fields are typed errors", () => {
  const good = messageToProto({ type: 1, to: 2n, from: 1n, term: 1, logTerm: 1, index: 1, entries: [], commit: 1, reject: false, rejectHint: 0, context: new Uint8Array() });
  assert.equal(codeOf(() => messageFromProto(good)), undefined);
  assert.equal(codeOf(() => messageFromProto({ ...good, type: 0 })), "INVALID_ARGUMENT");
  assert.equal(codeOf(() => messageFromProto({ ...good, type: 99 as RaftMessageType })), "INVALID_ARGUMENT");
  assert.equal(codeOf(() => messageFromProto({ ...good, to: 0n })), "INVALID_ARGUMENT");
  assert.equal(codeOf(() => messageFromProto({ ...good, term: 1n << 60n })), "INVALID_ARGUMENT");
  assert.equal(codeOf(() => messageFromProto({ ...good, entries: [{ term: 1n, index: 1n, type: 7 as EntryType, data: Buffer.alloc(0) }] })), "INVALID_ARGUMENT");
  assert.equal(codeOf(() => messageFromProto({ ...good, snapshotChunk: Buffer.from("x") })), "INVALID_ARGUMENT");
  assert.equal(codeOf(() => messageToProto({ ...messageFromProto(good), term: -1 })), "INVALID_ARGUMENT");
  assert.equal(codeOf(() => messageToProto({ ...messageFromProto(good), from: 0n })), "INVALID_ARGUMENT");
  // Random bytes either fail to decode or decode into something the codec judges, never a crash of another kind.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
      let decoded: RaftMessage;
      try {
        decoded = RaftMessage.decode(raw);
      } catch {
        return;
      }
      try {
        messageFromProto(decoded);
      } catch (err) {
        assert.ok(err instanceof ShoalError && err.code === "INVALID_ARGUMENT");
      }
    }),
    { numRuns: 500 },
  );
});
