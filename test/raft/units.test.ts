// Unit tests of the core's parts: ConfChange encoding, quorum arithmetic, the in-memory log, the
// inflight ring, and the RaftCore boundary checks.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { isShoalError } from "../../src/base/errors.js";
import { SeededRandom } from "../../src/base/random.js";
import { decodeConfChange, encodeConfChange, Membership } from "../../src/raft/core/confchange.js";
import { RaftLog, TERM_UNAVAILABLE } from "../../src/raft/core/log.js";
import { Inflights } from "../../src/raft/core/progress.js";
import { committedIndex, voteResult } from "../../src/raft/core/quorum.js";
import { ConfChangeType, EntryType, RaftCore, type Entry, type RaftConfig } from "../../src/raft/core/index.js";

const isCode = (code: string) => (err: unknown) => isShoalError(err) && err.code === code;

function ents(...terms: number[]): Entry[] {
  return terms.map((term, i) => ({ term, index: i + 1, type: EntryType.Normal, data: new Uint8Array([i]) }));
}

test("ConfChange encoding round-trips and rejects damaged data", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 }), fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }), fc.uint8Array({ maxLength: 64 }), (type, nodeId, context) => {
      const cc = { type: type as ConfChangeType, nodeId, context };
      assert.deepEqual(decodeConfChange(encodeConfChange(cc)), cc);
    }),
  );
  assert.throws(() => decodeConfChange(new Uint8Array([1, 2, 3])), isCode("RAFT_LOG_CORRUPT"));
  const bad = encodeConfChange({ type: ConfChangeType.AddLearner, nodeId: 5n, context: new Uint8Array(0) });
  bad[1] = 9;
  assert.throws(() => decodeConfChange(bad), isCode("RAFT_LOG_CORRUPT"));
  assert.throws(() => encodeConfChange({ type: ConfChangeType.AddLearner, nodeId: 0n, context: new Uint8Array(0) }), isCode("INVALID_ARGUMENT"));
});

test("membership: removed IDs never return, last voter cannot be removed, apply is idempotent", () => {
  const m = new Membership({ voters: [1n], learners: [] });
  assert.match(m.refusal({ type: ConfChangeType.RemoveNode, nodeId: 1n, context: new Uint8Array(0) })!, /last voter/);
  m.apply({ type: ConfChangeType.AddLearner, nodeId: 2n, context: new Uint8Array(0) });
  m.apply({ type: ConfChangeType.AddLearner, nodeId: 2n, context: new Uint8Array(0) });
  m.apply({ type: ConfChangeType.PromoteLearner, nodeId: 2n, context: new Uint8Array(0) });
  m.apply({ type: ConfChangeType.RemoveNode, nodeId: 2n, context: new Uint8Array(0) });
  m.apply({ type: ConfChangeType.AddLearner, nodeId: 2n, context: new Uint8Array(0) });
  assert.deepEqual(m.toConfState(), { voters: [1n], learners: [], removed: [2n] });
  assert.match(m.refusal({ type: ConfChangeType.AddLearner, nodeId: 2n, context: new Uint8Array(0) })!, /never rejoin/);
});

test("committedIndex is the largest index a majority has matched", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(1000), { minLength: 1, maxLength: 7 }), (matches) => {
      const voters = matches.map((_, i) => BigInt(i + 1));
      const got = committedIndex(voters, (id) => matches[Number(id) - 1]!);
      const atLeast = (x: number): number => matches.filter((m) => m >= x).length;
      const q = Math.floor(matches.length / 2) + 1;
      assert.ok(atLeast(got) >= q, "a majority has it");
      assert.ok(atLeast(got + 1) < q, "and no larger index is on a majority");
    }),
  );
  const votes = new Map([[1n, true], [2n, false]]);
  assert.equal(voteResult([1n, 2n, 3n], votes), "pending");
  votes.set(3n, true);
  assert.equal(voteResult([1n, 2n, 3n], votes), "won");
  assert.equal(voteResult([1n, 2n, 3n], new Map([[2n, false], [3n, false]])), "lost");
});

test("log: conflicting suffix is truncated, committed entries never are", () => {
  const log = new RaftLog(0, 0, ents(1, 1, 1, 1), 2);
  const incoming: Entry[] = [{ term: 2, index: 3, type: EntryType.Normal, data: new Uint8Array(0) }];
  assert.equal(log.maybeAppend(2, 1, 3, incoming, false), 3);
  assert.equal(log.lastIndex(), 3);
  assert.equal(log.term(3), 2);
  assert.equal(log.stableIndex, 2, "the replaced suffix is unstable again");
  assert.equal(log.committed, 3);
  assert.equal(log.maybeAppend(3, 1, 3, [], false), -1, "mismatching previous term is refused");
  const bad: Entry[] = [{ term: 3, index: 2, type: EntryType.Normal, data: new Uint8Array(0) }];
  assert.throws(() => log.maybeAppend(1, 1, 3, bad, false), isCode("RAFT_INVARIANT"));
  assert.throws(() => log.commitTo(9), isCode("RAFT_INVARIANT"));
  assert.throws(() => log.appendNew({ term: 1, index: 4, type: EntryType.Normal, data: new Uint8Array(0) }), isCode("RAFT_INVARIANT"));
  assert.throws(() => log.appendNew({ term: 2, index: 6, type: EntryType.Normal, data: new Uint8Array(0) }), isCode("RAFT_INVARIANT"));
});

