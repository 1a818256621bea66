// The node lifecycle (DESIGN.md §1, §2, §3.5): the control socket, and the state machine
// inactive → (init | join) → manager | worker, locked managers and unlock, role changes that follow
// the certificate's OU, removal, and leave. Restart resumes the role from DIR/certificates/node.crt.
import * as grpc from "@grpc/grpc-js";
import { randomBytes, type KeyObject } from "node:crypto";
import { chmod, mkdir, readFile, rm, unlink } from "node:fs/promises";
import { connect } from "node:net";
import { hostname as osHostname } from "node:os";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { ShoalError, isShoalError } from "../base/errors.js";
import { systemClock, type Clock, type Timer } from "../base/clock.js";
import { newId } from "../base/ids.js";
import { systemRandom, type Random } from "../base/random.js";
import {
  createNodeKeyAndCsr,
  DEFAULT_ZONE,
  JoinTokenSet,
  parseJoinToken,
  parseNodeCertificate,
  RootCA,
  splitPemBundle,
  verifyNodeCertificate,
  isCertificateExpired,
  type NodeCertificateInfo,
  type NodeRole,
} from "../ca/index.js";
import { generateUnlockKey, kekFromUnlockKey, parseUnlockKey } from "../crypto/index.js";
import { allocateRaftId, DEFAULT_SNAPSHOT_INTERVAL_ENTRIES } from "../raft/node/index.js";
import { dataDirPaths, isNodeKeyEncrypted, readDekFile, readNodeKey, writeFileAtomic, writeNodeKey } from "../storage/index.js";
import { createJoinChannel, createSecureChannel, fetchRootCA, unaryCall, type SecureChannel } from "../transport/client.js";
import { callWithLeaderRedirect, retryWhileElecting } from "../transport/leader.js";
import { createImageResolver } from "../oci/resolver.js";
import { RegistryPrefetchSource } from "../oci/prefetch-source.js";
import { RegistryClient } from "../oci/registry-client.js";
import { NodeImages } from "../agent/images/node-images.js";
import type { PeerServer } from "../agent/p2p/peer-server.js";
import { PrefetchWaitingImages } from "../agent/prefetch-wait.js";
import type { PrefetchReport } from "../agent/prefetch-runner.js";
import type { PeerVerifier } from "../transport/identity.js";
import type { RevocationState } from "../transport/revocation.js";
import { GRPC_NO_CHANNELZ } from "../transport/server.js";
import { FailureLimiter } from "../transport/failure-limiter.js";
import { Agent, type RenewedCertificate } from "../agent/agent.js";
import type { Executor, ImageProvider } from "../agent/executor/executor.js";
import { ProcessExecutor } from "../agent/executor/process/process-executor.js";
import { RuncExecutor } from "../agent/executor/runc/runc-executor.js";
import { availableExecutors } from "../agent/node-description.js";
import { Manager, DEFAULT_RAFT_TIMING, type RaftTiming } from "../manager/manager.js";
import { unary } from "../manager/handlers.js";
import { issuedCertificateRecord, protoRole } from "../manager/caserver/ca-server.js";
import { initialRoot } from "./init-root.js";
import { renewExpiredLastManager } from "../manager/caserver/expired-renewal.js";
import { renewExpiredThroughLiveManager } from "./expired-peer-renewal.js";
import { isHostPort } from "../manager/membership.js";
import type { ControlHandlers, ControlMethod } from "../manager/controlapi/control-api.js";
import { registryAccessOf } from "../manager/controlapi/registries.js";
import {
  CAClient,
  type IssueNodeCertificateResponse,
  type NodeCertificateStatusResponse,
} from "../proto/shoal/v1/ca.js";
import { ControlService, type EventsMessage, type EventsRequest, type ServiceLogsMessage, type ServiceLogsRequest } from "../proto/shoal/v1/control.js";
import { eventsCallSink } from "./events-call.js";
import { callSink } from "../manager/logbroker/log-broker.js";
import {
  LocalNodeService,
  type InfoResponse,
  type InitRequest,
  type InitResponse,
  type JoinRequest,
  type JoinResponse,
  type LeaveRequest,
  type UnlockRequest,
} from "../proto/shoal/v1/local.js";
import {
  CertificateStatus,
  ManagerStatus_Reachability,
  NodeAvailability,
  NodeRole as ProtoNodeRole,
  NodeState,
  type Cluster,
  type Node,
} from "../proto/shoal/v1/objects.js";
import { RaftMembershipClient, type JoinRaftResponse } from "../proto/shoal/v1/raft.js";
import { readNodeFile, writeNodeFile, nodeFilePath, type NodeFile } from "./node-file.js";
import { DataDirLock } from "./data-dir-lock.js";
import { AgentPrefetch } from "./agent-prefetch.js";
import { gcRootsOf, InUseWatch, withTaskEnded } from "./content-gc-roots.js";
import { checkByteRate, checkByteSize } from "./byte-rate.js";
import { mountPeerService, WorkerPeerListener } from "./peer-listener.js";
import { DaemonMetrics } from "./metrics/daemon-metrics.js";
import { parseMetricsAddr, type MetricsAddr } from "./metrics/metrics-addr.js";
import { MetricsServer } from "./metrics/metrics-server.js";

export type DaemonState = "inactive" | "locked" | "manager" | "worker";

export interface DaemonOptions {
  dataDir: string;
  listenAddr: string;
  advertiseAddr?: string;
  /** Optional second listener for managers that requires a client certificate and checks the CRL at the handshake. */
  peerListenAddr?: string;
  socketPath?: string;
  logger: Logger;
  /** Raft timing for a cluster this node creates or joins (DESIGN.md §4 defaults otherwise). */
  raftTiming?: RaftTiming;
  heartbeatPeriodMs?: number;
  /** See ManagerOptions.workloadLoops (tests only). */
  workloadLoops?: boolean;
  snapshotIntervalEntries?: number;
  clock?: Clock;
  random?: Random;
  /** `--hostname`: the name this node reports (default: the machine's). */
  hostname?: string;
  /** `--engine-label K=V`: node-reported labels (untrusted). */
  engineLabels?: Record<string, string>;
  /** Where task secret files go (tmpfs; default /dev/shm/shoal). Tests running several nodes give each its own. */
  secretsRoot?: string;
  /** Builds image tasks' root filesystems instead of the node's content store and registry pulls (tests). */
  imageProvider?: ImageProvider;
  /** `--p2p-upload-rate`: bytes per second this node serves to peers, over all of them; 0 (default) unlimited. */
  p2pUploadBytesPerSec?: number;
  /** `--p2p-download-rate`: bytes per second this node fetches from peers; 0 (default) unlimited. */
  p2pDownloadBytesPerSec?: number;
  /**
   * `--content-max-bytes`: the cap on the content store's complete blobs; over it, unreferenced
   * blobs are removed, least recently used first. 0 (default): no cap.
   */
  contentMaxBytes?: number;
  /** Least time between two content store GC runs (default 5 s; tests). */
  contentGcIntervalMs?: number;
  /** First component of the runc tasks' cgroup paths (default "shoal"). */
  cgroupParent?: string;
  /**
   * `--renew-expired`: a manager whose certificate expired while it was down and that is its
   * cluster's last manager reissues its own certificate from the CA key it holds (after unlock when
   * autolock is on), keeping node ID, role, zone and cluster. Without it such a manager refuses to start.
   */
  renewExpired?: boolean;
  /**
   * With `renewExpired` (`--renew-expired-token-file`): the manager join token. The expired manager
   * then asks a live manager for its new certificate (expired certificate plus token) before its
   * manager role starts, instead of reissuing it itself. Never logged.
   */
  renewExpiredToken?: string;
  /** `--metrics-addr HOST:PORT`: serve Prometheus metrics at GET /metrics there (off without it; port 0 picks one). */
  metricsAddr?: string;
  /** `--metrics-allow-remote`: let --metrics-addr listen on a host other than loopback. */
  metricsAllowRemote?: boolean;
}

