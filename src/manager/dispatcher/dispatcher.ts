// The dispatcher (leader only): agent sessions that push the node's own object, the managers list
// and the revocation list; heartbeats that mark nodes READY; a leader loop that marks nodes DOWN
// after a missed-heartbeat TTL. A session of a removed node is ended at once.
import * as grpc from "@grpc/grpc-js";
import type { Timer } from "../../base/clock.js";
import { ShoalError } from "../../base/errors.js";
import { newId } from "../../base/ids.js";
import { NodeRole, NodeState, type Node, type NodeDescription } from "../../proto/shoal/v1/objects.js";
import {
  AssignmentsMessage_Type,
  type AssignmentsMessage,
  type AssignmentsRequest,
  type DispatcherServer,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type SessionMessage,
  type SessionRequest,
  type UpdateTaskStatusRequest,
  type UpdateTaskStatusResponse,
  type WeightedPeer,
} from "../../proto/shoal/v1/dispatcher.js";
import type { ManagerContext } from "../context.js";
import { handlerError, LeaderRedirect, unary } from "../handlers.js";
import { revokeSupersededSerials } from "../demotion.js";
import { revocationSets } from "../revocation-view.js";
import { checkNodeDescription, checkSessionAddr, checkTaskStatusUpdates } from "./limits.js";

export const DEFAULT_HEARTBEAT_PERIOD_MS = 1000;
/** Missed heartbeats before a node is marked DOWN. */
export const HEARTBEAT_TTL_PERIODS = 3;
export const MAX_SESSIONS = 10_000;
/**
 * One session per node: a new session of a node replaces (ends) its older one, as SwarmKit does. A
 * cap with a refusal was rejected: an agent whose link dropped would be locked out until its old,
 * half-open stream timed out, while replacing loses nothing (the agent abandoned that stream) and
 * only the node itself, by its certificate, can replace its own session.
 */
export const MAX_SESSIONS_PER_NODE = 1;

interface Session {
  id: string;
  nodeId: string;
  call: grpc.ServerWritableStream<SessionRequest, SessionMessage>;
}

/**
 * Ends a server stream with an error status. (`destroy(err)` would drop the status: grpc-js sends
 * it from `_final`, which a destroyed stream never runs.)
 */
function endStream(call: grpc.ServerWritableStream<unknown, unknown>, err: Partial<grpc.StatusObject> & Error): void {
  if (call.writableEnded || call.destroyed) return;
  call.emit("error", err);
}

export interface DispatcherOptions {
  heartbeatPeriodMs?: number;
}

