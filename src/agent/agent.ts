// The node agent (workers and managers): wires the dispatcher session (session.ts), certificate
// renewal (renewal.ts), the revocation list the managers push, the Assignments stream and the task
// runner with its executors and secret files, and the task status reports.
import type { Logger } from "pino";
import type { Clock } from "../base/clock.js";
import type { Random } from "../base/random.js";
import type { PrefetchOrder, SessionMessage } from "../proto/shoal/v1/dispatcher.js";
import { RootCA, splitPemBundle } from "../ca/index.js";
import { rootsPeerVerifier, type PeerVerifier } from "../transport/identity.js";
import { RevocationState } from "../transport/revocation.js";
import { AssignmentSet } from "./assignment-set.js";
import { AssignmentsStream } from "./assignments-stream.js";
import type { Executor } from "./executor/executor.js";
import { LogPublisher } from "./log-publisher.js";
import { describeNode } from "./node-description.js";
import { PrefetchReporter } from "./prefetch-reporter.js";
import type { PrefetchReport } from "./prefetch-runner.js";
import { CertificateRenewal, type RenewedCertificate } from "./renewal.js";
import { SecretFiles } from "./secrets/secret-files.js";
import { DispatcherSession, type AgentIdentity, type SessionLink } from "./session.js";
import { StatusReporter } from "./status-reporter.js";
import { TaskRunner } from "./task-runner.js";
import { WorkerState } from "./worker-state.js";

export { SESSION_RETRY_MIN_MS, SESSION_RETRY_MAX_MS, CALL_DEADLINE_MS, type AgentIdentity } from "./session.js";
export { MIN_SCHEDULED_RENEWAL_INTERVAL_MS, type RenewedCertificate } from "./renewal.js";

/** What the agent needs to run tasks. */
export interface WorkerOptions {
  /** `<data dir>/worker`: task state (no secrets) and bundles. */
  workerDir: string;
  executors: readonly Executor[];
  /** tmpfs directory for secret files (default /dev/shm/shoal); wiped at start. */
  secretsRoot?: string;
  /** Takes the prefetch orders the managers push (the PrefetchRunner); without it they are ignored. */
  prefetch?: {
    sync(orders: ReadonlyMap<string, PrefetchOrder>): void;
    /** Says again how the jobs that ended here ended: a complete set may come from a new leader that does not know. */
    reportEnded?(): void;
  };
}

export interface AgentOptions {
  nodeId: string;
  clusterId: string;
  rootCaPem: string;
  /** Managers to try first (the join address, the remembered managers). */
  managers: string[];
  identity: () => AgentIdentity;
  advertiseAddr: string;
  hostname: string;
  /** `shoal daemon --engine-label K=V` (untrusted, reported to the managers). */
  engineLabels?: Record<string, string>;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Without it the node runs no tasks (and reports no executor). */
  worker?: WorkerOptions;
  onSessionMessage?: (message: SessionMessage) => void;
  /** Persist the new certificate and key and switch to them; the agent reconnects afterwards. */
  onRenewed: (renewed: RenewedCertificate) => Promise<void>;
  /** The managers refused this node as removed: it must join again with a token. */
  onRemoved: () => void;
}