test("log: findConflictByTerm skips a whole divergent term; compacted terms are unavailable", () => {
  const log = new RaftLog(0, 0, ents(1, 1, 2, 2, 2, 4), 0);
  assert.deepEqual(log.findConflictByTerm(6, 3), [5, 2]);
  assert.deepEqual(log.findConflictByTerm(6, 1), [2, 1]);
  log.stableTo(6);
  log.commitTo(4);
  log.appliedTo(4);
  log.compact(3);
  assert.equal(log.term(2), TERM_UNAVAILABLE);
  assert.equal(log.term(3), 2);
  assert.equal(log.slice(3, 5, 1 << 20), undefined);
  assert.deepEqual(log.slice(4, 7, 1 << 20)!.map((e) => e.index), [4, 5, 6]);
  assert.deepEqual(log.slice(4, 7, 1)!.map((e) => e.index), [4], "at least one entry even above the byte limit");
});

test("inflights ring: bounded, freed in order", () => {
  const inf = new Inflights(3);
  inf.add(5);
  inf.add(7);
  inf.add(9);
  assert.equal(inf.full(), true);
  inf.freeLE(7);
  assert.equal(inf.count, 1);
  inf.add(11);
  inf.add(12);
  assert.equal(inf.full(), true);
  inf.freeFirstOne();
  inf.freeLE(100);
  assert.equal(inf.count, 0);
});

function config(overrides: Partial<RaftConfig> = {}): RaftConfig {
  return {
    id: 1n,
    electionTicks: 10,
    heartbeatTicks: 1,
    random: new SeededRandom(1),
    preVote: false,
    checkQuorum: false,
    maxSizePerMsgBytes: 1024,
    maxInflightMsgs: 8,
    maxUncommittedEntriesBytes: 4096,
    ...overrides,
  };
}

test("RaftCore boundary: bad config and corrupt restore state are refused", () => {
  const restore = { hardState: { term: 0, vote: 0n, commit: 0 }, entries: [], initialConfState: { voters: [1n], learners: [] } };
  assert.throws(() => new RaftCore(config({ id: 0n }), restore), isCode("INVALID_ARGUMENT"));
  assert.throws(() => new RaftCore(config({ electionTicks: 1 }), restore), isCode("INVALID_ARGUMENT"));
  assert.throws(() => new RaftCore(config({ maxInflightMsgs: 0 }), restore), isCode("INVALID_ARGUMENT"));
  assert.throws(() => new RaftCore(config(), { ...restore, hardState: { term: 1, vote: 0n, commit: 3 }, entries: ents(1, 1) }), isCode("RAFT_INVARIANT"));
  const gap = ents(1, 1, 1);
  gap.splice(1, 1);
  assert.throws(() => new RaftCore(config(), { ...restore, entries: gap }), isCode("RAFT_INVARIANT"));
});

test("single voter: elects itself, commits only after persisting, randomized timeout in range", () => {
  const core = new RaftCore(config(), { hardState: { term: 0, vote: 0n, commit: 0 }, entries: [], initialConfState: { voters: [1n], learners: [] } });
  let ticks = 0;
  while (core.status().softState.role !== "leader") {
    core.tick();
    ticks++;
    assert.ok(ticks < 20, "a timeout is below 2 * electionTicks");
  }
  assert.ok(ticks >= 10);
  const rd = core.ready();
  assert.equal(rd.mustSync, true);
  assert.deepEqual(rd.hardState, { term: 1, vote: 1n, commit: 0 });
  assert.equal(rd.committedEntries.length, 0, "the no-op is not applied before it is durable");
  core.advance();
  const pos = core.propose(new Uint8Array([7]));
  assert.deepEqual(pos, { index: 2, term: 1 });
  const rd2 = core.ready();
  assert.deepEqual(rd2.entries.map((e) => e.index), [2]);
  assert.deepEqual(rd2.committedEntries.map((e) => e.index), [1]);
  core.advance();
  const rd3 = core.ready();
  assert.deepEqual(rd3.committedEntries.map((e) => e.index), [2]);
  core.advance();
  assert.equal(core.hasReady(), false);
  assert.throws(() => core.advance(), isCode("RAFT_INVARIANT"));
  assert.throws(() => core.propose(new Uint8Array(2000)), isCode("PROPOSAL_TOO_LARGE"));
  core.compact(2, new Uint8Array([1]));
  assert.equal(core.status().firstIndex, 3);
  assert.throws(() => core.compact(5, new Uint8Array(0)), isCode("INVALID_ARGUMENT"));
});

test("step refuses structurally invalid messages", () => {
  const core = new RaftCore(config(), { hardState: { term: 1, vote: 0n, commit: 0 }, entries: [], initialConfState: { voters: [1n, 2n, 3n], learners: [] } });
  const base = { type: 1, to: 1n, from: 2n, term: 2, logTerm: 0, index: 0, entries: [] as Entry[], commit: 0, reject: false, rejectHint: 0, context: new Uint8Array(0) };
  const e = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array(0) });
  assert.throws(() => core.step({ ...base, to: 9n }), isCode("INVALID_ARGUMENT"));
  assert.throws(() => core.step({ ...base, from: 1n }), isCode("INVALID_ARGUMENT"));
  assert.throws(() => core.step({ ...base, entries: [e(1, 1), e(3, 1)] }), isCode("INVALID_ARGUMENT"));
  assert.throws(() => core.step({ ...base, entries: [e(1, 3)] }), isCode("INVALID_ARGUMENT"), "entry from a future term");
  assert.throws(() => core.step({ ...base, type: 9 }), isCode("INVALID_ARGUMENT"), "snapshot message without a snapshot");
  core.step({ ...base, entries: [e(1, 1), e(2, 2)] });
  assert.equal(core.status().lastIndex, 2);
});
