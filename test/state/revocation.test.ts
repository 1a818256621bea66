// removeNodeAndRevoke puts the node ID and every serial in the replicated list; GC 7 days after the
// last certificate's expiry, at the boundary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newId } from "../../src/base/ids.js";
import { CertificateStatus, NodeCertificate } from "../../src/proto/shoal/v1/objects.js";
import { ObjectStore, REVOCATION_GRACE_MS } from "../../src/state/index.js";
import { commit, makeCluster, makeNode, T0, thrownCode } from "./fixtures.js";

const NOT_AFTER = new Date("2026-04-01T00:00:00.000Z");

function certifiedNode() {
  return makeNode({
    certificate: NodeCertificate.fromPartial({
      status: CertificateStatus.CERTIFICATE_STATUS_ISSUED,
      serial: "0C",
      issuedSerials: ["0A", "0B", "0C"],
      notAfter: NOT_AFTER,
      lastNotAfter: NOT_AFTER,
    }),
  });
}

test("removeNodeAndRevoke deletes the node and lists its ID and all serials, atomically", () => {
  const store = new ObjectStore();
  const node = certifiedNode();
  const other = certifiedNode();
  commit(store, (tx) => { tx.createCluster(makeCluster()); tx.createNode(node); tx.createNode(other); });
  const removedAt = new Date("2026-02-01T00:00:00.000Z");
  const result = commit(store, (tx) => tx.removeNodeAndRevoke(node.id, { removedAt }));
  assert.deepEqual(result.changes.map((c) => `${c.table}:${c.kind}`), ["nodes:remove", "clusters:update"]);
  assert.equal(store.getNode(node.id), undefined);
  const list = store.getRevocationList();
  assert.equal(list.nodes.length, 1);
  assert.deepEqual(list.nodes[0], { nodeId: node.id, serials: ["0A", "0B", "0C"], removedAt, lastCertNotAfter: NOT_AFTER });
  assert.ok(!list.nodes.some((n) => n.nodeId === other.id));
  assert.equal(thrownCode(() => store.prepare((tx) => tx.removeNodeAndRevoke(node.id, { removedAt }))), "NOT_FOUND");
  assert.equal(thrownCode(() => store.prepare((tx) => tx.removeNodeAndRevoke(newId(), { removedAt }))), "NOT_FOUND");
});

test("removeNodeAndRevoke needs the cluster object and races fail as a whole", () => {
  const store = new ObjectStore();
  const node = certifiedNode();
  commit(store, (tx) => tx.createNode(node));
  assert.equal(thrownCode(() => store.prepare((tx) => tx.removeNodeAndRevoke(node.id, { removedAt: T0 }))), "FAILED_PRECONDITION");
  commit(store, (tx) => tx.createCluster(makeCluster()));
  const revoke = store.prepare((tx) => tx.removeNodeAndRevoke(node.id, { removedAt: T0 }));
  // Another cluster change commits first: the revocation fails entirely, the node stays.
  const cluster = store.getCluster()!;
  cluster.spec!.name = "renamed";
  commit(store, (tx) => tx.updateCluster(cluster));
  const result = store.apply(revoke, { index: store.lastAppliedIndex + 1 });
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.error.code, "VERSION_CONFLICT");
  assert.ok(store.getNode(node.id) !== undefined);
  assert.equal(store.getRevocationList().nodes.length, 0);
});

test("a node without a certificate is revoked by ID, kept until 7 days after its removal", () => {
  const store = new ObjectStore();
  const node = makeNode();
  commit(store, (tx) => { tx.createCluster(makeCluster()); tx.createNode(node); });
  commit(store, (tx) => tx.removeNodeAndRevoke(node.id, { removedAt: T0 }));
  const [entry] = store.getRevocationList().nodes;
  assert.deepEqual(entry, { nodeId: node.id, serials: [], removedAt: T0, lastCertNotAfter: T0 });
});

test("gcRevocations keeps an entry until exactly 7 days after last_cert_not_after, then drops it", () => {
  const store = new ObjectStore();
  const node = certifiedNode();
  const later = certifiedNode();
  later.certificate!.lastNotAfter = new Date(NOT_AFTER.getTime() + 1000);
  later.certificate!.notAfter = later.certificate!.lastNotAfter;
  commit(store, (tx) => { tx.createCluster(makeCluster()); tx.createNode(node); tx.createNode(later); });
  commit(store, (tx) => { tx.removeNodeAndRevoke(node.id, { removedAt: T0 }); tx.removeNodeAndRevoke(later.id, { removedAt: T0 }); });
  const boundary = NOT_AFTER.getTime() + REVOCATION_GRACE_MS;
  let removed = -1;
  // One millisecond before: nothing to collect, and nothing is written.
  assert.equal(thrownCode(() => store.prepare((tx) => { removed = tx.gcRevocations(new Date(boundary - 1)); })), "INVALID_ARGUMENT");
  assert.equal(removed, 0);
  commit(store, (tx) => { removed = tx.gcRevocations(new Date(boundary)); });
  assert.equal(removed, 1);
  assert.deepEqual(store.getRevocationList().nodes.map((n) => n.nodeId), [later.id]);
  commit(store, (tx) => { removed = tx.gcRevocations(new Date(boundary + 1000)); });
  assert.equal(removed, 1);
  assert.equal(store.getRevocationList().nodes.length, 0);
});
