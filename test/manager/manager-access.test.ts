// The store-role check on manager-only RPCs and the two-step revocation of a demoted manager's serials,
// as pure rules over a real ObjectStore (the in-process cluster test covers the wiring).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ObjectStore } from "../../src/state/index.js";
import { NodeRole } from "../../src/proto/shoal/v1/objects.js";
import { ManagerAccess } from "../../src/manager/manager-access.js";
import { revocationSets } from "../../src/manager/revocation-view.js";
import { revokeOnDemotion, revokeSupersededSerials } from "../../src/manager/demotion.js";
import type { PeerIdentity } from "../../src/transport/identity.js";
import { commit, makeCluster, makeNode, thrownCode, T0 } from "../state/fixtures.js";

const CONTROL = "/shoal.v1.Control/ListNodes";
const RAFT = "/shoal.v1.Raft/ProcessRaftMessages";
const MEMBERSHIP = "/shoal.v1.RaftMembership/Join";
const DISPATCHER = "/shoal.v1.Dispatcher/Heartbeat";

function managerCert(nodeId: string): PeerIdentity {
  return { nodeId, clusterId: "c", role: "swarm-manager", zone: "default", serial: "0A", notAfter: new Date(T0.getTime() + 3600_000) };
}

test("manager-only calls need the store's current role; raft keeps members and lagging stores working", () => {
  const store = new ObjectStore();
  const access = new ManagerAccess(store);
  const manager = makeNode({ role: NodeRole.NODE_ROLE_MANAGER, spec: { desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: 0, labels: {} } });
  // A store that has not caught up (no cluster yet) cannot judge: it accepts, so the leader can fill it.
  assert.doesNotThrow(() => access.check(managerCert(manager.id), CONTROL));
  commit(store, (tx) => {
    tx.createCluster(makeCluster());
    tx.createNode(manager);
  });
  access.applied("reset");
  for (const path of [CONTROL, RAFT, MEMBERSHIP]) assert.doesNotThrow(() => access.check(managerCert(manager.id), path));

  // Demoted in the store: refused at once on control and membership; raft only while still a member.
  const demoted = { ...store.getNode(manager.id)!, spec: { ...store.getNode(manager.id)!.spec!, desiredRole: NodeRole.NODE_ROLE_WORKER } };
  const applied = commit(store, (tx) => tx.updateNode(demoted));
  access.applied(applied.changes);
  assert.equal(thrownCode(() => access.check(managerCert(manager.id), CONTROL)), "CERT_WRONG_ROLE");
  assert.equal(thrownCode(() => access.check(managerCert(manager.id), MEMBERSHIP)), "CERT_WRONG_ROLE");
  access.setRaftMembers([manager.id]);
  assert.doesNotThrow(() => access.check(managerCert(manager.id), RAFT));
  access.setRaftMembers([]);
  assert.equal(thrownCode(() => access.check(managerCert(manager.id), RAFT)), "CERT_WRONG_ROLE");
  // Worker-level methods are not this check's business.
  assert.doesNotThrow(() => access.check(managerCert(manager.id), DISPATCHER));

  // Unknown to a store that has the cluster: refused on control and membership, accepted on raft.
  const stranger = managerCert("0".repeat(24) + "1");
  assert.equal(thrownCode(() => access.check(stranger, CONTROL)), "CERT_WRONG_ROLE");
  assert.equal(thrownCode(() => access.check(stranger, MEMBERSHIP)), "CERT_WRONG_ROLE");
  assert.doesNotThrow(() => access.check(stranger, RAFT));

  // Promoted back: accepted again.
  const promoted = { ...store.getNode(manager.id)!, spec: { ...store.getNode(manager.id)!.spec!, desiredRole: NodeRole.NODE_ROLE_MANAGER } };
  access.applied(commit(store, (tx) => tx.updateNode(promoted)).changes);
  assert.doesNotThrow(() => access.check(managerCert(manager.id), CONTROL));
});

test("a demoted manager's serials: all but the presenting one at issuance, the rest once it uses its newest", () => {
  const store = new ObjectStore();
  const node = makeNode({
    role: NodeRole.NODE_ROLE_MANAGER,
    certificate: { status: 0, csr: Buffer.alloc(0), certificate: Buffer.alloc(0), serial: "0C", notAfter: T0, role: NodeRole.NODE_ROLE_MANAGER, zone: "default", issuedSerials: ["0A", "0B", "0C"], lastNotAfter: T0 },
  });
  commit(store, (tx) => {
    tx.createCluster(makeCluster());
    tx.createNode(node);
  });
  // Step 1 (worker certificate 0D issued, the renewal authenticated by 0C).
  const step1 = revokeOnDemotion(store.getCluster()!, store.getNode(node.id)!, "0c", T0);
  const withWorker = { ...store.getNode(node.id)!, certificate: { ...store.getNode(node.id)!.certificate!, serial: "0D", issuedSerials: ["0A", "0B", "0C", "0D"], role: NodeRole.NODE_ROLE_WORKER } };
  commit(store, (tx) => {
    tx.updateNode(withWorker);
    tx.updateCluster(step1);
  });
  // The node is still in the store: its entry revokes serials only, never its node ID.
  assert.deepEqual(revocationSets(store), { nodeIds: [], serials: ["0A", "0B"] });
  // Presenting an older certificate changes nothing; presenting the newest revokes 0C.
  assert.equal(revokeSupersededSerials(store.getCluster()!, store.getNode(node.id)!, "0C", T0), undefined);
  const step2 = revokeSupersededSerials(store.getCluster()!, store.getNode(node.id)!, "0d", T0);
  assert.ok(step2 !== undefined);
  commit(store, (tx) => tx.updateCluster(step2));
  assert.deepEqual(revocationSets(store), { nodeIds: [], serials: ["0A", "0B", "0C"] });
  assert.equal(revokeSupersededSerials(store.getCluster()!, store.getNode(node.id)!, "0D", T0), undefined, "nothing left to add");
  // A node that was never demoted has no entry: its sessions revoke nothing.
  const plain = makeNode({ certificate: { ...withWorker.certificate, issuedSerials: ["01", "02"], serial: "02" } });
  commit(store, (tx) => tx.createNode(plain));
  assert.equal(revokeSupersededSerials(store.getCluster()!, store.getNode(plain.id)!, "02", T0), undefined);
  // Removed: now the node ID is revoked too.
  commit(store, (tx) => tx.removeNodeAndRevoke(node.id, { removedAt: T0 }));
  assert.deepEqual(revocationSets(store).nodeIds, [node.id]);
});