export class Dispatcher {
  private readonly sessions = new Map<string, Session>();
  /** The current session of each node (MAX_SESSIONS_PER_NODE). */
  private readonly sessionByNode = new Map<string, Session>();
  private readonly assignmentStreams = new Set<grpc.ServerWritableStream<AssignmentsRequest, AssignmentsMessage>>();
  private readonly lastHeartbeatMs = new Map<string, number>();
  private readonly heartbeatPeriodMs: number;
  private downTimer: Timer | undefined;
  private leaderSinceMs = 0;
  private leaderTerm = 0;
  private readonly marking = new Set<string>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly ctx: ManagerContext,
    options: DispatcherOptions = {},
  ) {
    this.heartbeatPeriodMs = options.heartbeatPeriodMs ?? DEFAULT_HEARTBEAT_PERIOD_MS;
    this.unsubscribe = ctx.onApplied((changes) => this.onApplied(changes));
  }

  /** Leader loop start (on becoming leader) and stop (on losing it): fenced with the term. */
  leadershipChanged(isLeader: boolean, term: number): void {
    this.downTimer?.cancel();
    this.downTimer = undefined;
    if (isLeader) {
      this.leaderSinceMs = this.ctx.clock.nowMs();
      this.leaderTerm = term;
      this.lastHeartbeatMs.clear();
      // Through the injected clock, so the simulator and tests drive the DOWN marking.
      this.downTimer = this.ctx.clock.setInterval(() => this.markDownNodes(), this.heartbeatPeriodMs);
    } else {
      this.endAll(new LeaderRedirect(this.ctx.leaderAddr()));
    }
  }

  close(): void {
    this.downTimer?.cancel();
    this.downTimer = undefined;
    this.unsubscribe();
    this.endAll(new ShoalError("UNAVAILABLE", "this manager is shutting down; reconnect to another manager"));
  }

  private endAll(err: ShoalError): void {
    for (const session of this.sessions.values()) endStream(session.call, handlerError(err));
    this.sessions.clear();
    this.sessionByNode.clear();
    for (const stream of this.assignmentStreams) endStream(stream, handlerError(err));
    this.assignmentStreams.clear();
  }

  private managers(): WeightedPeer[] {
    return this.ctx.raft
      .status()
      .members.filter((m) => m.addr !== "")
      .map((m) => ({ addr: m.addr, nodeId: m.nodeId }));
  }

  private message(session: Session, node: Node): SessionMessage {
    const revoked = revocationSets(this.ctx.store);
    return {
      sessionId: session.id,
      managers: this.managers(),
      revokedNodeIds: revoked.nodeIds,
      revokedSerials: revoked.serials,
      node,
    };
  }

  private push(session: Session): void {
    const node = this.ctx.store.getNode(session.nodeId);
    if (node === undefined) {
      this.forgetSession(session);
      endStream(session.call, handlerError(new ShoalError("CERT_REVOKED", `node ${session.nodeId} has been removed from the cluster; join again with a token`)));
      return;
    }
    session.call.write(this.message(session, node));
  }

  /** Open sessions (all nodes). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private forgetSession(session: Session): void {
    this.sessions.delete(session.id);
    if (this.sessionByNode.get(session.nodeId) === session) this.sessionByNode.delete(session.nodeId);
  }

  /** Registers a node's new session, ending the one it replaces. */
  private addSession(session: Session): void {
    const previous = this.sessionByNode.get(session.nodeId);
    if (previous !== undefined) {
      this.forgetSession(previous);
      endStream(previous.call, handlerError(new ShoalError("FAILED_PRECONDITION", `node ${session.nodeId} opened a newer session on this manager, which replaces this one`)));
    }
    this.sessions.set(session.id, session);
    this.sessionByNode.set(session.nodeId, session);
  }

  private onApplied(changes: Parameters<Parameters<ManagerContext["onApplied"]>[0]>[0]): void {
    if (this.sessions.size === 0) return;
    let all = changes === "reset";
    const nodes = new Set<string>();
    if (changes !== "reset") {
      for (const change of changes) {
        if (change.table === "clusters") all = true;
        if (change.table === "nodes") {
          const node = change.object as Node;
          nodes.add(node.id);
          if (node.role === NodeRole.NODE_ROLE_MANAGER || (change.oldObject as Node | undefined)?.role === NodeRole.NODE_ROLE_MANAGER) all = true;
          if (node.managerStatus !== undefined) all = true;
        }
      }
    }
    for (const session of [...this.sessions.values()]) if (all || nodes.has(session.nodeId)) this.push(session);
  }

  private async setState(nodeId: string, state: NodeState, addr: string | undefined, term: number): Promise<void> {
    const key = `${nodeId}:${state}`;
    if (this.marking.has(key)) return;
    this.marking.add(key);
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (!this.ctx.raft.isLeader || this.ctx.raft.term !== term) return;
        const node = this.ctx.store.getNode(nodeId);
        if (node === undefined) return;
        const status = node.status ?? { state: NodeState.NODE_STATE_UNKNOWN, message: "", addr: "", lastHeartbeat: undefined };
        if (status.state === state && (addr === undefined || addr === "" || status.addr === addr)) return;
        const updated: Node = {
          ...node,
          status: {
            ...status,
            state,
            message: state === NodeState.NODE_STATE_DOWN ? "heartbeat failure" : "",
            addr: addr !== undefined && addr !== "" ? addr : status.addr,
            lastHeartbeat: new Date(this.ctx.clock.nowMs()),
          },
        };
        try {
          await this.ctx.propose((tx) => tx.updateNode(updated), { term });
          return;
        } catch (err) {
          if (!(err instanceof ShoalError) || err.code !== "VERSION_CONFLICT") return;
        }
      }
    } finally {
      this.marking.delete(key);
    }
  }

  /** What the node reports about itself (hostname, platform, engine), written when it changed. */
  private async recordDescription(nodeId: string, description: NodeDescription, term: number): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!this.ctx.raft.isLeader || this.ctx.raft.term !== term) return;
      const node = this.ctx.store.getNode(nodeId);
      if (node === undefined) return;
      const current = node.description;
      if (current?.hostname === description.hostname && current.platform === description.platform && current.engineVersion === description.engineVersion) return;
      const updated: Node = { ...node, description: { hostname: description.hostname, platform: description.platform, engineVersion: description.engineVersion, engineLabels: {}, executors: [], resources: undefined } };
      try {
        await this.ctx.propose((tx) => tx.updateNode(updated), { term });
        return;
      } catch (err) {
        if (!(err instanceof ShoalError) || err.code !== "VERSION_CONFLICT") return;
      }
    }
  }

  /** A demoted manager now on its worker certificate: its earlier serials can go (demotion.ts, step 2). */
  private async revokeSuperseded(nodeId: string, presentedSerial: string, term: number): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!this.ctx.raft.isLeader || this.ctx.raft.term !== term) return;
      const node = this.ctx.store.getNode(nodeId);
      const cluster = this.ctx.store.getCluster();
      if (node === undefined || cluster === undefined) return;
      const updated = revokeSupersededSerials(cluster, node, presentedSerial, new Date(this.ctx.clock.nowMs()));
      if (updated === undefined) return;
      try {
        await this.ctx.propose((tx) => tx.updateCluster(updated), { term });
        this.ctx.logger.info({ demotedNodeId: nodeId }, "revoked the certificates a demoted manager no longer uses");
        return;
      } catch (err) {
        if (!(err instanceof ShoalError) || err.code !== "VERSION_CONFLICT") {
          this.ctx.logger.warn({ err: String(err), demotedNodeId: nodeId }, "cannot revoke a demoted manager's earlier certificates; retried at its next session");
          return;
        }
      }
    }
  }

  private markDownNodes(): void {
    if (!this.ctx.raft.isLeader || this.ctx.raft.term !== this.leaderTerm) return;
    const nowMs = this.ctx.clock.nowMs();
    const ttlMs = this.heartbeatPeriodMs * HEARTBEAT_TTL_PERIODS;
    for (const node of this.ctx.store.listNodes()) {
      if (node.status?.state !== NodeState.NODE_STATE_READY) continue;
      const last = this.lastHeartbeatMs.get(node.id) ?? this.leaderSinceMs;
      if (nowMs - last > ttlMs) void this.setState(node.id, NodeState.NODE_STATE_DOWN, undefined, this.leaderTerm);
    }
  }

  handlers(): DispatcherServer {
    const ctx = this.ctx;
    return {
      session: (call: grpc.ServerWritableStream<SessionRequest, SessionMessage>) => {
        try {
          const peer = ctx.server.peerOf(call);
          ctx.requireLeader();
          const node = ctx.store.getNode(peer.nodeId);
          if (node === undefined) throw new ShoalError("CERT_REVOKED", `node ${peer.nodeId} is not in the cluster; join again with a token`);
          if (this.sessions.size >= MAX_SESSIONS && !this.sessionByNode.has(peer.nodeId)) {
            throw new ShoalError("QUEUE_FULL", "this manager holds too many sessions; retry later");
          }
          checkSessionAddr(call.request.addr);
          checkNodeDescription(call.request.description);
          const session: Session = { id: newId(), nodeId: peer.nodeId, call };
          this.addSession(session);
          const forget = (): void => this.forgetSession(session);
          call.on("cancelled", forget);
          call.on("close", forget);
          call.on("error", forget);
          this.lastHeartbeatMs.set(peer.nodeId, ctx.clock.nowMs());
          this.push(session);
          void this.setState(peer.nodeId, NodeState.NODE_STATE_READY, call.request.addr, ctx.raft.term);
          if (peer.role === "swarm-worker") void this.revokeSuperseded(peer.nodeId, peer.serial, ctx.raft.term);
          if (call.request.description !== undefined) void this.recordDescription(peer.nodeId, call.request.description, ctx.raft.term);
        } catch (err) {
          endStream(call, handlerError(err, ctx.logger));
        }
      },

      heartbeat: unary(async (req: HeartbeatRequest, call: grpc.ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>): Promise<HeartbeatResponse> => {
        const peer = ctx.server.peerOf(call);
        ctx.requireLeader();
        const session = this.sessions.get(req.sessionId);
        if (session === undefined || session.nodeId !== peer.nodeId) {
          throw new ShoalError("NOT_FOUND", "no such session on this manager; open a new session");
        }
        this.lastHeartbeatMs.set(peer.nodeId, ctx.clock.nowMs());
        const node = ctx.store.getNode(peer.nodeId);
        if (node !== undefined && node.status?.state !== NodeState.NODE_STATE_READY) {
          void this.setState(peer.nodeId, NodeState.NODE_STATE_READY, undefined, ctx.raft.term);
        }
        return { periodMs: this.heartbeatPeriodMs };
      }, ctx.logger),

      assignments: (call: grpc.ServerWritableStream<AssignmentsRequest, AssignmentsMessage>) => {
        try {
          ctx.server.peerOf(call);
          ctx.requireLeader();
          // No scheduler yet: the full (empty) set, then the stream stays open for future changes.
          call.write({ type: AssignmentsMessage_Type.TYPE_COMPLETE, appliesTo: "", resultsIn: "0", changes: [] });
          this.assignmentStreams.add(call);
          const forget = (): void => {
            this.assignmentStreams.delete(call);
          };
          call.on("cancelled", forget);
          call.on("close", forget);
        } catch (err) {
          endStream(call, handlerError(err, ctx.logger));
        }
      },

      updateTaskStatus: unary(async (req: UpdateTaskStatusRequest, call: grpc.ServerUnaryCall<UpdateTaskStatusRequest, UpdateTaskStatusResponse>) => {
        const peer = ctx.server.peerOf(call);
        checkTaskStatusUpdates(req.updates);
        ctx.requireLeader();
        const session = this.sessions.get(req.sessionId);
        if (session === undefined || session.nodeId !== peer.nodeId) {
          throw new ShoalError("NOT_FOUND", "no such session on this manager; open a new session");
        }
        // No scheduler yet, so no task to record a status on: the updates are checked and dropped.
        return {};
      }, ctx.logger),
    };
  }
}
