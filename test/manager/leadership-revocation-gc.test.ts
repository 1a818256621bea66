// The revocation GC, now a leader loop: on its interval it drops entries 7 days past their last
// certificate's expiry, only while leading, and writes nothing when there is nothing to drop.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ManualClock } from "../../src/base/clock.js";
import { SeededRandom } from "../../src/base/random.js";
import { applyAtOnce } from "../../src/manager/leadership/apply-at-once.js";
import { LeaderLoops } from "../../src/manager/leadership/leader-loops.js";
import { REVOCATION_GC_INTERVAL_MS, revocationGcLoop } from "../../src/manager/leadership/revocation-gc.js";
import { CertificateStatus, NodeCertificate } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore, REVOCATION_GRACE_MS } from "../../src/state/index.js";
import { commit, makeCluster, makeNode } from "../state/fixtures.js";

test("revocation entries are collected on the leader's interval once 7 days past the last certificate's expiry", async () => {
  const notAfter = new Date("2026-04-01T00:00:00.000Z");
  const clock = new ManualClock(notAfter.getTime() + REVOCATION_GRACE_MS - REVOCATION_GC_INTERVAL_MS / 2);
  const store = new ObjectStore({ clock });
  const node = makeNode({ certificate: NodeCertificate.fromPartial({ status: CertificateStatus.CERTIFICATE_STATUS_ISSUED, serial: "0C", issuedSerials: ["0C"], notAfter, lastNotAfter: notAfter }) });
  commit(store, (tx) => {
    tx.createCluster(makeCluster());
    tx.createNode(node);
  });
  commit(store, (tx) => tx.removeNodeAndRevoke(node.id, { removedAt: new Date(clock.nowMs()) }));
  const raft = applyAtOnce(store, clock);
  const loops = new LeaderLoops({ store, propose: raft.propose, clock, random: new SeededRandom(1), logger: pino({ level: "silent" }), loops: [revocationGcLoop] });

  // Not leading: nothing happens, however long.
  clock.advance(REVOCATION_GC_INTERVAL_MS * 3);
  await loops.idle();
  assert.equal(store.getRevocationList().nodes.length, 1);

  clock.set(notAfter.getTime() + REVOCATION_GRACE_MS - REVOCATION_GC_INTERVAL_MS / 2);
  loops.leaderChanged(true, 1);
  clock.advance(REVOCATION_GC_INTERVAL_MS); // the first tick falls half an interval past the boundary
  await loops.idle();
  assert.equal(store.getRevocationList().nodes.length, 0, "collected at the first tick past the boundary");
  assert.equal(raft.proposals, 1);
  clock.advance(REVOCATION_GC_INTERVAL_MS * 2);
  await loops.idle();
  assert.equal(raft.proposals, 1, "nothing left to collect: nothing written");
  loops.stop();
});
