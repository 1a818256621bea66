// RaftMembership (leader only): a node holding a manager certificate joins Raft as a learner (the
// driver promotes it to voter once it caught up) and gets the member list; Leave removes a member
// only when quorum stays safe.
import type * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../base/errors.js";
import { allocateRaftId, wouldBreakQuorum } from "../raft/node/index.js";
import { NodeRole, type Node } from "../proto/shoal/v1/objects.js";
import { retryOnVersionConflict } from "../state/index.js";
import type {
  JoinRaftRequest,
  JoinRaftResponse,
  LeaveRaftRequest,
  LeaveRaftResponse,
  RaftMembershipServer,
} from "../proto/shoal/v1/raft.js";
import type { ManagerContext } from "./context.js";
import { unary } from "./handlers.js";

const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

export function isHostPort(text: string): boolean {
  const match = HOST_PORT.exec(text);
  return match !== null && Number(match[1]) >= 1 && Number(match[1]) <= 65_535;
}

function membershipResponse(ctx: ManagerContext, raftId: bigint): JoinRaftResponse {
  const status = ctx.raft.status();
  return {
    raftId,
    members: status.members.map((m) => ({ raftId: m.raftId, nodeId: m.nodeId, addr: m.addr, voter: m.voter })),
    removedRaftIds: status.removedIds,
  };
}

export function membershipHandlers(ctx: ManagerContext): RaftMembershipServer {
  return {
    join: unary(async (req: JoinRaftRequest, call: grpc.ServerUnaryCall<JoinRaftRequest, JoinRaftResponse>): Promise<JoinRaftResponse> => {
      const peer = ctx.server.peerOf(call);
      ctx.requireLeader();
      if (!isHostPort(req.addr)) throw new ShoalError("INVALID_ARGUMENT", "addr must be HOST:PORT, the address other managers reach this one at");
      const node = ctx.store.getNode(peer.nodeId);
      if (node === undefined) throw new ShoalError("CERT_REVOKED", `node ${peer.nodeId} is not in the cluster; join again with a token`);
      if (node.spec?.desiredRole !== NodeRole.NODE_ROLE_MANAGER) {
        throw new ShoalError("PERMISSION_DENIED", `node ${peer.nodeId} is not meant to be a manager (it was demoted); renew its certificate`);
      }
      const status = ctx.raft.status();
      const existing = status.members.find((m) => m.nodeId === peer.nodeId);
      if (existing !== undefined) return membershipResponse(ctx, existing.raftId);
      const raftId = allocateRaftId(status.removedIds, ctx.random, status.members.map((m) => m.raftId));
      await ctx.raft.addLearner({ raftId, nodeId: peer.nodeId, addr: req.addr });
      await retryOnVersionConflict(async () => {
        const fresh = ctx.store.getNode(peer.nodeId);
        if (fresh === undefined) return;
        const updated: Node = {
          ...fresh,
          managerStatus: { raftId, addr: req.addr, leader: false, reachability: 0, voter: false },
        };
        await ctx.propose((tx) => tx.updateNode(updated));
      });
      ctx.logger.info({ joinedNodeId: peer.nodeId, raftId: String(raftId) }, "manager joined raft as a learner");
      return membershipResponse(ctx, raftId);
    }, ctx.logger),

    leave: unary(async (req: LeaveRaftRequest, call: grpc.ServerUnaryCall<LeaveRaftRequest, LeaveRaftResponse>): Promise<LeaveRaftResponse> => {
      const peer = ctx.server.peerOf(call);
      ctx.requireLeader();
      const member = ctx.raft.status().members.find((m) => m.raftId === req.raftId);
      if (member === undefined) return {};
      if (member.nodeId !== peer.nodeId) throw new ShoalError("PERMISSION_DENIED", "a manager may only take itself out of raft");
      const voters = ctx.raft.status().members.filter((m) => m.voter).map((m) => m.raftId);
      if (member.voter && wouldBreakQuorum(voters, ctx.reachableVoters(), req.raftId)) {
        throw new ShoalError("FAILED_PRECONDITION", "leaving would leave fewer reachable managers than a quorum");
      }
      await ctx.raft.removeMember(req.raftId);
      return {};
    }, ctx.logger),
  };
}
