// The daemon's Prometheus metrics (`--metrics-addr`): one prom-client Registry per daemon (tests run
// several daemons in one process, so never the global one). Gauges read the node's state when
// scraped (`collect()`); counters and histograms are fed through the observers the raft node, the
// dispatcher and the scheduler are given, which are plain interfaces of those layers (they do not
// know prom-client). Three registries: the process and lock-state metrics are always served; the
// node's (certificate, revocation list, prefetch) while it runs a role; raft, dispatcher, scheduler
// and store only while it is a manager (a locked manager shows nothing of its cluster).
// Labels are bounded (state, role, zone, outcome, source, kind), and nothing secret is read.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Clock } from "../../base/clock.js";
import type { PrefetchReport } from "../../agent/prefetch-runner.js";
import { DEFAULT_ZONE, parseNodeCertificate } from "../../ca/index.js";
import type { Manager } from "../../manager/manager.js";
import type { DispatcherObserver } from "../../manager/dispatcher/dispatcher.js";
import type { SchedulerObserver } from "../../manager/scheduler/scheduler.js";
import { NodeState, TaskState } from "../../proto/shoal/v1/objects.js";
import { Role } from "../../raft/core/types.js";
import type { RaftNodeObserver } from "../../raft/node/index.js";
import { nodeZone } from "../../state/index.js";
import type { RevocationState } from "../../transport/revocation.js";
import { PrefetchByteCounter } from "./prefetch-bytes.js";
import type { Scrape } from "./metrics-server.js";

export type DaemonStateName = "inactive" | "locked" | "manager" | "worker";
const DAEMON_STATES: readonly DaemonStateName[] = ["inactive", "locked", "manager", "worker"];

/** What the metrics read of the daemon at scrape time. */
export interface MetricsView {
  state: DaemonStateName;
  /** The running manager role, if any. */
  manager: Manager | undefined;
  /** The revocation list this node enforces: its manager's, else its agent's. */
  revocation: RevocationState | undefined;
  /** This node's certificate (PEM; public), "" while it has none. */
  certPem: string;
}

export interface DaemonMetricsOptions {
  view: () => MetricsView;
  clock: Clock;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const FSYNC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/** TASK_STATE_RUNNING → running. */
function enumLabel(name: string | undefined, prefix: string): string {
  return name === undefined ? "unknown" : name.slice(prefix.length).toLowerCase();
}
const TASK_STATES = Object.values(TaskState).filter((v): v is TaskState => typeof v === "number" && v >= 0);

export class DaemonMetrics implements Scrape {
  /** Process and lock-state metrics: always served. */
  private readonly base = new Registry();
  /** The node's certificate, revocation list and prefetch: served while it runs a role (manager or worker). */
  private readonly role = new Registry();
  /** Raft, the dispatcher, the scheduler and the store: served only while it runs the manager role. */
  private readonly manager = new Registry();
  readonly contentType = this.base.contentType;
  readonly raftObserver: RaftNodeObserver;
  readonly dispatcherObserver: DispatcherObserver;
  readonly schedulerObserver: SchedulerObserver;
  private readonly renewals: Counter;
  private readonly prefetchBytes: Counter<"source" | "zone">;
  private readonly prefetchCounter: PrefetchByteCounter;
  private certCache: { pem: string; notAfterMs: number; zone: string } | undefined;

