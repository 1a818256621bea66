// Membership helpers of the Raft driver: raft ID allocation, the quorum-safety rule for removals,
// and the member context / snapshot envelope encodings.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { SeededRandom, type Random } from "../../src/base/random.js";
import { isShoalError } from "../../src/base/errors.js";
import {
  allocateRaftId,
  decodeMemberContext,
  decodeSnapshotEnvelope,
  encodeMemberContext,
  encodeSnapshotEnvelope,
  wouldBreakQuorum,
} from "../../src/raft/node/membership.js";

test("allocateRaftId gives non-zero 64-bit IDs and never a removed or taken one", () => {
  const random = new SeededRandom(7);
  const seen = new Set<bigint>();
  for (let i = 0; i < 2000; i++) {
    const id = allocateRaftId([], random);
    assert.ok(id > 0n && id < 1n << 64n);
    seen.add(id);
  }
  assert.equal(seen.size, 2000, "2000 draws of 64 bits should not collide");
  // A random source stuck on one value: the removed ID must be skipped, and a broken source detected.
  let calls = 0;
  const scripted: Random = { float: () => 0, int: () => (calls++ < 4 ? 1 : 2) };
  const removed = 0x0001_0001_0001_0001n;
  assert.equal(allocateRaftId([removed], scripted), 0x0002_0002_0002_0002n);
  const stuck: Random = { float: () => 0, int: () => 0 };
  assert.throws(() => allocateRaftId([], stuck), (e) => isShoalError(e, "INTERNAL"));
  const taken: Random = { float: () => 0, int: () => 5 };
  assert.throws(() => allocateRaftId([], taken, [0x0005_0005_0005_0005n]), (e) => isShoalError(e, "INTERNAL"));
});

test("wouldBreakQuorum: removals that keep a reachable quorum pass, others are refused", () => {
  const v = [1n, 2n, 3n];
  assert.equal(wouldBreakQuorum(v, new Set([1n, 2n]), 3n), false, "removing the one down voter of three is safe");
  assert.equal(wouldBreakQuorum(v, new Set([1n, 2n]), 2n), true, "removing a live voter while another is down leaves 1 of 2");
  assert.equal(wouldBreakQuorum(v, new Set([1n, 2n, 3n]), 2n), false);
  assert.equal(wouldBreakQuorum(v, new Set([1n]), 3n), true, "no quorum now: the change itself cannot commit");
  assert.equal(wouldBreakQuorum([1n], new Set([1n]), 1n), true, "the last voter cannot be removed");
  assert.equal(wouldBreakQuorum(v, new Set([1n]), 9n), false, "a non-voter does not count");
  assert.equal(wouldBreakQuorum([1n, 2n, 3n, 4n, 5n], new Set([1n, 2n, 3n]), 4n), false);
  assert.equal(wouldBreakQuorum([1n, 2n, 3n, 4n, 5n], new Set([1n, 2n, 3n]), 3n), true);
});

test("wouldBreakQuorum agrees with a brute-force count (property)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 7 }), fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }), fc.nat(6), (n, up, pick) => {
      const voters = Array.from({ length: n }, (_, i) => BigInt(i + 1));
      const reachable = new Set(voters.filter((_, i) => up[i]));
      const removing = voters[pick % n]!;
      const after = voters.filter((x) => x !== removing);
      const ok =
        reachable.size >= Math.floor(n / 2) + 1 &&
        after.length > 0 &&
        after.filter((x) => reachable.has(x)).length >= Math.floor(after.length / 2) + 1;
      assert.equal(wouldBreakQuorum(voters, reachable, removing), !ok);
    }),
  );
});

test("member context round trips and is checked against the change's raft ID", () => {
  const member = { raftId: 0xfedc_ba98_7654_3210n, nodeId: "a".repeat(25), addr: "10.0.0.7:4242" };
  const ctx = encodeMemberContext(member);
  assert.deepEqual(decodeMemberContext(ctx, member.raftId), member);
  assert.equal(decodeMemberContext(new Uint8Array(0), 5n), undefined);
  assert.throws(() => decodeMemberContext(ctx, 5n), (e) => isShoalError(e, "RAFT_LOG_CORRUPT"));
  assert.throws(() => decodeMemberContext(new Uint8Array([0xff, 0xff, 0xff]), 5n), (e) => isShoalError(e, "RAFT_LOG_CORRUPT"));
  assert.throws(() => decodeMemberContext(new Uint8Array(5000), 5n), (e) => isShoalError(e, "RAFT_LOG_CORRUPT"));
});

test("snapshot envelope keeps members, removed IDs and the state machine bytes", () => {
  const image = {
    members: [
      { raftId: 1n, nodeId: "n1", addr: "a:1" },
      { raftId: (1n << 64n) - 1n, nodeId: "n2", addr: "b:2" },
    ],
    removedIds: [7n, 1n << 63n],
  };
  const app = new Uint8Array([1, 2, 3, 0, 255]);
  const out = decodeSnapshotEnvelope(encodeSnapshotEnvelope(image, app));
  assert.deepEqual(out.image, image);
  assert.deepEqual([...out.appData!], [...app]);
  const empty = decodeSnapshotEnvelope(encodeSnapshotEnvelope({ members: [], removedIds: [] }, new Uint8Array(0)));
  assert.equal(empty.appData?.length, 0, "an empty image is kept as empty");
  const founding = decodeSnapshotEnvelope(encodeSnapshotEnvelope(image, undefined));
  assert.equal(founding.appData, undefined, "no image at all stays absent");
  assert.deepEqual(founding.image, image);
  assert.throws(() => decodeSnapshotEnvelope(new Uint8Array([9, 1, 2])), (e) => isShoalError(e, "RAFT_LOG_CORRUPT"));
  assert.throws(() => decodeSnapshotEnvelope(new Uint8Array(0)), (e) => isShoalError(e, "RAFT_LOG_CORRUPT"));
  const truncated = encodeSnapshotEnvelope(image, app).subarray(0, 10);
  assert.throws(() => decodeSnapshotEnvelope(truncated), (e) => isShoalError(e, "RAFT_LOG_CORRUPT"));
});