/** Largest message accepted on the control socket (a secret is at most 500 KiB). */
export const MAX_SOCKET_MESSAGE_BYTES = 4 * 1024 * 1024;
const JOIN_CALL_DEADLINE_MS = 20_000;
/** How long a promoted node retries its raft join with backoff before retrying in the background. */
const PROMOTION_JOIN_BUDGET_MS = 30_000;
/** How long `shoal join` keeps retrying while the cluster has no leader (NOT_LEADER, NO_QUORUM). */
const JOIN_ELECTION_BUDGET_MS = 15_000;
const PROMOTION_RETRY_MS = 10_000;
/** How long `--renew-expired` waits for the last manager to elect itself and apply its log. */
const RENEW_EXPIRED_BUDGET_MS = 30_000;

function notInCluster(): ShoalError {
  return new ShoalError("NOT_IN_CLUSTER", "this node is not part of a cluster: run `shoal init` to create one or `shoal join` to join one");
}

/** True when something accepts connections on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function roleOf(certPem: string): NodeRole {
  return parseNodeCertificate(certPem).role;
}

export class Daemon {
  private state: DaemonState = "inactive";
  private manager: Manager | undefined;
  private agent: Agent | undefined;
  private node: NodeFile | undefined;
  private certPem = "";
  private keyPem = "";
  private rootCaPem = "";
  private lifecycle: Promise<unknown> = Promise.resolve();
  private socketServer: grpc.Server | undefined;
  private dataDirLock: DataDirLock | undefined;
  private stopping = false;
  /** A background retry of the raft join after a promotion whose join kept failing. */
  private promotionRetry: Timer | undefined;
  /**
   * The node's one content store (DIR/content) with the image provider and the piece store on it,
   * opened on first use; it outlives agents and roles, as the directory does.
   */
  private readonly images: NodeImages;
  /** The current agent's prefetch runner and peer client. */
  private agentPrefetch: AgentPrefetch | undefined;
  /** The P2P peer service on the manager's TLS server, while this node is a manager. */
  private managerPeer: PeerServer | undefined;
  /** A pure worker's own listener for the P2P peer service, on --listen-addr. */
  private workerPeer: WorkerPeerListener | undefined;
  private readonly uploadBytesPerSec: number;
  private readonly downloadBytesPerSec: number;
  /** Set when the daemon stopped because of an error it must not limp past (the CLI exits non-zero). */
  fatalError: Error | undefined;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly paths: ReturnType<typeof dataDirPaths>;
  /** The name this node reports (in its description and when it joins). */
  private readonly hostname: string;
  /** Wrong unlock keys are slowed down; one key for the whole socket, as only the owner can reach it. */
  private readonly unlockLimiter: FailureLimiter;
  /** The manager's certificate on disk had expired at start and `--renew-expired` was given: renew once the manager runs. */
  private renewExpiredPending = false;
  /** As renewExpiredPending, with a manager token: renew through a live manager before the manager role starts. */
  private renewThroughPeerPending = false;
  /** `--metrics-addr`: where, the collectors, and the listener once open. */
  private readonly metricsAddr: MetricsAddr | undefined;
  private readonly metrics: DaemonMetrics | undefined;
  private metricsServer: MetricsServer | undefined;
  private resolveStopped!: () => void;
  /** Settles when the daemon has stopped (signal, fatal error or stop()). */
  readonly stopped: Promise<void> = new Promise((resolve) => (this.resolveStopped = resolve));

  constructor(private readonly opts: DaemonOptions) {
    this.log = opts.logger.child({ component: "daemon" });
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? systemRandom;
    this.paths = dataDirPaths(opts.dataDir);
    this.hostname = opts.hostname ?? osHostname();
    this.unlockLimiter = new FailureLimiter({ clock: this.clock, what: "unlock attempts" });
    this.uploadBytesPerSec = checkByteRate(opts.p2pUploadBytesPerSec, "--p2p-upload-rate");
    this.downloadBytesPerSec = checkByteRate(opts.p2pDownloadBytesPerSec, "--p2p-download-rate");
    const contentMaxBytes = checkByteSize(opts.contentMaxBytes, "--content-max-bytes");
    this.metricsAddr = opts.metricsAddr === undefined ? undefined : parseMetricsAddr(opts.metricsAddr, opts.metricsAllowRemote === true);
    this.metrics =
      this.metricsAddr === undefined
        ? undefined
        : new DaemonMetrics({
            clock: this.clock,
            view: () => ({ state: this.state, manager: this.manager, revocation: this.manager?.revocation ?? this.agent?.revocation, certPem: this.certPem }),
          });
    this.images = new NodeImages({
      contentDir: join(opts.dataDir, "content"),
      logger: this.log,
      clock: this.clock,
      contentMaxBytes,
      gcRoots: () => gcRootsOf(this.agent),
      ...(opts.contentGcIntervalMs !== undefined ? { gcMinIntervalMs: opts.contentGcIntervalMs } : {}),
    });
  }

  get socketPath(): string {
    return this.opts.socketPath ?? this.paths.socketFile;
  }

  get currentState(): DaemonState {
    return this.state;
  }

  /** The port the manager's TLS listener is bound to (useful with port 0). */
  get managerPort(): number | undefined {
    return this.manager?.boundPort;
  }

  /** The port the metrics endpoint listens on (undefined without --metrics-addr). */
  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /** The revocation list this node's agent received from the managers (undefined without an agent). */
  get agentRevocation(): RevocationState | undefined {
    return this.agent?.revocation;
  }

  /** This node's agent (undefined while it has none): its assignments and task runner, for tests and diagnostics. */
  get nodeAgent(): Agent | undefined {
    return this.agent;
  }

  /** This node's manager role (undefined while it has none): its store and context, for tests and diagnostics. */
  get nodeManager(): Manager | undefined {
    return this.manager;
  }

  /** The agent's verifier for P2P peers (undefined without an agent). */
  get peerVerifier(): PeerVerifier | undefined {
    return this.agent?.peerVerifier;
  }

  /** The port of a pure worker's P2P peer listener (undefined when it has none: a manager serves on its own). */
  get workerPeerPort(): number | undefined {
    return this.workerPeer?.port;
  }

  /** The prefetch runner of this node's agent (tests and diagnostics). */
  get prefetchRunner(): AgentPrefetch["runner"] | undefined {
    return this.agentPrefetch?.runner;
  }

  private get advertiseAddr(): string {
    return this.opts.advertiseAddr ?? this.opts.listenAddr;
  }

  private get timing(): RaftTiming {
    return this.opts.raftTiming ?? DEFAULT_RAFT_TIMING;
  }

  /** Runs lifecycle changes one at a time. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lifecycle.then(fn, fn);
    this.lifecycle = next.catch(() => undefined);
    return next;
  }

  private setLoggerNode(nodeId: string | undefined): void {
    // Child loggers made after this carry the node ID; existing ones get it through bindings below.
    (this.log as Logger & { setBindings?: (b: object) => void }).setBindings?.({ nodeId: nodeId ?? "" });
  }

  private childLogger(): Logger {
    return this.opts.logger.child({ nodeId: this.node?.nodeId ?? "" });
  }

  // ---- start ----

  async start(): Promise<void> {
    await mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    await chmod(this.opts.dataDir, 0o700).catch(() => undefined);
    // Before anything else touches the directory or the socket: a second daemon exits here.
    this.dataDirLock = await DataDirLock.acquire(this.opts.dataDir, this.clock.nowMs());
    try {
      await this.resume();
      await this.openMetrics();
      await this.openSocket();
    } catch (err) {
      await this.stopRoles().catch(() => undefined);
      await this.closeMetrics();
      await this.releaseDataDir();
      throw err;
    }
    this.log.info({ state: this.state, socket: this.socketPath }, "daemon started");
    // Over the cap since the last run (a smaller cap, blobs left by a crash): collect now.
    this.images.requestGc();
  }

  private async releaseDataDir(): Promise<void> {
    const lock = this.dataDirLock;
    this.dataDirLock = undefined;
    await lock?.release().catch((err: unknown) => this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "could not release the data directory lock"));
  }

  private async resume(): Promise<void> {
    const node = await readNodeFile(this.opts.dataDir);
    if (node === undefined) return;
    let certPem: string;
    try {
      certPem = await readFile(this.paths.nodeCertFile, "utf8");
      this.rootCaPem = await readFile(this.paths.rootCaFile, "utf8");
    } catch {
      this.log.warn({}, "node.json exists but the certificates are missing; starting unjoined");
      return;
    }
    this.node = node;
    this.certPem = certPem;
    this.setLoggerNode(node.nodeId);
    const role = roleOf(certPem);
    // Before any key is read or connection made: an expired certificate cannot be renewed the usual
    // way, and an agent holding one would only retry for ever (moby/moby#24132, #42660).
    this.checkExpiryAtStart(parseNodeCertificate(certPem), role);
    if (role === "swarm-manager" && (await isNodeKeyEncrypted(this.paths.nodeKeyFile))) {
      this.state = "locked";
      this.log.warn({}, "this manager is locked: autolock is on; run `shoal unlock` with the unlock key");
      return;
    }
    const nodeKey = await readNodeKey(this.paths.nodeKeyFile);
    this.keyPem = nodeKey.export({ type: "pkcs8", format: "pem" }).toString();
    if (role === "swarm-manager") {
      await this.renewThroughPeerIfPending(nodeKey, undefined);
      await this.startManagerRole(undefined, undefined);
      await this.renewExpiredIfPending();
    } else {
      this.state = "worker";
    }
    this.startAgent();
    await this.syncPeerListener();
  }

  /**
   * An expired node certificate at start (by the injected clock): a worker, or a manager without
   * `--renew-expired`, stops here with CERT_EXPIRED and what to do; a manager with the flag renews
   * once its manager role runs (after unlock when it is locked).
   */
  private checkExpiryAtStart(cert: NodeCertificateInfo, role: NodeRole): void {
    const dir = this.opts.dataDir;
    if (!isCertificateExpired(cert, this.clock)) {
      if (this.opts.renewExpired === true) this.log.info({ notAfter: cert.notAfter.toISOString() }, "--renew-expired: the node certificate has not expired; nothing to renew");
      return;
    }
    const expiredAt = cert.notAfter.toISOString();
    if (role === "swarm-worker") {
      this.log.error({ notAfter: expiredAt }, "the node certificate expired while the node was down; the worker must join again");
      throw new ShoalError(
        "CERT_EXPIRED",
        `this worker's certificate (node ${cert.nodeId}) expired at ${expiredAt} while the node was down; an expired certificate cannot be renewed, so the node must join again as a new node: ` +
          `remove what \`shoal leave\` would (${join(dir, "node.json")} and ${join(dir, "certificates")}), start \`shoal daemon\` again, and run \`shoal join --token <worker token> <manager host:port>\` (\`shoal join-token worker\` on a manager prints the token); ` +
          `it gets a new node ID: remove the old one with \`shoal node rm ${cert.nodeId}\` on a manager`,
      );
    }
    if (this.opts.renewExpired !== true) {
      this.log.error({ notAfter: expiredAt }, "the manager certificate expired while the node was down");
      throw new ShoalError(
        "CERT_EXPIRED",
        `this manager's certificate (node ${cert.nodeId}) expired at ${expiredAt} while the node was down. ` +
          "If other managers still have quorum, put the current manager join token (`shoal join-token manager -q` on a live manager) in a file only you can read and start this one with " +
          "`shoal daemon --renew-expired --renew-expired-token-file FILE` (FILE `-` reads it from stdin): a live manager renews it, keeping its node ID, role, zone and raft membership (with autolock, after `shoal unlock`). " +
          "If it is the cluster's last manager (a single-manager cluster), start it with `shoal daemon --renew-expired` alone to reissue its certificate from the CA key it holds (the same is kept). " +
          `Otherwise run \`shoal node rm --force ${cert.nodeId}\` on a live manager, remove this node's ${join(dir, "node.json")}, ${join(dir, "certificates")}, ${join(dir, "state")} and ${join(dir, "keys")}, and join again with a manager token`,
      );
    }
    if (this.opts.renewExpiredToken !== undefined) {
      this.log.warn({ notAfter: expiredAt }, "the manager certificate expired while the node was down; --renew-expired with a manager token: asking a live manager to renew it");
      this.renewThroughPeerPending = true;
      return;
    }
    this.log.warn({ notAfter: expiredAt }, "the manager certificate expired while the node was down; --renew-expired: reissuing it from the cluster CA once the manager runs");
    this.renewExpiredPending = true;
  }

  /**
   * `--renew-expired` on the last manager: the running manager (leader on its own) signs this node a
   * new certificate for a new key, with its role and zone from the store; then the daemon switches to
   * it as after any renewal. Refusals (not the last manager, removed, demoted) are thrown.
   */
  private async renewExpiredIfPending(): Promise<void> {
    if (!this.renewExpiredPending) return;
    const manager = this.manager!;
    const { privateKey, csrPem } = await createNodeKeyAndCsr();
    const renewal = await renewExpiredLastManager(manager.ctx, { expiredCertPem: this.certPem, csr: csrPem, timeoutMs: RENEW_EXPIRED_BUDGET_MS });
    const info = verifyNodeCertificate(renewal.certPem, { rootCA: RootCA.fromCertOnly(this.rootCaPem), clusterId: this.node!.clusterId, roles: ["swarm-manager"], clock: this.clock });
    if (info.nodeId !== this.node!.nodeId) throw new ShoalError("CERT_INVALID", "the reissued certificate names another node");
    await this.certificateRenewed({ certPem: renewal.certPem, privateKey, role: info.role });
    this.renewExpiredPending = false;
    this.log.warn(
      { previousSerial: renewal.previousSerial, serial: info.serial, role: info.role, zone: info.zone, notAfter: info.notAfter.toISOString() },
      "--renew-expired: this last manager reissued its own expired certificate from the cluster CA key",
    );
  }

  /**
   * `--renew-expired` with a manager token: before the manager role starts, a live manager renews
   * the expired certificate (src/daemon/expired-peer-renewal.ts); the new key and certificate are
   * written as after any renewal (the key wrapped under `unlockKey` with autolock). Refusals are thrown.
   */
  private async renewThroughPeerIfPending(oldKey: KeyObject, unlockKey: string | undefined): Promise<void> {
    if (!this.renewThroughPeerPending) return;
    const node = this.node!;
    const previousSerial = parseNodeCertificate(this.certPem).serial;
    let renewal;
    try {
      renewal = await renewExpiredThroughLiveManager({
        managers: node.managers,
        selfAddr: node.advertiseAddr,
        token: this.opts.renewExpiredToken!,
        expiredCertPem: this.certPem,
        oldKey,
        nodeId: node.nodeId,
        clusterId: node.clusterId,
        rootCaPem: this.rootCaPem,
        clock: this.clock,
        logger: this.log,
      });
    } catch (err) {
      this.log.error({ code: isShoalError(err) ? err.code : "INTERNAL", err: err instanceof Error ? err.message : String(err) }, "--renew-expired: the expired manager certificate was not renewed; nothing changed");
      throw err;
    }
    await writeNodeKey(this.paths.nodeKeyFile, renewal.privateKey, unlockKey);
    await writeFileAtomic(this.paths.nodeCertFile, renewal.certPem, 0o644);
    this.certPem = renewal.certPem;
    this.keyPem = renewal.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    this.renewThroughPeerPending = false;
    const info = renewal.info;
    this.log.warn(
      { previousSerial, serial: info.serial, role: info.role, zone: info.zone, notAfter: info.notAfter.toISOString(), via: renewal.via },
      "--renew-expired: a live manager renewed this manager's expired certificate (expired certificate plus manager token)",
    );
  }

  // ---- metrics ----

  /** `--metrics-addr`: opened whatever the state (a locked manager shows its process and lock state). */
  private async openMetrics(): Promise<void> {
    if (this.metricsAddr === undefined || this.metrics === undefined) return;
    this.metricsServer = await MetricsServer.start(this.metricsAddr, this.metrics, (err) => this.log.warn({ err: err.message }, "metrics endpoint error"));
    this.log.info({ addr: `${this.metricsAddr.host}:${this.metricsServer.port}`, port: this.metricsServer.port }, "serving Prometheus metrics at GET /metrics");
  }

  private async closeMetrics(): Promise<void> {
    const server = this.metricsServer;
    this.metricsServer = undefined;
    await server?.close();
  }

  // ---- socket ----

  private async openSocket(): Promise<void> {
    const path = this.socketPath;
    await mkdir(dirname(path), { recursive: true });
    // DIR/LOCK covers the data dir; a --socket shared with a daemon of another dir is checked here:
    // only a socket nobody answers on (left by a crash) is replaced.
    if (await socketAnswers(path)) {
      throw new ShoalError("FAILED_PRECONDITION", `the control socket ${path} is in use by another shoal daemon: stop it, or give this one another --socket`);
    }
    await unlink(path).catch(() => undefined);
    const server = new grpc.Server({
      "grpc.max_receive_message_length": MAX_SOCKET_MESSAGE_BYTES,
      "grpc.max_send_message_length": 16 * 1024 * 1024,
      ...GRPC_NO_CHANNELZ,
    });
    const log = this.log;
    server.addService(LocalNodeService, {
      info: unary(async () => this.info(), log),
      init: unary(async (req: InitRequest) => this.serialize(() => this.notLocked().then(() => this.init(req))), log),
      join: unary(async (req: JoinRequest) => this.serialize(() => this.notLocked().then(() => this.join(req))), log),
      unlock: unary(
        async (req: UnlockRequest) => this.unlockLimiter.run("socket", () => this.serialize(() => this.unlock(req)), (err) => err instanceof ShoalError && err.code === "UNLOCK_KEY_WRONG"),
        log,
      ),
      leave: unary(async (req: LeaveRequest) => this.serialize(() => this.notLocked().then(() => this.leave(req))), log),
    });
    const control: Record<
      string,
      grpc.handleUnaryCall<unknown, unknown> | grpc.handleServerStreamingCall<ServiceLogsRequest, ServiceLogsMessage> | grpc.handleServerStreamingCall<EventsRequest, EventsMessage>
    > = {};
    for (const method of Object.keys(ControlService) as ControlMethod[]) {
      if ((method as string) === "serviceLogs" || (method as string) === "events") continue;
      control[method] = unary(async (req: unknown) => this.controlCall(method, req), log);
    }
    control["serviceLogs"] = (call: grpc.ServerWritableStream<ServiceLogsRequest, ServiceLogsMessage>) => void this.serviceLogsCall(call);
    control["events"] = (call: grpc.ServerWritableStream<EventsRequest, EventsMessage>) => void this.eventsCall(call);
    server.addService(ControlService, control);
    // Only the owner may connect: create the socket under a umask-like mode, then tighten it.
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(new ShoalError("UNAVAILABLE", `cannot open the control socket ${path}: ${err.message}`));
        else resolve();
      });
    });
    await chmod(path, 0o600);
    this.socketServer = server;
  }

  /** A locked manager answers only Info and Unlock (DESIGN.md §3 rule 5). */
  private async notLocked(): Promise<void> {
    if (this.state === "locked") throw new ShoalError("LOCKED", "this manager is locked (autolock is on): run `shoal unlock` with the unlock key first");
  }

  private async controlCall(method: ControlMethod, request: unknown): Promise<unknown> {
    const manager = await this.activeManager();
    return manager.callControl(method as keyof ControlHandlers, request);
  }

  /** The manager behind a control call on the socket: refused while locked, out of a cluster, or on a worker. */
  private async activeManager(): Promise<Manager> {
    await this.notLocked();
    if (this.state === "inactive") throw notInCluster();
    if (this.manager === undefined) {
      throw new ShoalError("NOT_MANAGER", "this node is not a manager: run the command on a manager node (see `shoal info` for the managers)");
    }
    return this.manager;
  }

  /** `service logs` on the local socket: a stream, served or forwarded by the manager. */
  private async serviceLogsCall(call: grpc.ServerWritableStream<ServiceLogsRequest, ServiceLogsMessage>): Promise<void> {
    const sink = callSink(call);
    try {
      const manager = await this.activeManager();
      const cancel = await manager.serviceLogs(call.request, sink);
      if (call.cancelled) cancel();
      else call.on("cancelled", cancel);
    } catch (err) {
      sink.end(isShoalError(err) ? err : new ShoalError("INTERNAL", "internal error in the daemon; see its log"));
    }
  }

  /** `shoal events` on the local socket: served from this manager's own event history, never forwarded. */
  private async eventsCall(call: grpc.ServerWritableStream<EventsRequest, EventsMessage>): Promise<void> {
    const sink = eventsCallSink(call);
    try {
      const manager = await this.activeManager();
      const cancel = manager.events(call.request, sink);
      if (call.cancelled) cancel();
      else call.on("cancelled", cancel);
    } catch (err) {
      sink.end(isShoalError(err) ? err : new ShoalError("INTERNAL", "internal error in the daemon; see its log"));
    }
  }

  // ---- info ----

  async info(): Promise<InfoResponse> {
    const node = this.node;
    const base: InfoResponse = {
      nodeId: node?.nodeId ?? "",
      clusterId: node?.clusterId ?? "",
      role: ProtoNodeRole.NODE_ROLE_UNSPECIFIED,
      locked: this.state === "locked",
      state: this.state === "inactive" ? "inactive" : this.state === "locked" ? "locked" : "active",
      leaderAddr: "",
      leaderNodeId: "",
      managers: [],
      addr: node?.advertiseAddr ?? "",
      autolock: this.state === "locked" || (node?.autolock ?? false),
      zone: "",
      certNotAfter: "",
    };
    if (this.certPem !== "") {
      const cert = parseNodeCertificate(this.certPem);
      base.role = protoRole(cert.role);
      base.zone = cert.zone;
      base.certNotAfter = cert.notAfter.toISOString();
    }
    if (this.manager !== undefined) {
      const status = this.manager.raft.status();
      const leader = status.members.find((m) => m.raftId === status.leaderId);
      base.leaderAddr = leader?.addr ?? "";
      base.leaderNodeId = leader?.nodeId ?? "";
      const reachable = this.manager.isLeader ? this.manager.ctx.reachableVoters() : undefined;
      base.managers = status.members.map((m) => ({
        nodeId: m.nodeId,
        addr: m.addr,
        leader: m.raftId === status.leaderId,
        reachable: reachable === undefined ? m.raftId === status.leaderId || m.raftId === status.id : reachable.has(m.raftId),
      }));
      base.autolock = this.manager.currentUnlockKey !== undefined;
      if (status.leaderId === 0n) base.state = "pending";
    } else if (this.agent !== undefined) {
      const session = this.agent.lastSession;
      const leaderAddr = this.agent.sessionAddr;
      base.managers = (session?.managers ?? []).map((m) => ({ nodeId: m.nodeId, addr: m.addr, leader: m.addr === leaderAddr, reachable: this.agent!.isConnected }));
      const leader = base.managers.find((m) => m.leader);
      base.leaderAddr = leader?.addr ?? "";
      base.leaderNodeId = leader?.nodeId ?? "";
      if (!this.agent.isConnected) base.state = "pending";
    }
    return base;
  }

  // ---- init ----

  private async init(req: InitRequest): Promise<InitResponse> {
    if (this.state !== "inactive") {
      throw new ShoalError("ALREADY_IN_CLUSTER", "this node is already part of a cluster: run `shoal leave` first to create a new one");
    }
    const advertiseAddr = req.advertiseAddr || this.advertiseAddr;
    if (!isHostPort(advertiseAddr) || advertiseAddr.startsWith("0.0.0.0:") || advertiseAddr.startsWith("[::]:")) {
      throw new ShoalError("INVALID_ARGUMENT", `cannot advertise ${advertiseAddr}: give --advertise-addr HOST:PORT that other nodes can reach`);
    }
    const expirySeconds = req.certExpirySeconds;
    if (expirySeconds !== 0n && (expirySeconds < 3600n || expirySeconds > 10n * 365n * 24n * 3600n)) {
      throw new ShoalError("INVALID_ARGUMENT", "--cert-expiry must be between 1h and 10 years");
    }
    const timing: RaftTiming = {
      tickMs: req.tickMs || this.timing.tickMs,
      electionTicks: req.electionTicks || this.timing.electionTicks,
      heartbeatTicks: req.heartbeatTicks || this.timing.heartbeatTicks,
    };
    if (timing.tickMs > 10_000 || timing.electionTicks > 1000 || timing.heartbeatTicks >= timing.electionTicks) {
      throw new ShoalError("INVALID_ARGUMENT", "raft timing is out of range: tick at most 10 s, election ticks at most 1000 and more than heartbeat ticks");
    }
    const clusterId = newId();
    const nodeId = newId();
    const raftId = allocateRaftId([], this.random);
    const { privateKey, csrPem } = await createNodeKeyAndCsr();
    const validityMs = expirySeconds === 0n ? undefined : Number(expirySeconds) * 1000;
    // Generated, or with --external-ca the operator's root certificate and a certificate from the signer.
    const { rootCA, caKeyPem, externalCa, issued } = await initialRoot(req, { clusterId, nodeId, csrPem, validityMs, clock: this.clock });
    const tokens = JoinTokenSet.generate(rootCA);
    const unlockKey = req.autolock ? generateUnlockKey() : undefined;

    await rm(this.paths.stateDir, { recursive: true, force: true });
    await rm(this.paths.keysDir, { recursive: true, force: true });
    await mkdir(this.paths.certificatesDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.paths.rootCaFile, rootCA.certPem, 0o644);
    await writeFileAtomic(this.paths.nodeCertFile, issued.certPem, 0o644);
    await writeNodeKey(this.paths.nodeKeyFile, privateKey, unlockKey);

    const cluster: Cluster = {
      id: clusterId,
      meta: undefined,
      spec: {
        name: "default",
        caConfig: { nodeCertExpirySeconds: expirySeconds, externalCa },
        encryptionConfig: { autolockManagers: req.autolock },
        raftConfig: {
          tickMs: timing.tickMs,
          heartbeatTicks: timing.heartbeatTicks,
          electionTicks: timing.electionTicks,
          snapshotIntervalEntries: BigInt(this.opts.snapshotIntervalEntries ?? DEFAULT_SNAPSHOT_INTERVAL_ENTRIES),
          logEntriesForSlowFollowers: 500n,
        },
      },
      rootCa: {
        caCertPem: Buffer.from(rootCA.certPem),
        caKeyPem: Buffer.from(caKeyPem),
        caDigest: rootCA.digest(),
        joinTokens: tokens.toProto(),
        rootRotation: undefined,
      },
      revocationList: { nodes: [] },
      unlockKey: unlockKey ?? "",
      removedRaftIds: [],
      secretMacKey: randomBytes(32),
      registries: [],
    };
    const node: Node = {
      id: nodeId,
      meta: undefined,
      spec: { desiredRole: ProtoNodeRole.NODE_ROLE_MANAGER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE, labels: {} },
      description: { hostname: this.hostname, platform: `${process.platform}/${process.arch}`, engineVersion: "", engineLabels: {}, executors: [], resources: undefined },
      status: { state: NodeState.NODE_STATE_READY, message: "", addr: advertiseAddr, lastHeartbeat: new Date(this.clock.nowMs()) },
      certificate: issuedCertificateRecord(issued, "swarm-manager", DEFAULT_ZONE),
      managerStatus: { raftId, addr: advertiseAddr, leader: true, reachability: ManagerStatus_Reachability.REACHABILITY_REACHABLE, voter: true },
      role: ProtoNodeRole.NODE_ROLE_MANAGER,
    };
    this.node = {
      nodeId,
      clusterId,
      raftId: raftId.toString(),
      advertiseAddr,
      autolock: req.autolock,
      managers: [advertiseAddr],
      raftTiming: timing,
    };
    this.certPem = issued.certPem;
    this.keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    this.rootCaPem = rootCA.certPem;
    this.setLoggerNode(nodeId);
    try {
      await this.startManagerRole(unlockKey, { bootstrap: { cluster, node } });
    } catch (err) {
      await this.wipe();
      throw err;
    }
    await writeNodeFile(this.opts.dataDir, this.node);
    this.startAgent();
    this.log.info({ clusterId, autolock: req.autolock, rootKey: caKeyPem === "" ? "none (external CA)" : "held by the managers" }, "initialized a new cluster");
    return {
      nodeId,
      clusterId,
      workerToken: tokens.token("swarm-worker"),
      managerToken: tokens.token("swarm-manager"),
      unlockKey: unlockKey ?? "",
    };
  }

  // ---- join ----

  private async join(req: JoinRequest): Promise<JoinResponse> {
    if (this.state !== "inactive") {
      throw new ShoalError("ALREADY_IN_CLUSTER", "this node is already part of a cluster: run `shoal leave` first to join another one");
    }
    if (!isHostPort(req.remoteAddr)) throw new ShoalError("INVALID_ARGUMENT", "the manager address must be HOST:PORT");
    const advertiseAddr = req.advertiseAddr || this.advertiseAddr;
    if (!isHostPort(advertiseAddr)) throw new ShoalError("INVALID_ARGUMENT", "the advertise address must be HOST:PORT");
    if (!Object.values(NodeAvailability).includes(req.availability)) throw new ShoalError("INVALID_ARGUMENT", "availability must be active, pause or drain");
    const parsed = parseJoinToken(req.token);
    const rootCaPem = await fetchRootCA(req.remoteAddr, parsed.caDigest, { timeoutMs: JOIN_CALL_DEADLINE_MS });
    const rootCA = RootCA.fromCertOnly(rootCaPem);
    const { privateKey, csrPem } = await createNodeKeyAndCsr();
    const issued = await this.retryWhileElecting("the join", () =>
      callWithLeaderRedirect<SecureChannel, IssueNodeCertificateResponse>({
        address: req.remoteAddr,
        connect: (addr) => createJoinChannel(addr, rootCaPem),
        call: (ch) =>
          unaryCall<IssueNodeCertificateResponse>((cb) =>
            ch.client(CAClient).issueNodeCertificate(
              { csr: Buffer.from(csrPem), token: req.token, availability: req.availability, hostname: this.hostname, addr: advertiseAddr },
              new grpc.Metadata(),
              { deadline: Date.now() + JOIN_CALL_DEADLINE_MS },
              cb,
            ),
          ),
      }),
    );
    let certPem: string;
    try {
      const ca = issued.connection.client(CAClient);
      let status: NodeCertificateStatusResponse | undefined;
      const deadline = Date.now() + JOIN_CALL_DEADLINE_MS;
      for (;;) {
        status = await unaryCall<NodeCertificateStatusResponse>((cb) =>
          ca.nodeCertificateStatus({ nodeId: issued.value.nodeId }, new grpc.Metadata(), { deadline: Date.now() + JOIN_CALL_DEADLINE_MS }, cb),
        );
        if (status.status === CertificateStatus.CERTIFICATE_STATUS_ISSUED && status.certificate.length > 0) break;
        if (Date.now() > deadline) throw new ShoalError("TIMEOUT", "the leader did not issue the certificate in time; retry the join");
        await new Promise((r) => setTimeout(r, 100));
      }
      certPem = Buffer.from(status.certificate).toString("utf8");
    } finally {
      issued.connection.close();
    }
    const info = verifyNodeCertificate(certPem, { rootCA, clock: this.clock });
    if (info.nodeId !== issued.value.nodeId) throw new ShoalError("CERT_INVALID", "the manager returned a certificate for another node");
    const leaderAddr = issued.address;

    await rm(this.paths.stateDir, { recursive: true, force: true });
    await rm(this.paths.keysDir, { recursive: true, force: true });
    await mkdir(this.paths.certificatesDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.paths.rootCaFile, rootCaPem, 0o644);
    await writeFileAtomic(this.paths.nodeCertFile, certPem, 0o644);
    await writeNodeKey(this.paths.nodeKeyFile, privateKey);
    this.node = {
      nodeId: info.nodeId,
      clusterId: info.clusterId,
      raftId: "",
      advertiseAddr,
      autolock: false,
      managers: [...new Set([leaderAddr, req.remoteAddr])],
      raftTiming: this.timing,
    };
    this.certPem = certPem;
    this.keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    this.rootCaPem = rootCaPem;
    this.setLoggerNode(info.nodeId);
    try {
      if (info.role === "swarm-manager") {
        await this.retryWhileElecting("the raft join", () => this.joinRaftAndStart(leaderAddr));
      } else {
        this.state = "worker";
      }
      await writeNodeFile(this.opts.dataDir, this.node);
    } catch (err) {
      await this.stopRoles();
      await this.wipe();
      throw err;
    }
    this.startAgent();
    await this.syncPeerListener();
    this.log.info({ clusterId: info.clusterId, role: info.role }, "joined the cluster");
    return { nodeId: info.nodeId, role: protoRole(info.role), clusterId: info.clusterId };
  }

  /** Retries `attempt` for up to JOIN_ELECTION_BUDGET_MS while the cluster is electing a leader. */
  private retryWhileElecting<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    return retryWhileElecting(
      { clock: this.clock, budgetMs: JOIN_ELECTION_BUDGET_MS, onRetry: (err, delayMs) => this.log.info({ code: err.code, retryInMs: delayMs }, `${what} met an election; retrying`) },
      attempt,
    );
  }

  /** Asks the leader to add this manager to raft (as a learner), then starts the manager role. */
  private async joinRaftAndStart(firstAddr: string): Promise<void> {
    const node = this.node!;
    const candidates = [...new Set([firstAddr, ...node.managers, ...(this.agent?.knownManagers ?? [])])];
    let lastErr: unknown;
    let response: JoinRaftResponse | undefined;
    for (const addr of candidates) {
      try {
        const result = await callWithLeaderRedirect<SecureChannel, JoinRaftResponse>({
          address: addr,
          connect: (a) =>
            createSecureChannel(a, {
              rootCaPem: this.rootCaPem,
              certPem: this.certPem,
              keyPem: this.keyPem,
              expectServerRole: "swarm-manager",
              clusterId: node.clusterId,
            }),
          call: (ch) =>
            unaryCall<JoinRaftResponse>((cb) =>
              ch.client(RaftMembershipClient).join({ addr: node.advertiseAddr }, new grpc.Metadata(), { deadline: Date.now() + JOIN_CALL_DEADLINE_MS }, cb),
            ),
        });
        result.connection.close();
        response = result.value;
        break;
      } catch (err) {
        lastErr = err;
      }
    }
    if (response === undefined) throw lastErr instanceof Error ? lastErr : new ShoalError("UNAVAILABLE", "no manager answered the raft join");
    node.raftId = response.raftId.toString();
    await this.startManagerRole(undefined, {
      join: {
        members: response.members.map((m) => ({ raftId: m.raftId, nodeId: m.nodeId, addr: m.addr })),
        removedIds: response.removedRaftIds,
      },
    });
  }

  // ---- roles ----

  private async startManagerRole(
    unlockKey: string | undefined,
    seed: { bootstrap?: { cluster: Cluster; node: Node }; join?: { members: { raftId: bigint; nodeId: string; addr: string }[]; removedIds: bigint[] } } | undefined,
  ): Promise<void> {
    const node = this.node!;
    if (node.raftId === "") throw new ShoalError("FAILED_PRECONDITION", "this manager has no raft ID; it must join raft first");
    // The resolver and the prefetch source read the registry logins from the replicated store the
    // manager is started with, and share one client (and the tokens it learns).
    let started: Manager | undefined;
    const access = (registry: string) => registryAccessOf(started?.store.getCluster(), registry);
    const registry = new RegistryClient({ access });
    // The manager's TLS server takes this node's address: a worker listener of this node goes first.
    await this.closeWorkerPeerListener();
    let mountedPeer: PeerServer | undefined;
    const manager = await Manager.start({
      dataDir: this.opts.dataDir,
      nodeId: node.nodeId,
      clusterId: node.clusterId,
      raftId: BigInt(node.raftId),
      listenAddr: this.opts.listenAddr,
      peerListenAddr: this.opts.peerListenAddr,
      advertiseAddr: node.advertiseAddr,
      rootCaPem: this.rootCaPem,
      identity: { certPem: this.certPem, keyPem: this.keyPem },
      unlockKey,
      bootstrap: seed?.bootstrap,
      join: seed?.join,
      raftTiming: node.raftTiming,
      heartbeatPeriodMs: this.opts.heartbeatPeriodMs,
      workloadLoops: this.opts.workloadLoops,
      snapshotIntervalEntries: this.opts.snapshotIntervalEntries,
      // The leader resolves each service's image once into a manifest digest that its tasks carry.
      resolveImage: createImageResolver({ access, client: registry }),
      prefetch: { images: new RegistryPrefetchSource({ access, client: registry }) },
      // The node's pieces are served on the manager's own listener, checked against its revocation list.
      mountServices: (server, revocation) => {
        mountedPeer = mountPeerService(server, revocation, this.peerServiceOptions());
      },
      logger: this.childLogger(),
      clock: this.clock,
      random: this.random,
      ...(this.metrics !== undefined
        ? { observers: { raft: this.metrics.raftObserver, dispatcher: this.metrics.dispatcherObserver, scheduler: this.metrics.schedulerObserver } }
        : {}),
      onAutolockChanged: (on) => {
        if (this.node === undefined || this.node.autolock === on) return;
        this.node.autolock = on;
        void writeNodeFile(this.opts.dataDir, this.node).catch(() => undefined);
      },
      onRemovedFromRaft: () => void this.serialize(() => this.stopManagerRole("removed from raft")).catch(() => undefined),
      onFatal: (err) => {
        this.log.fatal({ err: err.message }, "the manager stopped on a fatal error; the daemon exits");
        this.fatalError = err;
        void this.stop();
      },
    }).catch((err: unknown) => {
      mountedPeer?.close();
      throw err;
    });
    started = manager;
    this.manager = manager;
    this.managerPeer = mountedPeer;
    this.state = "manager";
  }

  private peerServiceOptions() {
    // Opened now, in the background (a few directory calls), so the first peer that asks finds
    // what is on disk instead of a "not held" while the store opens.
    void this.images.open().catch((err: unknown) => this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "cannot open the content store"));
    return {
      clusterId: this.node!.clusterId,
      // Read on every request: the roots follow a root CA rotation (followRootBundle).
      rootCaPem: () => this.rootCaPem,
      certPem: this.certPem,
      source: this.images.source,
      uploadBytesPerSec: this.uploadBytesPerSec,
      isSeeding: (digest: string) => this.agentPrefetch?.runner.isSeeding(digest) === true,
      clock: this.clock,
      logger: this.childLogger(),
    };
  }

  /**
   * A pure worker serves the P2P peer service on its own listener at --listen-addr; a manager
   * serves it on the manager's, and a node without an agent serves nothing. A listener that cannot
   * open (the port is taken) is logged: the node still runs its tasks, it only serves no pieces.
   */
  private async syncPeerListener(): Promise<void> {
    const agent = this.agent;
    const wanted = agent !== undefined && this.manager === undefined && this.state === "worker" && !this.stopping;
    if (!wanted) {
      await this.closeWorkerPeerListener();
      return;
    }
    if (this.workerPeer !== undefined) return;
    try {
      this.workerPeer = await WorkerPeerListener.start({
        ...this.peerServiceOptions(),
        listenAddr: this.opts.listenAddr,
        identity: { certPem: this.certPem, keyPem: this.keyPem },
        verifier: agent.peerVerifier,
        revocation: agent.revocation,
      });
      this.log.info({ addr: this.opts.listenAddr, port: this.workerPeer.port }, "serving image pieces to peers");
    } catch (err) {
      this.log.error({ addr: this.opts.listenAddr, err: err instanceof Error ? err.message : String(err) }, "cannot open the P2P peer listener; this node serves no image pieces to its peers");
    }
  }

  private async closeWorkerPeerListener(): Promise<void> {
    const listener = this.workerPeer;
    this.workerPeer = undefined;
    await listener?.close();
  }

  private closeManagerPeer(): void {
    this.managerPeer?.close();
    this.managerPeer = undefined;
  }

  private async stopManagerRole(reason: string): Promise<void> {
    const manager = this.manager;
    if (manager === undefined) return;
    this.manager = undefined;
    this.log.warn({ reason }, "stopping the manager role");
    await manager.stop();
    this.closeManagerPeer();
    // A former manager keeps no cluster state or data key: it is a worker now (or leaving).
    await rm(this.paths.stateDir, { recursive: true, force: true });
    await rm(this.paths.keysDir, { recursive: true, force: true });
    if (this.node !== undefined) {
      this.node.raftId = "";
      await writeNodeFile(this.opts.dataDir, this.node).catch(() => undefined);
    }
    if (this.state === "manager") this.state = "worker";
    // A former manager that keeps its agent serves its pieces on a listener of its own now.
    await this.syncPeerListener();
  }

  /**
   * The executors this node can run tasks with (runc only where it is installed and we are root).
   * Image tasks wait for their prefetch job when the session plans one (`prefetch`, set right
   * after the agent is made and before it starts), then build from the node's content store.
   */
  private workerExecutors(workerDir: string, prefetch: () => AgentPrefetch | undefined): Executor[] {
    const executors: Executor[] = [new ProcessExecutor({ clock: this.clock, defaultDir: workerDir })];
    if (availableExecutors().includes("runc")) {
      const given = this.opts.imageProvider;
      const images = new PrefetchWaitingImages({
        images: given ?? this.images.images,
        jobs: {
          jobFor: (digest) => prefetch()?.runner.jobFor(digest),
          subscribe: (listener) => prefetch()?.runner.subscribe(listener) ?? (() => undefined),
        },
        enabled: () => prefetch()?.planned === true,
        ...(given === undefined ? { holds: (digest: string) => this.images.images.holds(digest) } : {}),
        clock: this.clock,
        logger: this.childLogger(),
      });
      const runc = new RuncExecutor({ workerDir, images, clock: this.clock, logger: this.childLogger(), cgroupParent: this.opts.cgroupParent });
      // A task that ended may leave its image unused: a GC run (when there is a cap) may free it.
      executors.unshift(withTaskEnded(runc, () => this.images.requestGc()));
    }
    return executors;
  }

  private startAgent(): void {
    const node = this.node!;
    const workerDir = join(this.opts.dataDir, "worker");
    let prefetch: AgentPrefetch | undefined;
    const inUse = new InUseWatch();
    const daemon = this;
    const agent: Agent = new Agent({
      nodeId: node.nodeId,
      clusterId: node.clusterId,
      // Read at each use: the trusted roots follow a root CA rotation (followRootBundle).
      get rootCaPem() {
        return daemon.rootCaPem;
      },
      managers: node.managers,
      identity: () => ({ certPem: this.certPem, keyPem: this.keyPem }),
      advertiseAddr: node.advertiseAddr,
      hostname: this.hostname,
      engineLabels: this.opts.engineLabels,
      worker: {
        workerDir,
        executors: this.workerExecutors(workerDir, () => prefetch),
        secretsRoot: this.opts.secretsRoot,
        prefetch: {
          sync: (orders) => {
            prefetch?.runner.sync(orders);
            // A task or an order no longer in use (ended, withdrawn): a GC run may free its blobs.
            if (inUse.changed(agent)) this.images.requestGc();
          },
          reportEnded: () => prefetch?.runner.reportEnded(),
        },
      },
      clock: this.clock,
      random: this.random,
      logger: this.childLogger(),
      onSessionMessage: (message) => {
        if (message.rootCaBundle.length > 0) this.followRootBundle(Buffer.from(message.rootCaBundle).toString("utf8"));
        const addrs = message.managers.map((m) => m.addr).filter((a) => a !== "");
        if (addrs.length > 0 && this.node !== undefined && addrs.join(",") !== this.node.managers.join(",")) {
          this.node.managers = addrs;
          void writeNodeFile(this.opts.dataDir, this.node).catch(() => undefined);
        }
      },
      onRenewed: (renewed) => this.serialize(() => this.certificateRenewed(renewed)),
      onRemoved: () => void this.serialize(() => this.removedFromCluster()).catch(() => undefined),
    });
    prefetch = new AgentPrefetch({
      agent,
      images: this.images,
      clusterId: node.clusterId,
      rootCaPem: this.rootCaPem,
      identity: { certPem: this.certPem, keyPem: this.keyPem },
      downloadBytesPerSec: this.downloadBytesPerSec,
      onJobEnded: () => this.images.requestGc(),
      ...(this.metrics !== undefined ? { onReport: (event: PrefetchReport) => this.metrics?.prefetchReport(event) } : {}),
      clock: this.clock,
      random: this.random,
      logger: this.childLogger(),
    });
    this.agent = agent;
    this.agentPrefetch = prefetch;
    agent.start();
  }

  /**
   * The managers' trusted roots (both during a root CA rotation, the new one alone after it): written
   * to the root CA file for the next start and used for new connections from now on.
   */
  private followRootBundle(bundlePem: string): void {
    if (bundlePem === this.rootCaPem || this.state === "inactive") return;
    let roots: string[];
    try {
      roots = splitPemBundle(bundlePem);
      for (const pem of roots) RootCA.fromCertOnly(pem);
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "the managers sent a root CA bundle that does not parse; keeping the current one");
      return;
    }
    if (roots.length === 0) return;
    this.rootCaPem = bundlePem;
    // The long-lived P2P side follows without a restart: a worker's peer listener (new handshakes)
    // and the peer client (new channels). The grant check and the agent's verifier read rootCaPem.
    this.workerPeer?.updateTrust(bundlePem);
    this.agentPrefetch?.updateTrust(bundlePem);
    this.log.info({ roots: roots.length }, "the cluster's trusted root CAs changed (root CA rotation); writing the root CA file");
    void this.serialize(() => writeFileAtomic(this.paths.rootCaFile, bundlePem, 0o644)).catch((err: unknown) =>
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "cannot write the root CA file"),
    );
  }

  private async certificateRenewed(renewed: RenewedCertificate): Promise<void> {
    const previousRole = roleOf(this.certPem);
    const unlockKey = this.manager?.currentUnlockKey;
    await writeNodeKey(this.paths.nodeKeyFile, renewed.privateKey, renewed.role === "swarm-manager" ? unlockKey : undefined);
    await writeFileAtomic(this.paths.nodeCertFile, renewed.certPem, 0o644);
    this.certPem = renewed.certPem;
    this.metrics?.renewed();
    this.keyPem = (renewed.privateKey as KeyObject).export({ type: "pkcs8", format: "pem" }).toString();
    this.manager?.updateIdentity({ certPem: this.certPem, keyPem: this.keyPem });
    // The peer service serves the zone of the new certificate (a zone change reissues it).
    this.managerPeer?.setZone(parseNodeCertificate(this.certPem).zone);
    this.workerPeer?.updateIdentity({ certPem: this.certPem, keyPem: this.keyPem });
    this.agentPrefetch?.updateIdentity(this.certPem, this.keyPem);
    if (previousRole !== renewed.role) this.log.info({ from: previousRole, to: renewed.role }, "the certificate's role changed");
    // Decided by what runs, not by the previous certificate: a promoted node whose raft join failed
    // already holds its manager certificate, and a later renewal must still join it to raft.
    if (renewed.role === "swarm-manager" && this.manager === undefined) {
      await this.joinRaftAfterPromotion();
    } else if (renewed.role === "swarm-worker" && previousRole !== renewed.role) {
      await this.stopManagerRole("demoted to worker");
      this.state = "worker";
    }
  }

  /**
   * Joins raft after a promotion, retrying a failed join (no leader during an election, a leader
   * that just changed) with backoff for up to PROMOTION_JOIN_BUDGET_MS, then every
   * PROMOTION_RETRY_MS in the background: without it a promoted worker whose one join attempt
   * failed kept its manager certificate, never joined raft and was never asked again (seen in CI
   * under load: "w1 to be a raft voter" timed out).
   */
  private async joinRaftAfterPromotion(): Promise<void> {
    const deadlineMs = this.clock.nowMs() + PROMOTION_JOIN_BUDGET_MS;
    for (let delayMs = 250; ; delayMs = Math.min(2000, 2 * delayMs)) {
      if (this.stopping || this.manager !== undefined || roleOf(this.certPem) !== "swarm-manager") return;
      try {
        await this.joinRaftAndStart(this.agent?.knownManagers[0] ?? this.node!.managers[0] ?? "");
        await writeNodeFile(this.opts.dataDir, this.node!);
        return;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (this.clock.nowMs() + delayMs > deadlineMs) {
          this.log.warn({ err: message, retryInMs: PROMOTION_RETRY_MS }, "promoted, but joining raft failed; trying again later");
          this.promotionRetry?.cancel();
          this.promotionRetry = this.clock.setTimeout(() => {
            this.promotionRetry = undefined;
            void this.serialize(() => this.joinRaftAfterPromotion()).catch(() => undefined);
          }, PROMOTION_RETRY_MS);
          return;
        }
        this.log.info({ err: message, retryInMs: delayMs }, "promoted, but joining raft failed; retrying");
        await this.clock.sleep(delayMs);
      }
    }
  }

  private async removedFromCluster(): Promise<void> {
    if (this.state === "inactive") return;
    this.log.warn({}, "this node was removed from the cluster: its certificate is revoked; join again with a token");
    await this.stopRoles();
    await this.wipe();
  }

  private async stopRoles(): Promise<void> {
    await this.closeWorkerPeerListener();
    const agent = this.agent;
    this.agent = undefined;
    const prefetch = this.agentPrefetch;
    this.agentPrefetch = undefined;
    await agent?.stop();
    // After the agent: its tasks are stopped, so no preparation waits for a job any more.
    await prefetch?.close();
    const manager = this.manager;
    this.manager = undefined;
    await manager?.stop();
    this.closeManagerPeer();
  }

  /** Forgets the cluster: certificates, keys, state and node.json. */
  private async wipe(): Promise<void> {
    await rm(this.paths.stateDir, { recursive: true, force: true });
    await rm(this.paths.keysDir, { recursive: true, force: true });
    await rm(this.paths.certificatesDir, { recursive: true, force: true });
    await rm(nodeFilePath(this.opts.dataDir), { force: true });
    this.node = undefined;
    this.certPem = "";
    this.keyPem = "";
    this.rootCaPem = "";
    this.state = "inactive";
    this.setLoggerNode(undefined);
  }

  // ---- unlock ----

  private async unlock(req: UnlockRequest): Promise<void> {
    if (this.state !== "locked") {
      throw new ShoalError("FAILED_PRECONDITION", this.state === "inactive" ? "this node is not part of a cluster" : "this node is not locked");
    }
    parseUnlockKey(req.unlockKey).fill(0); // UNLOCK_KEY_MALFORMED without echoing the input
    const unlockKey = req.unlockKey.trim();
    const privateKey = await readNodeKey(this.paths.nodeKeyFile, unlockKey); // UNLOCK_KEY_WRONG
    const kek = kekFromUnlockKey(unlockKey);
    try {
      const keys = await readDekFile(this.paths.dekFile, kek);
      keys.current.dispose();
      keys.pending?.dispose();
    } finally {
      kek.dispose();
    }
    this.keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    try {
      await this.renewThroughPeerIfPending(privateKey, unlockKey);
    } catch (err) {
      // Refused or no manager answered: nothing changed on disk; stay locked.
      this.keyPem = "";
      throw err;
    }
    await this.startManagerRole(unlockKey, undefined);
    try {
      await this.renewExpiredIfPending();
    } catch (err) {
      // Refused (not the last manager, removed): stop the manager again, keep its state, stay locked.
      const manager = this.manager;
      this.manager = undefined;
      await manager?.stop();
      this.closeManagerPeer();
      this.keyPem = "";
      this.state = "locked";
      throw err;
    }
    this.startAgent();
    this.log.info({}, "manager unlocked");
  }

  // ---- leave ----

  private async leave(req: LeaveRequest): Promise<void> {
    if (this.state === "inactive") throw notInCluster();
    if ((this.state === "manager" || this.state === "locked") && !req.force) {
      throw new ShoalError(
        "FAILED_PRECONDITION",
        "this node is a manager: leaving can break quorum; demote it first (`shoal node demote` on another manager), or use `shoal leave --force`",
      );
    }
    if (this.manager !== undefined) {
      // Best effort: take this manager out of raft so the others do not count it towards quorum.
      await this.manager.leaveRaft().catch((err: unknown) => this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "could not leave raft cleanly"));
    }
    await this.stopRoles();
    await this.wipe();
    this.log.info({}, "left the cluster");
  }

  // ---- stop ----

  async stop(): Promise<void> {
    if (this.stopping) return this.stopped;
    this.stopping = true;
    this.promotionRetry?.cancel();
    this.log.info({}, "daemon stopping");
    this.images.close();
    await this.stopRoles().catch(() => undefined);
    await this.closeMetrics().catch(() => undefined);
    const server = this.socketServer;
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 500);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await unlink(this.socketPath).catch(() => undefined);
    await this.releaseDataDir();
    this.resolveStopped();
    return this.stopped;
  }
}

/** Starts a node: resumes its role from its data directory, or waits unjoined for init/join. */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  if (!isHostPort(opts.listenAddr)) throw new ShoalError("INVALID_ARGUMENT", `--listen-addr "${opts.listenAddr}" is not HOST:PORT`);
  if (opts.advertiseAddr !== undefined && !isHostPort(opts.advertiseAddr)) {
    throw new ShoalError("INVALID_ARGUMENT", `--advertise-addr "${opts.advertiseAddr}" is not HOST:PORT`);
  }
  const daemon = new Daemon(opts);
  await daemon.start();
  return daemon;
}

