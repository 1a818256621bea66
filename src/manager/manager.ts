// A running manager: the encrypted store, the raft node applying into the object store, the TLS
// server with the CA, Control, Dispatcher and Raft services, revocation propagation, the key
// protection that follows the replicated autolock setting, and the leader-only loops.
import * as grpc from "@grpc/grpc-js";
import { mkdir } from "node:fs/promises";
import type { Logger } from "pino";
import { ShoalError, isShoalError } from "../base/errors.js";
import { systemClock, type Clock } from "../base/clock.js";
import { systemRandom, type Random } from "../base/random.js";
import { loadRootCA, RevocationList, renderCrl, RootCA } from "../ca/index.js";
import { grantSignerSource } from "./grant-signer.js";
import { isKeylessRoot } from "./keyless.js";
import { DataKey, kekFromUnlockKey } from "../crypto/index.js";
import { NotLeaderError, RaftNode, type AppliedEntry, type RaftMemberInfo, type RaftNodeObserver, type RaftStateMachine } from "../raft/node/index.js";
import { NO_NODE } from "../raft/core/types.js";
import {
  EncryptedStore,
  dataDirPaths,
  readDekFile,
  rewrapKeys,
  rotateStoreDek,
  writeDekFile,
} from "../storage/index.js";
import { ObjectStore, type ApplyResult, type StoreChange, type StoreTransaction } from "../state/index.js";
import { createSecureChannel } from "../transport/client.js";
import { rootsPeerVerifier } from "../transport/identity.js";
import { RevocationState } from "../transport/revocation.js";
import { createSecureServer, type NodeIdentityPem, type SecureServer } from "../transport/server.js";
import { fromGrpcError, toGrpcError } from "../transport/errors.js";
import { CAService } from "../proto/shoal/v1/ca.js";
import { ControlService, type EventsRequest, type ServiceLogsRequest } from "../proto/shoal/v1/control.js";
import { DispatcherService } from "../proto/shoal/v1/dispatcher.js";
import { RaftMembershipClient, RaftMembershipService, RaftService } from "../proto/shoal/v1/raft.js";
import type { Cluster, Node } from "../proto/shoal/v1/objects.js";
import { caServiceHandlers } from "./caserver/ca-server.js";
import type { AppliedProposal, ManagerContext } from "./context.js";
import { controlHandlers, controlServiceImplementation, type ControlHandlers } from "./controlapi/control-api.js";
import { Dispatcher, type DispatcherObserver } from "./dispatcher/dispatcher.js";
import { ControlForwarder } from "./control-forwarder.js";
import { LogBroker, type LogSink } from "./logbroker/log-broker.js";
import { LeaderRedirect } from "./handlers.js";
import { ManagerAccess } from "./manager-access.js";
import { revocationSets } from "./revocation-view.js";
import { membershipHandlers } from "./membership.js";
import { GrpcRaftTransport, raftServiceHandlers } from "./raft-transport.js";
import { DEFAULT_RAFT_TIMING, electionJitterTicks, type RaftTiming } from "../raft/node/index.js";
import { LeaderLoops } from "./leadership/leader-loops.js";
import type { PrefetchImageSource } from "./prefetch/image-source.js";
import { PrefetchJobViews } from "./prefetch/job-views.js";
import { prefetchLoop } from "./prefetch/prefetch-loop.js";
import { revocationGcLoop } from "./leadership/revocation-gc.js";
import { rootRotationLoop } from "./leadership/root-rotation.js";
import { TrustedRoots } from "./trusted-roots.js";
import { IssuingRootCache } from "./caserver/issuing-root.js";
import { orchestratorLoop, pinnedDigestResolver, type ImageResolver } from "./orchestrator/orchestrator.js";
import { schedulerLoop, type SchedulerObserver } from "./scheduler/scheduler.js";
import { constraintEnforcerLoop } from "./constraintenforcer/constraint-enforcer.js";
import { PrefetchOrderBoard } from "./prefetch/order-board.js";
import { EventHistory, type EventSink } from "./events/event-history.js";
import { EventFeed } from "./events/event-feed.js";

export { DEFAULT_RAFT_TIMING, electionJitterTicks, type RaftTiming } from "../raft/node/index.js";

