// The dispatcher (leader only): wires agent sessions (the node's own object, the managers list and
// the revocation list), heartbeats (READY, and DOWN after 3 missed periods), assignments streams
// (tasks and their secrets, zone-checked) and task status reports. Every call after Session is bound
// to the caller's certificate node ID and to that node's own current session.
import { trustBundleOf } from "../../ca/index.js";
import * as grpc from "@grpc/grpc-js";
import { isShoalError, ShoalError } from "../../base/errors.js";
import { newId } from "../../base/ids.js";
import { NodeRole, NodeState, type Node } from "../../proto/shoal/v1/objects.js";
import type {
  DispatcherServer,
  HeartbeatRequest,
  HeartbeatResponse,
  ReportPrefetchRequest,
  ReportPrefetchResponse,
  SessionMessage,
  SessionRequest,
  UpdateTaskStatusRequest,
  UpdateTaskStatusResponse,
  WeightedPeer,
} from "../../proto/shoal/v1/dispatcher.js";
import type { StoreChange } from "../../state/index.js";
import type { PeerIdentity } from "../../transport/identity.js";
import type { ManagerContext } from "../context.js";
import { handlerError, LeaderRedirect, unary } from "../handlers.js";
import type { PrefetchOrderSource } from "../prefetch/order-board.js";
import { revocationSets } from "../revocation-view.js";
import { AssignmentStreams, type AssignmentsCall } from "./assignments.js";
import { endStream } from "./end-stream.js";
import { DEFAULT_HEARTBEAT_PERIOD_MS, HeartbeatMonitor } from "./heartbeats.js";
import { checkNodeDescription, checkSessionAddr, checkTaskStatusUpdates } from "./limits.js";
import { NodeReports } from "./node-reports.js";
import { authorizePrefetchReport, checkPrefetchReport } from "./prefetch-reports.js";
import { SessionRegistry, type Session } from "./sessions.js";
import { TaskStatusWriter } from "./task-status.js";

export { DEFAULT_HEARTBEAT_PERIOD_MS, HEARTBEAT_JITTER_FRACTION, HEARTBEAT_TTL_PERIODS } from "./heartbeats.js";
export { MAX_SESSIONS, MAX_SESSIONS_PER_NODE } from "./sessions.js";

export interface DispatcherOptions {
  /** The base heartbeat period agents are told (jittered by ±10 %); tests shorten it. */
  heartbeatPeriodMs?: number;
  /** The leader's prefetch orders, pushed with the assignments (absent: none are pushed). */
  prefetch?: PrefetchOrderSource;
  /** The leader runs the prefetch loop: sessions tell agents to wait for an order before pulling. */
  prefetchImages?: boolean;
  /** Told what the dispatcher decides (the daemon's metrics). */
  observer?: DispatcherObserver;
}

/** What the dispatcher tells an onlooker; cheap calls, each optional. */
export interface DispatcherObserver {
  /** These many nodes missed their heartbeats (3 periods) and are being marked DOWN. */
  heartbeatsMissed?(nodes: number): void;
}

export class Dispatcher {
  private readonly sessions = new SessionRegistry();
  private readonly assignments: AssignmentStreams;
  private readonly heartbeats: HeartbeatMonitor;
  private readonly reports: NodeReports;
  private readonly statuses: TaskStatusWriter;
  private readonly log: ManagerContext["logger"];
  private leaderTerm = 0;
  /**
   * Nodes READY in the store, kept from the applied changes so that a heartbeat (hundreds a second
   * with thousands of nodes) and the DOWN check read no node object.
   */
  private readonly readyNodes = new Set<string>();
  private readonly unsubscribe: () => void;
  private readonly prefetch: PrefetchOrderSource | undefined;
  private readonly prefetchImages: boolean;
  private readonly observer: DispatcherObserver;