  constructor(private readonly opts: DaemonMetricsOptions) {
    const { base, role, manager } = this;
    const view = opts.view;
    collectDefaultMetrics({ register: base });
    new Gauge({
      name: "shoal_node_locked",
      help: "1 while this manager is locked (autolock on, waiting for `shoal unlock`), else 0",
      registers: [base],
      collect() {
        this.set(view().state === "locked" ? 1 : 0);
      },
    });
    new Gauge({
      name: "shoal_node_state",
      help: "1 for this daemon's current state (inactive: in no cluster; locked; manager; worker), 0 for the others",
      labelNames: ["state"],
      registers: [base],
      collect() {
        const state = view().state;
        for (const s of DAEMON_STATES) this.set({ state: s }, s === state ? 1 : 0);
      },
    });

    // ---- raft (managers) ----
    const raft = () => view().manager?.raft;
    new Gauge({
      name: "shoal_raft_term",
      help: "Current raft term of this manager",
      registers: [manager],
      collect() {
        this.reset();
        const r = raft();
        if (r !== undefined) this.set(r.term);
      },
    });
    new Gauge({
      name: "shoal_raft_role",
      help: "1 for this manager's current raft role, 0 for the others",
      labelNames: ["role"],
      registers: [manager],
      collect() {
        this.reset();
        const r = raft();
        if (r === undefined) return;
        const current = r.status().role;
        for (const value of Object.values(Role)) this.set({ role: value }, value === current ? 1 : 0);
      },
    });
    new Gauge({
      name: "shoal_raft_commit_index",
      help: "Highest raft log index this manager knows to be committed",
      registers: [manager],
      collect() {
        this.reset();
        const r = raft();
        if (r !== undefined) this.set(r.commitIndex);
      },
    });
    new Gauge({
      name: "shoal_raft_applied_index",
      help: "Highest raft log index this manager applied to its store",
      registers: [manager],
      collect() {
        this.reset();
        const r = raft();
        if (r !== undefined) this.set(r.appliedIndex);
      },
    });
    const leaderChanges = new Counter({ name: "shoal_raft_leader_changes_total", help: "Times the leader this manager follows changed (or it started or stopped leading)", registers: [manager] });
    const proposals = new Histogram({
      name: "shoal_raft_proposal_duration_seconds",
      help: "Time from a proposal handed to raft on this manager to its apply here (outcome applied) or its failure",
      labelNames: ["outcome"],
      buckets: LATENCY_BUCKETS,
      registers: [manager],
    });
    const persists = new Histogram({
      name: "shoal_raft_persist_duration_seconds",
      help: "Time of one synced (fsync) write of a raft Ready: entries and hard state",
      buckets: FSYNC_BUCKETS,
      registers: [manager],
    });
    const readyEntries = new Histogram({
      name: "shoal_raft_ready_entries",
      help: "Log entries persisted per raft Ready (Readies without entries are not counted)",
      buckets: BATCH_BUCKETS,
      registers: [manager],
    });
    const snapshots = new Counter({
      name: "shoal_raft_snapshots_total",
      help: "Raft snapshots taken on this manager (kind taken) or installed from the leader (kind installed)",
      labelNames: ["kind"],
      registers: [manager],
    });
    const snapshotBytes = new Gauge({ name: "shoal_raft_snapshot_size_bytes", help: "Size of the last raft snapshot this manager took or installed", registers: [manager] });
    this.raftObserver = {
      readyEntries: (n) => readyEntries.observe(n),
      persistStarted: () => persists.startTimer(),
      proposalStarted: () => {
        const end = proposals.startTimer();
        return (applied) => void end({ outcome: applied ? "applied" : "failed" });
      },
      leaderChanged: () => leaderChanges.inc(),
      snapshot: (kind, bytes) => {
        snapshots.inc({ kind });
        snapshotBytes.set(bytes);
      },
    };

    // ---- dispatcher and the store (managers) ----
    new Gauge({
      name: "shoal_dispatcher_sessions",
      help: "Agent sessions open on this manager's dispatcher (only the leader holds sessions)",
      registers: [manager],
      collect() {
        this.reset();
        const m = view().manager;
        if (m !== undefined) this.set(m.dispatcherSessions);
      },
    });
    const missed = new Counter({
      name: "shoal_dispatcher_heartbeats_missed_total",
      help: "Nodes this manager, as leader, found silent for 3 heartbeat periods and marked DOWN",
      registers: [manager],
    });
    this.dispatcherObserver = { heartbeatsMissed: (n) => missed.inc(n) };
    new Gauge({
      name: "shoal_nodes",
      help: "Nodes by state and security zone, in this manager's own copy of the store (each manager, leader or follower, reports its own view)",
      labelNames: ["state", "zone"],
      registers: [manager],
      collect() {
        this.reset();
        const store = view().manager?.store;
        if (store === undefined) return;
        const counts = store.countNodes((n) => `${enumLabel(NodeState[n.status?.state ?? NodeState.NODE_STATE_UNKNOWN], "NODE_STATE_")}\u0000${nodeZone(n)}`);
        for (const [key, count] of counts) {
          const [state, zone] = key.split("\u0000") as [string, string];
          this.set({ state, zone }, count);
        }
      },
    });
    new Gauge({
      name: "shoal_tasks",
      help: "Tasks by state, in this manager's own copy of the store (each manager, leader or follower, reports its own view)",
      labelNames: ["state"],
      registers: [manager],
      collect() {
        this.reset();
        const store = view().manager?.store;
        if (store === undefined) return;
        const counts = store.countTasks((t) => enumLabel(TaskState[t.status?.state ?? TaskState.TASK_STATE_NEW], "TASK_STATE_"));
        for (const state of TASK_STATES) {
          const label = enumLabel(TaskState[state], "TASK_STATE_");
          this.set({ state: label }, counts.get(label) ?? 0);
        }
      },
    });

    // ---- scheduler (leader) ----
    const decisions = new Counter({
      name: "shoal_scheduler_decisions_total",
      help: "Placement decisions of this manager's scheduler passes: assigned (a node was chosen) or unplaceable (no node fits; counted again on every pass it stays pending)",
      labelNames: ["outcome"],
      registers: [manager],
    });
    const passes = new Histogram({
      name: "shoal_scheduler_pass_duration_seconds",
      help: "Time of one scheduler pass with pending tasks: placement and the commit of its assignments",
      buckets: LATENCY_BUCKETS,
      registers: [manager],
    });
    this.schedulerObserver = {
      passStarted: () => passes.startTimer(),
      decided: (outcome, n) => decisions.inc({ outcome }, n),
    };

    // ---- certificates ----
    const cert = () => this.certificate();
    const clock = opts.clock;
    new Gauge({
      name: "shoal_node_certificate_expiry_seconds",
      help: "Seconds until this node's TLS certificate expires (negative once expired)",
      registers: [role],
      collect() {
        this.reset();
        const c = cert();
        if (c !== undefined) this.set((c.notAfterMs - clock.nowMs()) / 1000);
      },
    });
    this.renewals = new Counter({ name: "shoal_node_certificate_renewals_total", help: "Times this node's certificate was renewed (a new one written) since the daemon started", registers: [role] });
    new Gauge({
      name: "shoal_ca_revocation_list_entries",
      help: "Entries of the revocation list this node enforces: removed node IDs (kind node) and revoked certificate serials (kind serial)",
      labelNames: ["kind"],
      registers: [role],
      collect() {
        this.reset();
        const list = view().revocation;
        if (list === undefined) return;
        const size = list.size;
        this.set({ kind: "node" }, size.nodeIds);
        this.set({ kind: "serial" }, size.serials);
      },
    });

    // ---- prefetch (workers, and managers that run tasks) ----
    this.prefetchBytes = new Counter({
      name: "shoal_prefetch_bytes_total",
      help: "Image bytes this node fetched for prefetch jobs, by source (peer or registry) and this node's zone",
      labelNames: ["source", "zone"],
      registers: [role],
    });
    this.prefetchCounter = new PrefetchByteCounter((source, bytes) => this.prefetchBytes.inc({ source, zone: this.certificate()?.zone ?? DEFAULT_ZONE }, bytes));
  }

  /** This node's certificate was renewed. */
  renewed(): void {
    this.renewals.inc();
  }

  /** A prefetch report of this node's agent (bytes by source). */
  prefetchReport(event: PrefetchReport): void {
    this.prefetchCounter.report(event);
  }

  /** One scrape: the process and lock-state metrics, the node's while it runs a role, the manager's while it is one. */
  async text(): Promise<string> {
    const state = this.opts.view().state;
    const registries = state === "manager" ? [this.base, this.role, this.manager] : state === "worker" ? [this.base, this.role] : [this.base];
    return (await Promise.all(registries.map((r) => r.metrics()))).join("\n");
  }

  private certificate(): { notAfterMs: number; zone: string } | undefined {
    const pem = this.opts.view().certPem;
    if (pem === "") return undefined;
    if (this.certCache?.pem !== pem) {
      const info = parseNodeCertificate(pem);
      this.certCache = { pem, notAfterMs: info.notAfter.getTime(), zone: info.zone };
    }
    return this.certCache;
  }
}