export interface ManagerOptions {
  dataDir: string;
  nodeId: string;
  clusterId: string;
  raftId: bigint;
  listenAddr: string;
  /** Optional listener that requires a client certificate and checks the CRL at the handshake. */
  peerListenAddr?: string;
  advertiseAddr: string;
  rootCaPem: string;
  identity: NodeIdentityPem;
  /** The unlock key the node's key files are wrapped with now; undefined when they are plain. */
  unlockKey?: string;
  /** A new cluster: this manager is its only voter, and these objects are written once it leads. */
  bootstrap?: { cluster: Cluster; node: Node };
  /** Joining: the members the leader reported. */
  join?: { members: RaftMemberInfo[]; removedIds: bigint[] };
  raftTiming?: RaftTiming;
  snapshotIntervalEntries?: number;
  heartbeatPeriodMs?: number;
  /** Tag to digest for service images (src/oci); without one, only digest-pinned references resolve. */
  resolveImage?: ImageResolver;
  /**
   * Run the workload loops (orchestrator, scheduler, constraint enforcer) on the leader. Default
   * true; false only for tests that write tasks into the store themselves (the dispatcher's).
   */
  workloadLoops?: boolean;
  /**
   * P2P image prefetch (DESIGN.md §8): with an image source the leader plans a prefetch job for
   * every runc task's image before the task starts (with the workload loops only).
   */
  prefetch?: { images: PrefetchImageSource; pieceSize?: number; grantTtlMs?: number };
  /** Adds services to the manager's TLS server before it listens (a node's P2P peer service). */
  mountServices?: (server: SecureServer, revocation: RevocationState) => void;
  logger: Logger;
  clock?: Clock;
  random?: Random;
  /** The key files were re-wrapped: on = under an unlock key (autolock), off = plain. */
  onAutolockChanged?: (on: boolean) => void;
  /** This manager was removed from raft (demoted or removed): the daemon stops the manager role. */
  onRemovedFromRaft?: () => void;
  /** The node stopped on an error it must not limp past. */
  onFatal?: (err: Error) => void;
  /** Told what raft, the dispatcher and the scheduler do (the daemon's metrics); each optional. */
  observers?: { raft?: RaftNodeObserver; dispatcher?: DispatcherObserver; scheduler?: SchedulerObserver };
}

class StoreMachine implements RaftStateMachine {
  constructor(
    private readonly store: ObjectStore,
    private readonly onApplied: (changes: StoreChange[] | "reset") => void,
  ) {}
  apply(entry: AppliedEntry): ApplyResult {
    const result = this.store.apply(entry.data, { index: entry.index });
    if (result.ok) this.onApplied(result.changes);
    return result;
  }
  snapshot(): Uint8Array {
    return this.store.snapshot();
  }
  restore(data: Uint8Array): void {
    this.store.restoreSnapshot(data);
    this.onApplied("reset");
  }
}