  constructor(
    private readonly ctx: ManagerContext,
    options: DispatcherOptions = {},
  ) {
    this.log = ctx.logger.child({ component: "dispatcher" });
    this.prefetch = options.prefetch;
    this.observer = options.observer ?? {};
    this.prefetchImages = options.prefetch !== undefined && options.prefetchImages === true;
    this.heartbeats = new HeartbeatMonitor({
      periodMs: options.heartbeatPeriodMs ?? DEFAULT_HEARTBEAT_PERIOD_MS,
      clock: ctx.clock,
      random: ctx.random,
      readyNodes: () => [...this.readyNodes],
      onExpired: (nodeIds) => this.markDown(nodeIds),
    });
    this.reports = new NodeReports(ctx);
    this.statuses = new TaskStatusWriter(ctx, this.log);
    this.assignments = new AssignmentStreams({ store: ctx.store, logger: this.log, ...(options.prefetch !== undefined ? { prefetch: options.prefetch } : {}) });
    this.sessions.onEnd((session, why) => this.assignments.endSession(session, why));
    this.reloadReadyNodes();
    this.unsubscribe = ctx.onApplied((changes) => this.onApplied(changes));
  }

  /** Leader loop start (on becoming leader) and stop (on losing it): fenced with the term. */
  leadershipChanged(isLeader: boolean, term: number): void {
    this.heartbeats.stop();
    if (isLeader) {
      this.leaderTerm = term;
      this.heartbeats.start();
    } else {
      this.endAll(new LeaderRedirect(this.ctx.leaderAddr()));
    }
  }

  close(): void {
    this.heartbeats.stop();
    this.unsubscribe();
    this.endAll(new ShoalError("UNAVAILABLE", "this manager is shutting down; reconnect to another manager"));
  }

  /** Open sessions (all nodes). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Open assignments streams (all nodes). */
  get assignmentStreamCount(): number {
    return this.assignments.size;
  }

  private endAll(err: ShoalError): void {
    this.assignments.endAll(err);
    for (const session of this.sessions.clear(err)) endStream(session.call, handlerError(err));
  }

  private managers(): WeightedPeer[] {
    return this.ctx.raft
      .status()
      .members.filter((m) => m.addr !== "")
      .map((m) => ({ addr: m.addr, nodeId: m.nodeId }));
  }

  private message(session: Session, node: Node): SessionMessage {
    const revoked = revocationSets(this.ctx.store);
    const rootCa = this.ctx.store.getCluster()?.rootCa;
    // The roots the node must trust: during a root rotation the old and the new (src/ca/root-rotation.ts).
    const rootCaBundle = trustBundleOf(Buffer.from(rootCa?.caCertPem ?? []).toString("utf8"), Buffer.from(rootCa?.rootRotation?.caCertPem ?? []).toString("utf8"));
    return {
      sessionId: session.id,
      managers: this.managers(),
      revokedNodeIds: revoked.nodeIds,
      revokedSerials: revoked.serials,
      node,
      prefetch: this.prefetchImages,
      rootCaBundle: Buffer.from(rootCaBundle),
    };
  }

  private push(session: Session): void {
    const node = this.ctx.store.getNode(session.nodeId);
    if (node === undefined) {
      const err = new ShoalError("CERT_REVOKED", `node ${session.nodeId} has been removed from the cluster; join again with a token`);
      this.sessions.forget(session, err);
      endStream(session.call, handlerError(err));
      return;
    }
    session.call.write(this.message(session, node));
  }

  private reloadReadyNodes(): void {
    this.readyNodes.clear();
    for (const node of this.ctx.store.listNodes()) if (node.status?.state === NodeState.NODE_STATE_READY) this.readyNodes.add(node.id);
  }

  private trackReadyNodes(changes: StoreChange[] | "reset"): void {
    if (changes === "reset") {
      this.reloadReadyNodes();
      return;
    }
    for (const change of changes) {
      if (change.table !== "nodes") continue;
      const node = change.object as Node;
      if (change.kind !== "remove" && node.status?.state === NodeState.NODE_STATE_READY) this.readyNodes.add(node.id);
      else this.readyNodes.delete(node.id);
    }
  }