export class Agent {
  /** The list the managers push with every session message (node IDs and serials). */
  readonly revocation = new RevocationState();
  /**
   * Checks a P2P peer's certificate: chain to this cluster's root, dates, cluster, and the pushed
   * revocation list, so a removed node is refused as a peer as soon as the list arrives.
   */
  readonly peerVerifier: PeerVerifier;
  /** The node's tasks and secrets as last pushed (secrets' data in memory only). */
  readonly assignments = new AssignmentSet();
  readonly runner: TaskRunner | undefined;
  readonly secretFiles: SecretFiles | undefined;
  private readonly session: DispatcherSession;
  private readonly renewal: CertificateRenewal;
  private readonly stream: AssignmentsStream;
  private readonly reporter: StatusReporter;
  /** What this node's prefetch jobs did, to the managers (ReportPrefetch). */
  private readonly prefetchReporter: PrefetchReporter;
  /** Task logs for `service logs` (only when the node runs tasks). */
  readonly logPublisher: LogPublisher | undefined;
  private lastMessage: SessionMessage | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.logger.child({ component: "agent" });
    // opts.rootCaPem may be a getter: the daemon follows a root CA rotation (the session's root bundle).
    let roots: { pem: string; parsed: RootCA[] } | undefined;
    const currentRoots = (): RootCA[] => {
      const pem = opts.rootCaPem;
      if (roots?.pem !== pem) roots = { pem, parsed: splitPemBundle(pem).map((p) => RootCA.fromCertOnly(p)) };
      return roots.parsed;
    };
    this.peerVerifier = rootsPeerVerifier({ roots: currentRoots, clusterId: opts.clusterId, clock: opts.clock, revocation: this.revocation });
    this.reporter = new StatusReporter({ clock: opts.clock, logger: this.log });
    this.prefetchReporter = new PrefetchReporter({ clock: opts.clock, logger: this.log });
    const worker = opts.worker;
    if (worker !== undefined) {
      this.secretFiles = new SecretFiles(worker.secretsRoot);
      this.runner = new TaskRunner({ executors: worker.executors, secrets: this.secretFiles, reporter: this.reporter, state: new WorkerState(worker.workerDir), clock: opts.clock, logger: this.log });
    }
    const runner = this.runner;
    if (runner !== undefined) this.logPublisher = new LogPublisher({ taskLog: (id) => runner.taskLog(id), clock: opts.clock, logger: this.log });
    const description = describeNode({ hostname: opts.hostname, executors: this.runner?.executorNames ?? [], engineLabels: opts.engineLabels ?? {} });
    this.stream = new AssignmentsStream({ set: this.assignments, clock: opts.clock, logger: this.log, onApplied: (set, complete) => this.applied(set, complete) });
    this.session = new DispatcherSession({
      clusterId: opts.clusterId,
      get rootCaPem() {
        return opts.rootCaPem;
      },
      managers: opts.managers,
      identity: opts.identity,
      advertiseAddr: opts.advertiseAddr,
      description: () => description,
      revocation: this.revocation,
      clock: opts.clock,
      logger: this.log,
      onMessage: (message) => this.onMessage(message),
      onConnected: (link) => this.onConnected(link),
      onDisconnected: () => this.onDisconnected(),
      onRemoved: () => opts.onRemoved(),
      renewalSettled: () => this.renewal.settled(),
    });
    this.renewal = new CertificateRenewal({
      nodeId: opts.nodeId,
      clusterId: opts.clusterId,
      identity: opts.identity,
      session: this.session,
      clock: opts.clock,
      random: opts.random,
      logger: this.log,
      onRenewed: opts.onRenewed,
      onRemoved: opts.onRemoved,
    });
  }

  private applied(set: AssignmentSet, complete: boolean): void {
    // Orders first: a task whose image is being prefetched finds its job already known.
    const prefetch = this.opts.worker?.prefetch;
    prefetch?.sync(set.prefetch);
    // A complete set opens every stream, so every new session (and a new leader) gets one.
    if (complete) prefetch?.reportEnded?.();
    this.runner?.sync(set);
  }

  get isConnected(): boolean {
    return this.session.isConnected;
  }

  /** The manager holding this node's session: the leader (sessions are served by the leader only). */
  get sessionAddr(): string | undefined {
    return this.session.sessionAddr;
  }

  get knownManagers(): readonly string[] {
    return this.session.knownManagers;
  }

  get lastSession(): SessionMessage | undefined {
    return this.lastMessage;
  }

  /** Assignments streams opened and gaps seen (tests and diagnostics). */
  get assignmentStats(): { opened: number; gaps: number } {
    return { opened: this.stream.opened, gaps: this.stream.gaps };
  }

  start(): void {
    // Secret files of an earlier process go, and its leftover tasks are removed, before any new task.
    void this.runner?.recover().catch((err) => this.log.error({ err: err instanceof Error ? err.message : String(err) }, "cleaning up after an earlier agent process failed"));
    this.renewal.start();
    this.session.start();
  }

  async stop(): Promise<void> {
    await this.renewal.stop();
    this.stream.disconnected();
    this.logPublisher?.disconnected();
    await this.session.stop();
    await this.runner?.stop();
    this.reporter.stop();
    this.prefetchReporter.stop();
  }

  /** A prefetch job's event, for the managers (the PrefetchRunner's `report`). */
  reportPrefetch(event: PrefetchReport): void {
    this.prefetchReporter.report(event);
  }

  /** Renews the certificate now (one renewal at a time); the new one has the store's role and zone. */
  renewNow(): Promise<void> {
    return this.renewal.renewNow();
  }

  private onConnected(link: SessionLink): void {
    this.reporter.connected(link);
    this.prefetchReporter.connected(link);
    this.stream.connected(link);
    this.logPublisher?.connected(link);
  }

  private onDisconnected(): void {
    this.reporter.disconnected();
    this.prefetchReporter.disconnected();
    this.stream.disconnected();
    this.logPublisher?.disconnected();
  }

  private onMessage(message: SessionMessage): void {
    this.lastMessage = message;
    this.session.learnManagers(message.managers.map((m) => m.addr).filter((a) => a !== ""));
    this.revocation.replace({ nodeIds: message.revokedNodeIds, serials: message.revokedSerials });
    try {
      this.opts.onSessionMessage?.(message);
    } catch (err) {
      this.log.error({ err: String(err) }, "session message listener failed");
    }
    if (message.node !== undefined) this.renewal.checkNode(message.node);
  }
}