async function openDataKeys(dekFile: string, unlockKey: string | undefined): Promise<{ current: DataKey; pending?: DataKey }> {
  const kek = unlockKey === undefined ? undefined : kekFromUnlockKey(unlockKey);
  try {
    return await readDekFile(dekFile, kek);
  } catch (err) {
    if (!isShoalError(err, "NOT_FOUND") && (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const current = DataKey.generate();
    await writeDekFile(dekFile, { current }, kek);
    return { current };
  } finally {
    kek?.dispose();
  }
}

export class Manager {
  readonly ctx: ManagerContext;
  readonly control: ControlHandlers;
  private readonly appliedListeners = new Set<(changes: StoreChange[] | "reset") => void>();
  private wrapKey: string | undefined;
  private keyWork: Promise<void> = Promise.resolve();
  private readonly leaderLoops: LeaderLoops;
  private readonly forwarder: ControlForwarder;
  private stopped = false;
  private lastRevocationKey = "";
  private crlWork: Promise<void> = Promise.resolve();
  private readonly issuingRoots = new IssuingRootCache();
  private constructor(
    private readonly opts: ManagerOptions,
    private readonly encryptedStore: EncryptedStore,
    readonly store: ObjectStore,
    readonly raft: RaftNode,
    readonly server: SecureServer,
    private readonly transport: GrpcRaftTransport,
    readonly revocation: RevocationState,
    private readonly dispatcher: Dispatcher,
    /** What the dispatcher pushes of the prefetch jobs this leader runs. */
    readonly prefetchOrders: PrefetchOrderBoard,
    /** What `shoal image prefetch status` shows of those jobs. */
    readonly prefetchViews: PrefetchJobViews,
    private readonly logBroker: LogBroker,
    ctx: ManagerContext,
    control: ControlHandlers,
    private readonly identityRef: { current: NodeIdentityPem },
    readonly boundPort: number,
    /** What `shoal events` reads: the events derived from this manager's own applies. */
    private readonly eventHistory: EventHistory,
    private readonly eventFeed: EventFeed,
  ) {
    this.ctx = ctx;
    this.wrapKey = opts.unlockKey;
    this.control = control;
    this.leaderLoops = new LeaderLoops({
      store,
      propose: (build, options) => ctx.propose(build, options),
      clock: ctx.clock,
      random: ctx.random,
      logger: opts.logger.child({ component: "leader-loops" }),
      loops: [
        revocationGcLoop,
        rootRotationLoop,
        ...(opts.workloadLoops === false ? [] : [orchestratorLoop({ resolveImage: opts.resolveImage ?? pinnedDigestResolver }), schedulerLoop({ ...(opts.observers?.scheduler !== undefined ? { observer: opts.observers.scheduler } : {}) }), constraintEnforcerLoop]),
        ...(opts.workloadLoops === false || opts.prefetch === undefined
          ? []
          : [
              prefetchLoop({
                images: opts.prefetch.images,
                board: prefetchOrders,
                views: prefetchViews,
                clusterId: opts.clusterId,
                grantSigner: grantSignerSource(() => ctx.rootCA(), () => identityRef.current),
                ...(opts.prefetch.pieceSize !== undefined ? { pieceSize: opts.prefetch.pieceSize } : {}),
                ...(opts.prefetch.grantTtlMs !== undefined ? { grantTtlMs: opts.prefetch.grantTtlMs } : {}),
              }),
            ]),
      ],
    });
    const timing = opts.raftTiming ?? DEFAULT_RAFT_TIMING;
    this.forwarder = new ControlForwarder({
      clock: ctx.clock,
      clusterId: opts.clusterId,
      get rootCaPem() {
        return opts.rootCaPem;
      },
      identity: () => identityRef.current,
      revocation,
      isLeader: () => raft.isLeader,
      leaderAddr: () => ctx.leaderAddr(),
      local: (method, request) => (control[method] as (r: unknown) => Promise<unknown>)(request),
      // Two election timeouts: time for raft to notice the dead leader and elect another.
      unreachableWaitMs: 2 * timing.tickMs * timing.electionTicks * 2,
    });
  }

  static async start(opts: ManagerOptions): Promise<Manager> {
    const clock = opts.clock ?? systemClock;
    const random = opts.random ?? systemRandom;
    const logger = opts.logger.child({ component: "manager" });
    const paths = dataDirPaths(opts.dataDir);
    await mkdir(paths.keysDir, { recursive: true, mode: 0o700 });
    await mkdir(paths.stateDir, { recursive: true, mode: 0o700 });
    const keys = await openDataKeys(paths.dekFile, opts.unlockKey);
    const encryptedStore = await EncryptedStore.open(paths.stateDir, keys);
    const torn = encryptedStore.openCheck.tornTail;
    if (torn !== undefined) logger.warn({ ...torn }, "the write-ahead log ends in a damaged record with nothing valid after it: taken for an append cut short by a crash, and dropped");
    const store = new ObjectStore({ clock });
    const revocation = new RevocationState();
    const identityRef = { current: opts.identity };
    // A demoted manager's certificate stays valid for months: every manager-only call also checks the store.
    const access = new ManagerAccess(store);
    // During a root CA rotation the store's roots (old and new) are trusted at once (trusted-roots.ts).
    const trusted = new TrustedRoots(opts.rootCaPem);
    const server = createSecureServer({
      clusterId: opts.clusterId,
      rootCaPem: opts.rootCaPem,
      identity: opts.identity,
      verifier: rootsPeerVerifier({ roots: () => trusted.roots(), clusterId: opts.clusterId, clock, revocation }),
      revocation,
      clock,
      maxReceiveMessageBytes: 16 * 1024 * 1024,
      accessCheck: (identity, path) => access.check(identity, path),
    });
    const transport = new GrpcRaftTransport({
      clusterId: opts.clusterId,
      // Read when a channel is made: new channels follow a root CA rotation.
      get rootCaPem() {
        return trusted.bundlePem;
      },
      identity: () => identityRef.current,
      revocation,
      logger: opts.logger.child({ component: "raft-transport" }),
      selfAddr: opts.advertiseAddr,
      clock,
    });
    const followRoots = (changes: StoreChange[] | "reset"): void => {
      if (changes !== "reset" && !changes.some((c) => c.table === "clusters")) return;
      if (trusted.refresh(store.getCluster())) {
        server.updateTrust(trusted.bundlePem);
        logger.info({ roots: trusted.roots().map((r) => r.fingerprint) }, "the trusted root CAs changed");
      }
    };
    const listeners = new Set<(changes: StoreChange[] | "reset") => void>([(changes) => access.applied(changes), followRoots]);
    const machine = new StoreMachine(store, (changes) => {
      for (const l of listeners) {
        try {
          l(changes);
        } catch (err) {
          logger.error({ err: String(err) }, "apply listener failed");
        }
      }
    });
    // Watching before raft starts: the entries raft replays at start are told apart by index (event-feed.ts).
    const eventHistory = new EventHistory();
    const eventFeed = new EventFeed(store, eventHistory, clock, opts.logger.child({ component: "events" }));
    const timing = opts.raftTiming ?? DEFAULT_RAFT_TIMING;
    const selfInfo: RaftMemberInfo = { raftId: opts.raftId, nodeId: opts.nodeId, addr: opts.advertiseAddr };
    let raft: RaftNode;
    try {
      raft = await RaftNode.start({
        id: opts.raftId,
        dataStore: encryptedStore,
        transport,
        stateMachine: machine,
        bootstrap: opts.bootstrap ? { members: [selfInfo] } : undefined,
        join: opts.join,
        clock,
        random,
        logger: opts.logger.child({ component: "raft" }),
        tickMs: timing.tickMs,
        electionTicks: timing.electionTicks,
        electionJitterTicks: electionJitterTicks(timing),
        heartbeatTicks: timing.heartbeatTicks,
        snapshotIntervalEntries: opts.snapshotIntervalEntries,
        ...(opts.observers?.raft !== undefined ? { observer: opts.observers.raft } : {}),
      });
    } catch (err) {
      eventFeed.close();
      await encryptedStore.close();
      throw err;
    }
    eventFeed.goLive(raft.commitIndex);
    transport.bind(raft);
    access.setRaftMembers(raft.status().members.map((m) => m.nodeId));

    let rootCache: { pem: string; ca: RootCA } | undefined;
    const ctx: ManagerContext = {
      nodeId: opts.nodeId,
      clusterId: opts.clusterId,
      dataDir: opts.dataDir,
      store,
      raft,
      server,
      revocation,
      clock,
      random,
      logger,
      rootCA: () => {
        const rootCa = store.getCluster()?.rootCa;
        if (rootCa === undefined || rootCa.caCertPem.length === 0) {
          throw new ShoalError("UNAVAILABLE", "this manager does not hold the root CA yet; retry in a moment");
        }
        const pem = Buffer.from(rootCa.caCertPem).toString("utf8");
        // A cluster made with `shoal init --external-ca` has no key in its store: a verify-only root
        // (canSign false); what needs the key refuses with CA_KEY_NOT_HELD (src/manager/keyless.ts).
        if (rootCache?.pem !== pem) rootCache = { pem, ca: isKeylessRoot(rootCa) ? RootCA.fromCertOnly(pem) : loadRootCA(pem, Buffer.from(rootCa.caKeyPem).toString("utf8")) };
        return rootCache.ca;
      },
      requireLeader: () => {
        if (raft.isStopped) throw new ShoalError("UNAVAILABLE", "this manager is stopping");
        if (!raft.isLeader) throw new LeaderRedirect(ctx.leaderAddr());
      },
      leaderAddr: () => {
        const leader = raft.leaderId;
        if (leader === NO_NODE) return undefined;
        return raft.memberAddr(leader) || undefined;
      },
      propose: async (build: (tx: StoreTransaction) => void, options: { term?: number; timeoutMs?: number } = {}): Promise<AppliedProposal> => {
        if (options.term !== undefined && (!raft.isLeader || raft.term !== options.term)) {
          throw new LeaderRedirect(ctx.leaderAddr());
        }
        const bytes = store.prepare(build, { now: new Date(clock.nowMs()) });
        let result: ApplyResult;
        try {
          result = (await raft.propose(bytes, { timeoutMs: options.timeoutMs })) as ApplyResult;
        } catch (err) {
          if (err instanceof NotLeaderError) throw new LeaderRedirect(err.leaderAddr || ctx.leaderAddr());
          throw err;
        }
        if (!result.ok) throw result.error;
        return { index: result.index, changes: result.changes };
      },
      reachableVoters: () => (raft.isLeader ? raft.reachableVoters() : new Set(raft.status().members.filter((m) => m.voter).map((m) => m.raftId))),
      onApplied: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };

    // The leader's prefetch orders (in memory: jobs are rebuilt from the tasks after a failover).
    const prefetchOrders = new PrefetchOrderBoard();
    const prefetchViews = new PrefetchJobViews();
    const dispatcher = new Dispatcher(ctx, {
      heartbeatPeriodMs: opts.heartbeatPeriodMs,
      prefetch: prefetchOrders,
      prefetchImages: opts.prefetch !== undefined && opts.workloadLoops !== false,
      ...(opts.observers?.dispatcher !== undefined ? { observer: opts.observers.dispatcher } : {}),
    });
    server.addService(CAService, caServiceHandlers(ctx) as unknown as grpc.UntypedServiceImplementation);
    server.addService(RaftService, raftServiceHandlers({ server, node: () => raft, logger }) as unknown as grpc.UntypedServiceImplementation);
    server.addService(RaftMembershipService, membershipHandlers(ctx) as unknown as grpc.UntypedServiceImplementation);
    const logBroker = new LogBroker(ctx, {
      bind: (sessionId, call, method) => dispatcher.bindCall(sessionId, call, method),
      onEnd: (listener) => dispatcher.onSessionEnd(listener),
    });
    server.addService(DispatcherService, { ...dispatcher.handlers(), ...logBroker.agentHandlers() } as unknown as grpc.UntypedServiceImplementation);
    const control = controlHandlers(ctx, { prefetchStatus: prefetchViews });
    server.addService(ControlService, controlServiceImplementation(control, logger, {
        serviceLogs: logBroker.serviceLogsHandler(),
        // Events are served from each manager's own applied store on its local socket, never over TLS.
        events: (call) => call.destroy(toGrpcError(new ShoalError("FAILED_PRECONDITION", "events are served on a manager's local socket only: run `shoal events` on that manager"))),
      }) as unknown as grpc.UntypedServiceImplementation);

    opts.mountServices?.(server, revocation);

    let port: number;
    try {
      port = await server.listen(opts.listenAddr, "open");
      if (opts.peerListenAddr !== undefined) await server.listen(opts.peerListenAddr, "peer");
    } catch (err) {
      eventFeed.close();
      await raft.stop();
      transport.close();
      await encryptedStore.close();
      await server.shutdown(0);
      throw err;
    }

    followRoots("reset");
    const manager = new Manager({ ...opts, get rootCaPem() { return trusted.bundlePem; } }, encryptedStore, store, raft, server, transport, revocation, dispatcher, prefetchOrders, prefetchViews, logBroker, ctx, control, identityRef, port, eventHistory, eventFeed);
    listeners.add((changes) => manager.afterApply(changes));
    raft.on("leader-changed", (change) => manager.leaderChanged(change.isLeader, change.term));
    raft.on("membership-changed", (change) => {
      access.setRaftMembers(change.members.map((m) => m.nodeId));
      logger.info(
        { voters: change.confState.voters.map(String), learners: change.confState.learners.map(String), removedSelf: change.removedSelf },
        "raft membership changed",
      );
      if (change.removedSelf) {
        logger.warn({}, "this manager was removed from raft");
        opts.onRemovedFromRaft?.();
      }
    });
    raft.on("fatal", (err) => {
      logger.error({ err: err.message }, "raft node stopped on a fatal error");
      opts.onFatal?.(err);
    });
    // Entries replayed before the listeners were attached: bring revocation and keys up to date now.
    manager.afterApply("reset");
    if (raft.isLeader) manager.leaderChanged(true, raft.term);
    if (opts.bootstrap !== undefined) await manager.writeBootstrapObjects(opts.bootstrap);
    return manager;
  }

  private async writeBootstrapObjects(objects: { cluster: Cluster; node: Node }): Promise<void> {
    const clock = this.ctx.clock;
    const deadline = clock.nowMs() + 30_000;
    while (!this.raft.isLeader) {
      if (clock.nowMs() > deadline) throw new ShoalError("TIMEOUT", "the new single-manager cluster did not elect itself leader within 30 s");
      await clock.sleep(20);
    }
    if (this.store.getCluster() !== undefined) return;
    await this.ctx.propose((tx) => {
      tx.createCluster(objects.cluster);
      tx.createNode(objects.node);
    });
  }

  /** The unlock key the key files are wrapped with now (undefined: plain). */
  get currentUnlockKey(): string | undefined {
    return this.wrapKey;
  }

  get isLeader(): boolean {
    return this.raft.isLeader;
  }

  /** Agent sessions open on this manager's dispatcher (0 on a follower). */
  get dispatcherSessions(): number {
    return this.dispatcher.sessionCount;
  }

  private leaderChanged(isLeader: boolean, term: number): void {
    this.ctx.logger.info({ isLeader, term, leader: String(this.raft.leaderId) }, "raft leader changed");
    this.dispatcher.leadershipChanged(isLeader, term);
    if (!isLeader) {
      this.logBroker.endAll(new LeaderRedirect(this.ctx.leaderAddr()));
      // The next leader plans its own jobs; a follower pushes nothing.
      this.prefetchOrders.clear();
      this.prefetchViews.clear();
    }
    this.leaderLoops.leaderChanged(isLeader, term);
  }

  /** Revocation propagation and key protection, after every apply (cheap when nothing changed). */
  private afterApply(changes: StoreChange[] | "reset"): void {
    if (this.stopped) return;
    if (changes !== "reset" && !changes.some((c) => c.table === "clusters")) return;
    const cluster = this.store.getCluster();
    if (cluster === undefined) return;
    const { nodeIds, serials } = revocationSets(this.store);
    // The roots are part of the key: a root CA rotation needs a CRL from each trusted root.
    const key = nodeIds.join(",") + "|" + serials.join(",") + "|" + cluster.rootCa?.caDigest + "|" + (cluster.rootCa?.rootRotation?.caCertPem.length ?? 0);
    if (key !== this.lastRevocationKey) {
      this.lastRevocationKey = key;
      // Synchronous: the authorizer ends the revoked node's open calls right here.
      this.revocation.replace({ nodeIds, serials });
      this.crlWork = this.crlWork.then(() => this.refreshCrl()).catch((err) => this.ctx.logger.error({ err: String(err) }, "cannot render the CRL"));
    }
    const desired = cluster.spec?.encryptionConfig?.autolockManagers === true && cluster.unlockKey !== "" ? cluster.unlockKey : undefined;
    if (desired !== this.wrapKey) this.scheduleKeyChange(desired);
  }

  private async refreshCrl(): Promise<void> {
    if (this.stopped) return;
    const cluster = this.store.getCluster();
    if (cluster?.rootCa === undefined) return;
    // An X.509 CRL must be signed by the certificates' issuer (OpenSSL looks it up by issuer name and
    // checks it with the issuer's key), so a manager without the root key cannot make one that the
    // TLS layer accepts, and one signed by its node key would fail every handshake ("unable to get
    // certificate CRL"). In a keyless cluster the "peer" listener therefore checks the chain at the
    // handshake and revocation in the authorization interceptor on every call, by node ID and serial,
    // ending open streams at once: the check the "open" listener always relies on (transport/server.ts).
    if (isKeylessRoot(cluster.rootCa)) return;
    const list = RevocationList.fromProto(cluster.revocationList);
    let crl = await renderCrl(this.ctx.rootCA(), list, { clock: this.ctx.clock });
    // During a rotation certificates under the new root are checked against its own CRL.
    const pending = this.issuingRoots.pending(cluster);
    if (pending !== undefined) crl += await renderCrl(pending.rootCA, list, { clock: this.ctx.clock });
    if (!this.stopped) this.server.setCrl(crl);
  }

  /**
   * Every manager re-wraps its DEK file and node key when the replicated unlock key changes, and
   * rotates its DEK when autolock is switched on (so no data stays under a DEK that sat on disk in plain).
   */
  private scheduleKeyChange(desired: string | undefined): void {
    const target = desired;
    this.keyWork = this.keyWork.then(async () => {
      if (this.stopped || target === this.wrapKey) return;
      const from = this.wrapKey;
      const paths = dataDirPaths(this.opts.dataDir);
      await rewrapKeys(this.opts.dataDir, { from, to: target });
      this.wrapKey = target;
      this.opts.onAutolockChanged?.(target !== undefined);
      if (from === undefined && target !== undefined) {
        const kek = kekFromUnlockKey(target);
        try {
          await rotateStoreDek(this.encryptedStore, paths.dekFile, kek);
        } finally {
          kek.dispose();
        }
      }
      this.ctx.logger.info({ autolock: target !== undefined }, from === undefined || target === undefined ? "key files re-wrapped for the autolock setting" : "key files re-wrapped under the rotated unlock key");
    }).catch((err) => this.ctx.logger.error({ err: err instanceof Error ? err.message : String(err) }, "cannot re-wrap the key files"));
  }

  /** Waits for pending key re-wraps (tests and shutdown). */
  async settled(): Promise<void> {
    await this.keyWork;
    await this.crlWork;
  }

  /** After a certificate renewal: new TLS identity for the listener and the raft connections. */
  updateIdentity(identity: NodeIdentityPem): void {
    this.identityRef.current = identity;
    this.server.updateIdentity(identity.certPem, identity.keyPem);
    this.transport.identityChanged();
    this.forwarder.identityChanged();
  }

  /**
   * A control call from the local socket: handled here on the leader, otherwise forwarded to the
   * leader with this manager's own certificate (control-forwarder.ts).
   */
  callControl(method: keyof ControlHandlers, request: unknown): Promise<unknown> {
    return this.forwarder.call(method, request);
  }

  /**
   * A `service logs` call from the local socket: served by this manager's log broker when it leads,
   * otherwise forwarded to the leader as a stream. Returns the function that cancels it.
   */
  async serviceLogs(request: ServiceLogsRequest, sink: LogSink): Promise<() => void> {
    const addr = await this.forwarder.leaderAddrOrWait();
    if (addr === undefined) return this.logBroker.subscribe(request, sink);
    return this.forwarder.forwardServiceLogs(addr, request, sink);
  }

  /**
   * A `shoal events` call from the local socket, served from this manager's own history (never
   * forwarded: every manager derives the same events, and the stream outlives a leader change).
   * Returns the function that cancels it.
   */
  events(request: EventsRequest, sink: EventSink): () => void {
    if (this.stopped) throw new ShoalError("UNAVAILABLE", "this manager is stopping");
    return this.eventHistory.subscribe(request, sink);
  }

  /** Takes this manager out of raft (through the leader, which checks quorum); the caller stops it afterwards. */
  async leaveRaft(): Promise<void> {
    if (this.raft.isLeader) {
      await this.raft.removeMember(this.raft.id, { timeoutMs: 5000 });
      return;
    }
    const addr = await this.forwarder.leaderAddrOrWait();
    if (addr === undefined) return this.leaveRaft();
    const channel = createSecureChannel(addr, {
      rootCaPem: this.opts.rootCaPem,
      certPem: this.identityRef.current.certPem,
      keyPem: this.identityRef.current.keyPem,
      expectServerRole: "swarm-manager",
      clusterId: this.opts.clusterId,
    });
    try {
      const client = channel.client(RaftMembershipClient);
      await new Promise<void>((resolve, reject) =>
        client.leave({ raftId: this.raft.id }, new grpc.Metadata(), { deadline: this.ctx.clock.nowMs() + 5000 }, (err) => (err ? reject(fromGrpcError(err)) : resolve())),
      );
    } finally {
      channel.close();
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.leaderLoops.stop();
    this.logBroker.close();
    this.eventFeed.close();
    this.eventHistory.close(new ShoalError("UNAVAILABLE", "this manager is shutting down"));
    this.dispatcher.close();
    this.forwarder.close();
    await this.server.shutdown(500);
    await this.raft.stop();
    this.transport.close();
    await this.keyWork.catch(() => undefined);
    await this.encryptedStore.close();
  }
}