  private onApplied(changes: StoreChange[] | "reset"): void {
    this.trackReadyNodes(changes);
    this.assignments.applied(changes);
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

  private markDown(nodeIds: string[]): void {
    if (!this.ctx.raft.isLeader || this.ctx.raft.term !== this.leaderTerm) return;
    this.observer.heartbeatsMissed?.(nodeIds.length);
    for (const nodeId of nodeIds) void this.reports.setState(nodeId, NodeState.NODE_STATE_DOWN, undefined, this.leaderTerm);
  }

  /**
   * For calls served outside the dispatcher (the log broker's ListenSubscriptions and PublishLogs):
   * the caller's own current session on this leader, bound to its certificate.
   */
  bindCall(sessionId: string, call: { metadata: grpc.Metadata }, method: string): { nodeId: string; sessionId: string } {
    const peer = this.ctx.server.peerOf(call);
    this.ctx.requireLeader();
    const session = this.bind(sessionId, peer, method);
    if (peer.serial !== session.serial) {
      throw new ShoalError("FAILED_PRECONDITION", "this session was opened with another certificate of this node; open a new session with the current certificate");
    }
    return { nodeId: session.nodeId, sessionId: session.id };
  }

  /** Runs with the node and session ID when a session ends. */
  onSessionEnd(listener: (nodeId: string, sessionId: string) => void): () => void {
    return this.sessions.onEnd((session) => listener(session.nodeId, session.id));
  }

  /** The caller's own session, refusing (and logging) another node's session ID. */
  private bind(sessionId: string, peer: PeerIdentity, call: string): Session {
    try {
      return this.sessions.bind(sessionId, peer);
    } catch (err) {
      if (err instanceof ShoalError && err.code === "PERMISSION_DENIED") {
        this.log.warn({ event: "security", nodeId: peer.nodeId, certSerial: peer.serial, call }, "a node presented another node's session ID; refused");
      }
      throw err;
    }
  }

  private openSession(call: grpc.ServerWritableStream<SessionRequest, SessionMessage>): void {
    const ctx = this.ctx;
    const peer = ctx.server.peerOf(call);
    ctx.requireLeader();
    const node = ctx.store.getNode(peer.nodeId);
    if (node === undefined) throw new ShoalError("CERT_REVOKED", `node ${peer.nodeId} is not in the cluster; join again with a token`);
    checkSessionAddr(call.request.addr);
    checkNodeDescription(call.request.description);
    const session: Session = { id: newId(), nodeId: peer.nodeId, serial: peer.serial, certZone: peer.zone, call };
    const previous = this.sessions.add(session);
    if (previous !== undefined) endStream(previous.call, handlerError(new ShoalError("FAILED_PRECONDITION", `node ${session.nodeId} opened a newer session on this manager, which replaces this one`)));
    const forget = (): void => this.sessions.forget(session, new ShoalError("UNAVAILABLE", "the session ended; open a new session"));
    call.on("cancelled", forget);
    call.on("close", forget);
    call.on("error", forget);
    this.heartbeats.beat(peer.nodeId, this.heartbeats.maxPeriodMs);
    this.log.info({ nodeId: peer.nodeId, sessionId: session.id, certSerial: peer.serial, certZone: peer.zone, replaced: previous !== undefined }, "agent session opened");
    this.push(session);
    const term = ctx.raft.term;
    void this.reports.setState(peer.nodeId, NodeState.NODE_STATE_READY, call.request.addr, term);
    void this.reports.recordCertSerial(peer.nodeId, peer.serial, term);
    if (peer.role === "swarm-worker") void this.reports.revokeSuperseded(peer.nodeId, peer.serial, term);
    if (call.request.description !== undefined) void this.reports.recordDescription(peer.nodeId, call.request.description, term);
  }

  private openAssignments(call: AssignmentsCall): void {
    const peer = this.ctx.server.peerOf(call);
    this.ctx.requireLeader();
    const session = this.bind(call.request.sessionId, peer, "Assignments");
    // The zone check uses the session's certificate, so the stream must come over that same one.
    if (peer.serial !== session.serial) {
      throw new ShoalError("FAILED_PRECONDITION", "this session was opened with another certificate of this node; open a new session with the current certificate");
    }
    this.assignments.open(session, call);
  }

  private async heartbeat(req: HeartbeatRequest, call: grpc.ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>): Promise<HeartbeatResponse> {
    const peer = this.ctx.server.peerOf(call);
    this.ctx.requireLeader();
    const session = this.bind(req.sessionId, peer, "Heartbeat");
    const periodMs = this.heartbeats.choosePeriodMs();
    this.heartbeats.beat(peer.nodeId, periodMs);
    if (!this.readyNodes.has(peer.nodeId)) void this.reports.setState(peer.nodeId, NodeState.NODE_STATE_READY, undefined, this.ctx.raft.term);
    // The session's write of the serial can lose to conflicts; a heartbeat makes it up (a cheap read when it did not).
    if (this.ctx.store.getNode(peer.nodeId)?.status?.certSerial !== session.serial) void this.reports.recordCertSerial(peer.nodeId, session.serial, this.ctx.raft.term);
    return { periodMs };
  }

  private async updateTaskStatus(req: UpdateTaskStatusRequest, call: grpc.ServerUnaryCall<UpdateTaskStatusRequest, UpdateTaskStatusResponse>): Promise<UpdateTaskStatusResponse> {
    const peer = this.ctx.server.peerOf(call);
    checkTaskStatusUpdates(req.updates);
    this.ctx.requireLeader();
    this.bind(req.sessionId, peer, "UpdateTaskStatus");
    if (req.updates.length === 0) return { refused: [] };
    const refused = await this.statuses.submit(peer.nodeId, req.updates, this.ctx.raft.term);
    return { refused };
  }

  private async reportPrefetch(req: ReportPrefetchRequest, call: grpc.ServerUnaryCall<ReportPrefetchRequest, ReportPrefetchResponse>): Promise<ReportPrefetchResponse> {
    const peer = this.ctx.server.peerOf(call);
    checkPrefetchReport(req);
    this.ctx.requireLeader();
    this.bind(req.sessionId, peer, "ReportPrefetch");
    const board = this.prefetch;
    if (board === undefined) throw new ShoalError("NOT_FOUND", `this manager runs no prefetch jobs; there is no job ${req.jobId}`);
    let entry;
    try {
      entry = authorizePrefetchReport(board.entry(peer.nodeId, req.jobId), peer.nodeId, req);
    } catch (err) {
      if (isShoalError(err, "PERMISSION_DENIED")) {
        this.log.warn({ event: "security", nodeId: peer.nodeId, certSerial: peer.serial, jobId: req.jobId, reason: "piece-hashes-from-non-seed" }, "a node that is not a seed sent piece hashes; refused");
      }
      throw err;
    }
    board.report({ nodeId: peer.nodeId, zone: entry.zone, report: req });
    return {};
  }

  /** The dispatcher's methods; ListenSubscriptions and PublishLogs are the log broker's. */
  handlers(): Pick<DispatcherServer, "session" | "heartbeat" | "assignments" | "updateTaskStatus" | "reportPrefetch"> {
    const logger = this.ctx.logger;
    return {
      session: (call) => {
        try {
          this.openSession(call);
        } catch (err) {
          endStream(call, handlerError(err, logger));
        }
      },
      heartbeat: unary((req, call) => this.heartbeat(req, call), logger),
      assignments: (call: AssignmentsCall) => {
        try {
          this.openAssignments(call);
        } catch (err) {
          endStream(call, handlerError(err, logger));
        }
      },
      updateTaskStatus: unary((req, call) => this.updateTaskStatus(req, call), logger),
      reportPrefetch: unary((req, call) => this.reportPrefetch(req, call), logger),
    };
  }
}
