// Who may use the manager-only RPCs (raft, membership, control) right now. A manager certificate stays
// valid for up to 90 days after a demotion, so on every such call the manager also compares the
// caller with its store: the node must still be meant to be a manager. Kept in memory from apply
// events, so the check is two Map/Set lookups.
import { ShoalError } from "../base/errors.js";
import { NodeRole, type Node } from "../proto/shoal/v1/objects.js";
import type { ObjectStore, StoreChange } from "../state/index.js";
import { defaultMethodPolicies } from "../transport/authz.js";
import type { PeerIdentity } from "../transport/identity.js";

const RAFT_PATH_PREFIX = "/shoal.v1.Raft/";

/** Method paths that only manager certificates may call (the Authorizer's table). */
function managerOnlyPaths(): Set<string> {
  const paths = new Set<string>();
  for (const [path, policy] of defaultMethodPolicies()) {
    if (policy !== "bootstrap" && policy.roles.length === 1 && policy.roles[0] === "swarm-manager") paths.add(path);
  }
  return paths;
}

export class ManagerAccess {
  private readonly desiredRoleByNodeId = new Map<string, NodeRole>();
  private raftMemberNodeIds = new Set<string>();
  private readonly managerOnly = managerOnlyPaths();

  constructor(private readonly store: ObjectStore) {
    this.applied("reset");
  }

  /** Keeps the role index current; call after every apply and snapshot restore. */
  applied(changes: StoreChange[] | "reset"): void {
    if (changes === "reset") {
      this.desiredRoleByNodeId.clear();
      for (const node of this.store.listNodes()) this.remember(node);
      return;
    }
    for (const change of changes) {
      if (change.table !== "nodes") continue;
      const node = change.object as Node;
      if (change.kind === "remove") this.desiredRoleByNodeId.delete(node.id);
      else this.remember(node);
    }
  }

  /** The node IDs of the current raft members (voters and learners). */
  setRaftMembers(nodeIds: Iterable<string>): void {
    this.raftMemberNodeIds = new Set([...nodeIds].filter((id) => id !== ""));
  }

  /**
   * Throws CERT_WRONG_ROLE (PERMISSION_DENIED) when a manager certificate's node is no longer meant to
   * be a manager. Exceptions, each needed for raft to make progress:
   *  - a demoted node that is still a raft member may speak raft until its removal is applied (the
   *    removal itself may need its vote, e.g. when 2 voters become 1);
   *  - a node this store does not know may speak raft: a manager whose store lags (joining, or back
   *    after downtime) must accept the leader that brings it up to date. Removed nodes are refused
   *    anyway, by node ID on the revocation list.
   * Unknown nodes are refused on membership and control, whose callers the store always knows.
   */
  check(identity: PeerIdentity, path: string): void {
    if (identity.role !== "swarm-manager" || !this.managerOnly.has(path)) return;
    const desired = this.desiredRoleByNodeId.get(identity.nodeId);
    if (desired === NodeRole.NODE_ROLE_MANAGER) return;
    const isRaft = path.startsWith(RAFT_PATH_PREFIX);
    if (desired === undefined) {
      if (isRaft || this.store.getCluster() === undefined) return;
      throw new ShoalError("CERT_WRONG_ROLE", `node ${identity.nodeId} is not a manager of this cluster: its manager certificate is not accepted`);
    }
    if (isRaft && this.raftMemberNodeIds.has(identity.nodeId)) return;
    throw new ShoalError(
      "CERT_WRONG_ROLE",
      `node ${identity.nodeId} was demoted to worker: its manager certificate no longer grants manager access (the node renews it as a worker certificate)`,
    );
  }

  private remember(node: Node): void {
    this.desiredRoleByNodeId.set(node.id, node.spec?.desiredRole ?? NodeRole.NODE_ROLE_WORKER);
  }
}
