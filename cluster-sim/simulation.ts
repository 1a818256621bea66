// One simulated run: N nodes, each the daemon's own Raft driver (RaftNode, over the real core),
// over a simulated network and disks, with faults, clients and the per-step safety checkers; then
// a liveness phase and a linearizability check. Everything is driven by one seeded PRNG and one
// virtual clock (every node's timers are events on the same queue), so a seed replays exactly.
import { createHash, type Hash } from "node:crypto";
import { isShoalError, ShoalError } from "../src/base/errors.js";
import { SeededRandom } from "../src/base/random.js";
import { ConfChangeType, EntryType, MessageType, NO_NODE, Role, type ConfState, type Entry, type Message, type RaftId } from "../src/raft/core/types.js";
import { DEFAULT_RAFT_TIMING, electionJitterTicks, NotLeaderError, RaftNode, type AppliedEntry, type RaftMemberInfo, type RaftNodeFaults, type RaftStateMachine } from "../src/raft/node/index.js";
import { entryFingerprint, SafetyCheckers } from "./checkers.js";
import { cloneEntry, cloneSnapshot, entryAt, lastIndexOf, SimDisk, termAt } from "./disk.js";
import { deriveSeed, EventQueue } from "./events.js";
import { decodeCommand, encodeCommand, KvStateMachine } from "./kv.js";
import { checkLinearizable, describeOp, type HistoryOp, type KvInput, type KvOutput, type KvValue } from "./linearizability.js";
import { CALM_NETWORK, SimNetwork, type NetworkConditions } from "./network.js";
import { SimNodeClock } from "./sim-clock.js";
import { SimDurableLog } from "./sim-log.js";
import { SimTransport } from "./sim-transport.js";
import { SimViolation } from "./violation.js";

/** What a scenario step may look at and do; node arguments are indices. */
export interface ScenarioControl {
  readonly nowMs: number;
  /** The live leader with the highest term among `among` (default: all nodes). */
  leader(among?: number[]): number | undefined;
  term(node: number): number;
  commit(node: number): number;
  lastIndex(node: number): number;
  termAt(node: number, index: number): number | undefined;
  alive(node: number): boolean;
  partition(groups: number[][]): void;
  heal(): void;
  /** Rewrites (or, returning undefined, drops) every message sent from now on; undefined clears it. */
  intercept(rewrite: ((from: number, to: number, m: Message) => Message | undefined) | undefined): void;
  crash(node: number): void;
  restart(node: number): void;
  /**
   * Proposes a put on `node`; returns the log index it takes (the leader's next index: call it on
   * an idle leader), or undefined if the node is not the leader.
   */
  propose(node: number, key: string, value: string): number | undefined;
}

export interface ScenarioStep {
  name: string;
  /** Polled every few virtual milliseconds; the step runs when it returns true. */
  until?: (c: ScenarioControl) => boolean;
  then?: (c: ScenarioControl) => void;
  /** The step fails the run if its condition does not hold within this time (default 20 s). */
  withinMs?: number;
}

export interface SimOptions {
  seed: number;
  nodes: number;
  /** Virtual time of the fault phase. */
  safetyPhaseMs?: number;
  clients?: number;
  keys?: number;
  /** Deliberate bugs in the core or the driver (RaftNodeFaults), to show the checkers catch them. */
  faults?: RaftNodeFaults;
  /**
   * A deliberate failure to heal, for testing the liveness check: after the fault phase every node
   * stays cut off from every other, so no write can commit.
   */
  isolateAfterHeal?: boolean;
  /** Membership churn in the fault phase: add learners, promote them, remove voters. */
  churn?: boolean;
  /**
   * No faults at all: a calm network, no crashes, pauses, drift or partitions; only clients. The
   * run counts elections, which without faults should stay at the first one.
   */
  calm?: boolean;
  /**
   * A scripted adversary instead of random faults and clients: the steps run in order, each once
   * its condition holds, and the run ends after the last one (see scenarios.ts).
   */
  scenario?: ScenarioStep[];
  /** Overrides of the per-seed random choices, for scenarios that need exact message shapes. */
  maxSizePerMsgBytes?: number;
  maxInflightMsgs?: number;
  /**
   * Check the current-term commit rule directly (default on). Off, only the consequences of a
   * broken rule (lost commits) can be caught, which is what the Figure 8 scenario test shows.
   */
  checkCommitRule?: boolean;
  /** Receives every event line (for replay debugging); the trace hash is computed either way. */
  trace?: (line: string) => void;
  /**
   * Raft timing of every node (default: RaftNode's defaults, 100 ms ticks, elections over [1, 2) s).
   * `daemonSimTiming()` is what the daemons run. Election timeouts must stay within 2 s, which the
   * liveness bound assumes.
   */
  timing?: SimTiming;
}

export interface SimTiming {
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  electionJitterTicks?: number;
}

/** The daemons' timing (DEFAULT_RAFT_TIMING with its jitter), for `--daemon-timing`. */
export function daemonSimTiming(): SimTiming {
  return { ...DEFAULT_RAFT_TIMING, electionJitterTicks: electionJitterTicks(DEFAULT_RAFT_TIMING) };
}

export interface SimStats {
  events: number;
  virtualMs: number;
  elections: number;
  crashes: number;
  tornCrashes: number;
  /** Nodes stopped for good because their log failed its checksums at start. */
  corruptLogStops: number;
  partitions: number;
  pauses: number;
  messagesSent: number;
  messagesDelivered: number;
  snapshotsSent: number;
  compactions: number;
  confChanges: number;
  transfers: number;
  opsInvoked: number;
  opsOk: number;
  opsFailed: number;
  opsUnknown: number;
  /** Gets answered through ReadIndex rather than through the log. */
  readIndexReads: number;
  maxCommitIndex: number;
  linearizabilityExhaustedKeys: number;
}

export interface SimResult {
  seed: number;
  nodes: number;
  ok: boolean;
  violation?: string;
  stats: SimStats;
  /** SHA-256 over every event's time and label: equal seeds must give equal hashes. */
  traceHash: string;
}

/** Virtual length of the fault phase unless a run asks otherwise. */
export const DEFAULT_SAFETY_PHASE_MS = 20_000;
/** The longest randomized election timeout of RaftNode's default timing (100 ms ticks, 10 to 20 ticks). */
const ELECTION_TIMEOUT_MS = 2000;
/** After healing, a write must commit within this many election timeouts. */
const LIVENESS_BOUND_MS = 10 * ELECTION_TIMEOUT_MS;
const CLIENT_TIMEOUT_MS = 3000;
/** Time left after the liveness write commits so in-flight client operations settle. */
const SETTLE_MS = 500;

interface ClientOp {
  historyId: number;
  clientId: number;
  seq: number;
  input: KvInput;
  invokeMs: number;
  viaReadIndex: boolean;
  /** True once some node may have put it into its log: from then on a timeout means "unknown". */
  proposed: boolean;
  done: boolean;
}

interface SimClient {
  id: number;
  seq: number;
  leaderGuess: number;
  lastSeen: Map<string, KvValue>;
  /** The liveness probe client runs only in the liveness phase and retries until a write succeeds. */
  probe: boolean;
}

/** What the simulated state machine answers a proposal with: the client checks it is its own. */
interface SimApplyResult {
  clientId: number;
  seq: number;
  output: KvOutput;
}

interface SimNode {
  index: number;
  id: RaftId;
  /** The running driver; undefined while down (or still starting). */
  raft: RaftNode | undefined;
  starting: boolean;
  clock: SimNodeClock | undefined;
  incarnation: number;
  disk: SimDisk;
  kv: KvStateMachine;
  /** Last seen applied index (kept while down, for the catch-up report). */
  appliedIndex: number;
  /** Highest commit index this incarnation has reported; it must never go down. */
  lastCommit: number;
  role: Role;
  term: number;
  leaderHint: RaftId;
  paused: boolean;
  /** Deliveries, client requests, fsync completions and timers that came due while paused. */
  held: Array<() => void>;
  /** Tick period multiplier: a drifting clock makes a node's timers run fast or slow. */
  drift: number;
  /** Crash during the next fsync, leaving its writes lost or torn. */
  crashAtNextSync: boolean;
  /** Chosen per node: RaftNode's snapshot interval and the entries it keeps behind a snapshot. */
  snapshotIntervalEntries: number;
  logEntriesForSlowFollowers: number;
  /** A brand-new disk bootstraps the founding cluster, or joins it with what it was told. */
  firstStart: { bootstrap: { members: RaftMemberInfo[] } } | { join: { members: RaftMemberInfo[] } };
  /** Removed from the cluster: stopped for good, never restarted or targeted again. */
  removed: boolean;
  /** Refused to start on a corrupted log: stays down for good (never silently loses data). */
  corrupt: boolean;
}

function cloneMessage(m: Message): Message {
  return {
    ...m,
    entries: m.entries.map(cloneEntry),
    context: m.context.slice(),
    ...(m.snapshot ? { snapshot: cloneSnapshot(m.snapshot) } : {}),
  };
}

function memberInfo(node: SimNode): RaftMemberInfo {
  return { raftId: node.id, nodeId: `sim-node-${node.index}`, addr: `n${node.index}` };
}

/** Lets every promise continuation that the last event started run, before the next event. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class Simulation {
  private readonly random: SeededRandom;
  private readonly queue = new EventQueue();
  private readonly network: SimNetwork;
  private readonly nodes: SimNode[] = [];
  private readonly indexById = new Map<RaftId, number>();
  /** Latest membership applied anywhere, and the index it was applied at. */
  private clusterConf: ConfState = { voters: [], learners: [] };
  private clusterConfIndex = 0;
  private readonly clients: SimClient[] = [];
  private readonly history: HistoryOp[] = [];
  private readonly hash: Hash = createHash("sha256");
  private readonly safetyPhaseMs: number;
  private readonly keyCount: number;
  private readonly writtenValues = new Map<string, string[]>();
  private nextHistoryId = 1;
  /** Invoked operations without an outcome yet (a crash can drop a node's record of them). */
  private readonly openOps = new Set<ClientOp>();
  private inLivenessPhase = false;
  private finished = false;
  private interceptor: ((from: number, to: number, m: Message) => Message | undefined) | undefined;
  private livenessProven = false;
  /** After the liveness write: the committed index every member must reach, and whether all have. */
  private catchUpIndex = 0;
  private caughtUp = false;
  private livenessDeadlineMs = Infinity;
  /** Chosen per seed: small messages split catch-up into many appends, which widens race windows. */
  private readonly maxSizePerMsgBytes: number;
  private readonly maxInflightMsgs: number;
  /** Chance that a freshly elected leader is crashed or cut off moments later (during the fault phase). */
  private readonly leaderNemesisRate: number;
  /** Chosen per seed: padding on written values, so some seeds fit only one entry in a message. */
  private readonly valuePadding: string;
  /** Chosen per seed: the longest simulated fsync, in virtual ms. */
  private readonly maxFsyncMs: number;
  /**
   * The first violation seen inside a callback RaftNode made (a send, a save, an apply): it is
   * recorded rather than thrown into the node, which would turn it into the node's own failure,
   * and the run stops once the event in progress has settled.
   */
  private violation: SimViolation | undefined;

  private readonly checkers: SafetyCheckers;

  readonly stats: SimStats = {
    events: 0,
    virtualMs: 0,
    elections: 0,
    crashes: 0,
    tornCrashes: 0,
    corruptLogStops: 0,
    partitions: 0,
    pauses: 0,
    messagesSent: 0,
    messagesDelivered: 0,
    snapshotsSent: 0,
    compactions: 0,
    confChanges: 0,
    transfers: 0,
    opsInvoked: 0,
    opsOk: 0,
    opsFailed: 0,
    opsUnknown: 0,
    readIndexReads: 0,
    maxCommitIndex: 0,
    linearizabilityExhaustedKeys: 0,
  };

  constructor(private readonly options: SimOptions) {
    if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > 9) {
      throw new RangeError(`--nodes must be an integer in 1..9, got ${options.nodes}`);
    }
    this.random = new SeededRandom(deriveSeed(options.seed, 0));
    this.checkers = new SafetyCheckers(this.nodes, (id) => `n${this.indexById.get(id) ?? id}`, options.checkCommitRule !== false);
    this.network = new SimNetwork(this.random, options.nodes);
    this.safetyPhaseMs = options.safetyPhaseMs ?? (options.calm === true ? 60_000 : DEFAULT_SAFETY_PHASE_MS);
    this.keyCount = options.keys ?? 3;
    const sizeChoice = [256, 1024, 4096][this.random.int(0, 3)]!;
    const inflightChoice = [1, 4, 16][this.random.int(0, 3)]!;
    this.maxSizePerMsgBytes = options.maxSizePerMsgBytes ?? sizeChoice;
    this.maxInflightMsgs = options.maxInflightMsgs ?? inflightChoice;
    this.leaderNemesisRate = options.calm === true ? 0 : [0, 0.2, 0.5][this.random.int(0, 3)]!;
    this.maxFsyncMs = [1, 3, 10][this.random.int(0, 3)]!;
    // A cas entry carries two padded values plus about 120 bytes of framing; keep it under the limit.
    const roomBytes = Math.max(0, Math.floor((this.maxSizePerMsgBytes - 140) / 2));
    this.valuePadding = ".".repeat([0, 0, Math.floor(roomBytes / 2), roomBytes][this.random.int(0, 4)]!);
    for (let i = 0; i < options.nodes; i++) this.addNode();
    this.clusterConf = { voters: this.nodes.map((n) => n.id), learners: [] };
    // As in the daemon, every founding node starts from the same founding snapshot (index 1) that
    // RaftNode writes from `bootstrap`; a node that joins later learns the membership from it.
    const founders = this.nodes.map(memberInfo);
    for (const node of this.nodes) node.firstStart = { bootstrap: { members: founders } };
    const clientCount = options.clients ?? this.random.int(2, 6);
    for (let c = 1; c <= clientCount + 1; c++) {
      this.clients.push({ id: c, seq: 0, leaderGuess: this.random.int(0, options.nodes), lastSeen: new Map(), probe: c === clientCount + 1 });
    }
  }

  private addNode(): SimNode {
    const i = this.nodes.length;
    // Distinct, deterministic, non-zero 64-bit member IDs, never reused.
    const id = (BigInt(deriveSeed(this.options.seed, 1, i)) << 16n) | BigInt(i + 1);
    const node: SimNode = {
      index: i,
      id,
      raft: undefined,
      starting: false,
      clock: undefined,
      incarnation: 0,
      disk: new SimDisk(),
      kv: new KvStateMachine(),
      appliedIndex: 0,
      lastCommit: 0,
      role: Role.Follower,
      term: 0,
      leaderHint: NO_NODE,
      paused: false,
      held: [],
      drift: 1,
      crashAtNextSync: false,
      snapshotIntervalEntries: 10 + this.random.int(0, 30),
      logEntriesForSlowFollowers: [0, 5, 20][this.random.int(0, 3)]!,
      firstStart: { join: { members: [] } },
      removed: false,
      corrupt: false,
    };
    this.indexById.set(id, i);
    this.nodes.push(node);
    return node;
  }

  async run(): Promise<SimResult> {
    let violation: string | undefined;
    try {
      for (const node of this.nodes) this.start(node);
      await this.afterEvent();
      if (this.options.scenario !== undefined) {
        this.runScenarioStep(this.options.scenario, 0, this.queue.nowMs);
      } else {
        for (const client of this.clients) if (!client.probe) this.scheduleNextOp(client, this.random.int(0, 50));
        if (this.options.calm !== true) this.scheduleFault();
        if (this.options.churn === true) this.scheduleChurn();
        this.queue.schedule(this.safetyPhaseMs, "heal", () => this.beginLivenessPhase());
      }
      while (!this.finished) {
        const event = this.queue.pop();
        if (event === undefined) throw new SimViolation("liveness", "the event queue ran dry");
        this.stats.events++;
        const line = `${event.timeMs} ${event.label}`;
        this.hash.update(line + "\n");
        this.options.trace?.(line);
        event.run();
        await this.afterEvent();
      }
      this.finishHistory();
      const report = checkLinearizable(this.history);
      this.stats.linearizabilityExhaustedKeys = report.keys.filter((k) => k.verdict === "exhausted").length;
      if (!report.ok) {
        const ce = report.counterexample!;
        const ops = ce.ops
          .slice()
          .sort((a, b) => a.invokeMs - b.invokeMs)
          .map(describeOp)
          .join("; ");
        throw new SimViolation("linearizability", `history of key ${ce.key} (${ce.ops.length} ops) is not linearizable: ${ops}`);
      }
    } catch (err) {
      // A bug in the simulator itself still fails the seed with its replay line, never silently.
      const failure =
        err instanceof SimViolation
          ? err
          : new SimViolation("simulator-error", err instanceof Error ? `${err.stack?.split("\n").slice(0, 3).join(" | ")}` : String(err));
      violation = `${failure.message} (at ${this.queue.nowMs} ms)`;
    }
    this.stats.virtualMs = this.queue.nowMs;
    this.stats.elections = this.checkers.elections;
    return {
      seed: this.options.seed,
      nodes: this.options.nodes,
      ok: violation === undefined,
      ...(violation !== undefined ? { violation } : {}),
      stats: this.stats,
      traceHash: this.hash.digest("hex"),
    };
  }

  /**
   * Lets the nodes finish what the event started (their Ready loops run on promises, and nothing
   * they await is real I/O, so one macrotask turn drains them), then stops on a recorded violation
   * and checks what every node now reports.
   */
  private async afterEvent(): Promise<void> {
    await settle();
    if (this.violation !== undefined) throw this.violation;
    for (const node of this.nodes) if (node.raft !== undefined) this.observe(node);
  }

  /** Records a violation found inside a callback from a node; see `violation`. */
  private check(fn: () => void): void {
    if (this.violation !== undefined) return;
    try {
      fn();
    } catch (err) {
      this.violation =
        err instanceof SimViolation ? err : new SimViolation("simulator-error", err instanceof Error ? `${err.stack?.split("\n").slice(0, 3).join(" | ")}` : String(err));
    }
  }

  /** Commit never decreases within an incarnation; what a leader counts committed is recorded and checked. */
  private observe(node: SimNode): void {
    const raft = node.raft!;
    const commit = raft.commitIndex;
    if (commit < node.lastCommit) {
      throw new SimViolation("commit-regression", `n${node.index} commit went from ${node.lastCommit} to ${commit}`);
    }
    if (commit > node.lastCommit && node.role === Role.Leader && raft.isLeader) this.checkers.leaderCommitted(node, node.lastCommit, commit);
    node.lastCommit = commit;
    node.term = raft.term;
    node.leaderHint = raft.leaderId;
    node.appliedIndex = raft.appliedIndex;
  }

  // ---- node lifecycle ----

  private isUp(node: SimNode): boolean {
    return node.raft !== undefined || node.starting;
  }

  private start(node: SimNode): void {
    if (this.isUp(node) || node.removed || node.corrupt) return;
    node.starting = true;
    node.role = Role.Follower;
    node.leaderHint = NO_NODE;
    const incarnation = node.incarnation;
    const clock = new SimNodeClock(this.queue, `n${node.index}`, node);
    node.clock = clock;
    const kv = new KvStateMachine();
    node.kv = kv;
    const log = new SimDurableLog(node.disk, {
      beforeSave: (update) => {
        this.traceLine(`save n${node.index} hs=${update.hardState ? `${update.hardState.term}/${update.hardState.vote}/${update.hardState.commit}` : "-"} e=${update.entries.length} snap=${update.snapshot?.metadata.index ?? "-"}`);
        this.check(() => this.beforeSave(node, update));
      },
      beforeCompact: () =>
        this.check(() => {
          // Record what a leader counts committed before the entries go into the snapshot.
          if (node.raft !== undefined) this.observe(node);
          this.stats.compactions++;
        }),
      fsync: () => this.fsync(node, incarnation),
    });
    const transport = new SimTransport(
      (m) => this.check(() => this.send(node, m)),
      (m) => this.check(() => this.unknownPeer(node, incarnation, m)),
    );
    RaftNode.start({
      id: node.id,
      log,
      transport,
      stateMachine: this.stateMachine(node, kv),
      ...node.firstStart,
      clock,
      random: new SeededRandom(deriveSeed(this.options.seed, 2, node.index, incarnation)),
      maxSizePerMsgBytes: this.maxSizePerMsgBytes,
      maxInflightMsgs: this.maxInflightMsgs,
      maxUncommittedEntriesBytes: 64 * 1024,
      snapshotIntervalEntries: node.snapshotIntervalEntries,
      logEntriesForSlowFollowers: node.logEntriesForSlowFollowers,
      defaultTimeoutMs: CLIENT_TIMEOUT_MS,
      ...(this.options.timing ?? {}),
      ...(this.options.faults ? { faults: { ...this.options.faults } } : {}),
    }).then(
      (raft) => {
        if (node.incarnation !== incarnation) return;
        node.starting = false;
        node.raft = raft;
        node.lastCommit = raft.commitIndex;
        node.term = raft.term;
        node.appliedIndex = raft.appliedIndex;
        raft.on("leader-changed", (e) => this.check(() => this.onLeaderChanged(node, e.isLeader, e.term)));
        raft.on("membership-changed", (e) => {
          if (e.change !== undefined) this.check(() => this.onConfChangeApplied(raft.appliedIndex + 1, e.change!.type, e.change!.raftId, e.confState));
        });
        raft.on("fatal", (err) => this.check(() => {
          throw new SimViolation("node-failed", `n${node.index} stopped on ${isShoalError(err) ? err.code : "an error"}: ${err.message}`);
        }));
      },
      (err: unknown) => {
        if (node.incarnation !== incarnation) return;
        node.starting = false;
        if (isShoalError(err, "RAFT_LOG_CORRUPT") || isShoalError(err, "STORE_CORRUPT")) {
          // The only acceptable outcome: the node stays down (an operator replaces it), never runs
          // on a log that lost acknowledged entries.
          node.corrupt = true;
          this.stats.corruptLogStops++;
          this.traceLine(`refused-start n${node.index} ${err.code}`);
          return;
        }
        this.check(() => {
          throw new SimViolation("node-failed", `n${node.index} could not start: ${err instanceof Error ? err.message : String(err)}`);
        });
      },
    );
  }

  private traceLine(text: string): void {
    const line = `${this.queue.nowMs} ${text}`;
    this.hash.update(line + "\n");
    this.options.trace?.(line);
  }

  private crash(node: SimNode, reason: string): void {
    if (!this.isUp(node)) return;
    node.raft = undefined;
    node.starting = false;
    node.clock?.kill();
    node.clock = undefined;
    node.incarnation++;
    node.disk.crash(this.random);
    node.held = [];
    node.paused = false;
    node.crashAtNextSync = false;
    node.role = Role.Follower;
    this.stats.crashes++;
    this.traceLine(`crash n${node.index} ${reason}`);
  }

  private restartLater(node: SimNode, delayMs: number): void {
    const incarnation = node.incarnation;
    this.queue.schedule(delayMs, `restart n${node.index}`, () => {
      if (!this.isUp(node) && node.incarnation === incarnation && !node.removed) this.start(node);
    });
  }

  // ---- what the driver does, as seen from its disk, its wire and its state machine ----

  private onLeaderChanged(node: SimNode, isLeader: boolean, term: number): void {
    const wasLeader = node.role === Role.Leader;
    node.role = isLeader ? Role.Leader : Role.Follower;
    node.term = term;
    if (!isLeader || wasLeader) return;
    this.checkers.electionSafety(node);
    this.checkers.leaderCompletenessOnElection(node);
    this.maybeStrikeNewLeader(node);
  }

  private beforeSave(node: SimNode, update: Parameters<SimDurableLog["save"]>[0]): void {
    // What a leader counted committed is recorded while its entries are still all on its disk.
    if (node.raft !== undefined) this.observe(node);
    if (update.snapshot !== undefined) {
      if (update.snapshot.metadata.index <= node.appliedIndex && node.raft !== undefined) {
        throw new SimViolation("ready-contract", `n${node.index} got a snapshot at ${update.snapshot.metadata.index} at or below applied ${node.appliedIndex}`);
      }
      this.checkers.snapshotInstalled(node, update.snapshot.metadata);
      // A snapshot from the leader is written together with the hard state of its Ready (commit at
      // least its index), as etcd's Ready contract demands: without it a crash can leave the node on
      // a snapshot with a term and commit it never recorded. The joiner's empty seed (index 0) has none.
      const meta = update.snapshot.metadata;
      if (meta.index > 0 && (update.hardState === undefined || update.hardState.commit < meta.index || update.hardState.term < meta.term)) {
        throw new SimViolation(
          "ready-contract",
          `n${node.index} saved the snapshot at ${meta.index} (term ${meta.term}) with ${update.hardState === undefined ? "no hard state" : `hard state term ${update.hardState.term} commit ${update.hardState.commit}`}`,
        );
      }
    }
    if (update.entries.length > 0) {
      // A leader's snapshot replaces the log first: check the entries against what follows it.
      if (update.snapshot === undefined) this.checkers.logMatching(node, update.entries);
    }
  }

  /** The save's fsync completes after a simulated latency, unless the node crashes first (or during it). */
  private fsync(node: SimNode, incarnation: number): Promise<void> {
    return new Promise((resolve) => {
      this.queue.schedule(this.random.int(0, this.maxFsyncMs + 1), `fsync n${node.index}`, () => {
        if (node.incarnation !== incarnation) return;
        if (node.crashAtNextSync) {
          this.stats.tornCrashes++;
          this.crash(node, "during fsync");
          this.restartLater(node, this.random.int(100, 2000));
          return;
        }
        node.disk.sync();
        if (node.paused) node.held.push(resolve);
        else resolve();
      });
    });
  }

  private stateMachine(node: SimNode, kv: KvStateMachine): RaftStateMachine {
    return {
      apply: (entry: AppliedEntry): SimApplyResult | undefined => {
        let result: SimApplyResult | undefined;
        this.check(() => {
          this.checkApplied(node, entry);
          const command = decodeCommand(entry.data);
          if (command !== undefined) result = { clientId: command.clientId, seq: command.seq, output: kv.apply(command.input) };
        });
        return result;
      },
      snapshot: () => kv.snapshot(),
      restore: (data) => kv.restore(data),
    };
  }

  /**
   * State machine safety for an applied entry, and for the no-ops and membership changes before it
   * (the driver does not hand those to the state machine, so they are read from the node's disk).
   */
  private checkApplied(node: SimNode, applied: AppliedEntry): void {
    const from = (node.raft?.appliedIndex ?? applied.index - 1) + 1;
    for (let index = from; index < applied.index; index++) {
      const skipped = entryAt(node.disk.current, index);
      if (skipped !== undefined) this.recordApplied(node, skipped);
    }
    const stored = entryAt(node.disk.current, applied.index);
    const entry: Entry = { index: applied.index, term: applied.term, type: EntryType.Normal, data: applied.data };
    if (stored !== undefined && (stored.term !== entry.term || entryFingerprint(stored) !== entryFingerprint(entry))) {
      throw new SimViolation("ready-contract", `n${node.index} applies entry ${entry.index} term ${entry.term} but stores term ${stored.term} there`);
    }
    this.recordApplied(node, entry);
  }

  private recordApplied(node: SimNode, e: Entry): void {
    if (this.checkers.applied(node, e)) this.stats.maxCommitIndex = Math.max(this.stats.maxCommitIndex, e.index);
    node.appliedIndex = Math.max(node.appliedIndex, e.index);
  }

  // ---- network ----

  private send(from: SimNode, original: Message): void {
    if (from.raft !== undefined) this.observe(from);
    this.checkers.durableBeforeSend(from, original);
    const sent = cloneMessage(original);
    const to = this.indexById.get(sent.to);
    const m = this.interceptor === undefined || to === undefined ? sent : this.interceptor(from.index, to, sent);
    if (m === undefined) return;
    if (to === undefined) throw new SimViolation("ready-contract", `n${from.index} sent ${MessageType[m.type]} to unknown member ${m.to}`);
    this.stats.messagesSent++;
    if (m.type === MessageType.Snapshot) this.stats.snapshotsSent++;
    const delays = this.network.plan(from.index, to);
    const label = `${MessageType[m.type]} n${from.index}>n${to} t${m.term} i${m.index} lt${m.logTerm} c${m.commit} e${m.entries.length}${m.reject ? " rej" : ""}`;
    const incarnation = from.incarnation;
    if (delays.length === 0) {
      if (m.type === MessageType.Snapshot) this.reportSnapshotLater(from, m.to, false);
      if (!this.network.connected(from.index, to)) {
        // A real transport learns of a cut link a moment later, when its connection fails.
        this.queue.schedule(1, `unreachable n${from.index}>n${to}`, () => {
          if (from.incarnation === incarnation) from.raft?.reportUnreachable(m.to);
        });
      }
      return;
    }
    for (const delayMs of delays) {
      this.queue.schedule(delayMs, `deliver ${label}`, () => this.deliver(from, to, m));
    }
  }

  private unknownPeer(from: SimNode, incarnation: number, m: Message): void {
    this.queue.schedule(1, `unknown-peer n${from.index}`, () => {
      if (from.incarnation !== incarnation) return;
      from.raft?.reportUnreachable(m.to);
      if (m.type === MessageType.Snapshot) from.raft?.reportSnapshot(m.to, false);
    });
  }

  private deliver(from: SimNode, toIndex: number, m: Message): void {
    const to = this.nodes[toIndex]!;
    const raft = to.raft;
    if (raft === undefined || !this.network.connected(from.index, toIndex)) {
      if (m.type === MessageType.Snapshot) this.reportSnapshotLater(from, m.to, false);
      return;
    }
    if (to.paused) {
      to.held.push(() => this.deliver(from, toIndex, m));
      return;
    }
    this.stats.messagesDelivered++;
    // Duplicates must not share mutable state with the first copy.
    const accepted = raft.receive(cloneMessage(m), { addr: memberInfo(from).addr });
    if (m.type === MessageType.Snapshot) this.reportSnapshotLater(from, m.to, accepted);
  }

  /** The transport tells the sender how a snapshot stream ended, as a real one would. */
  private reportSnapshotLater(from: SimNode, to: RaftId, ok: boolean): void {
    const incarnation = from.incarnation;
    this.queue.schedule(this.random.int(5, 50), `snapshot-status n${from.index} ${ok}`, () => {
      const raft = from.raft;
      if (raft === undefined || from.incarnation !== incarnation || from.paused) return;
      raft.reportSnapshot(to, ok);
    });
  }

  // ---- clients ----

  private scheduleNextOp(client: SimClient, delayMs: number): void {
    this.queue.schedule(delayMs, `client c${client.id} next`, () => {
      if (this.finished || (this.inLivenessPhase && !client.probe && this.queue.nowMs >= this.livenessDeadlineMs)) return;
      this.invoke(client);
    });
  }

  private invoke(client: SimClient): void {
    client.seq++;
    const key = client.probe ? "live" : `k${this.random.int(0, this.keyCount)}`;
    const value = `c${client.id}.${client.seq}${this.valuePadding}`;
    const pick = client.probe ? 0 : this.random.float();
    let input: KvInput;
    let viaReadIndex = false;
    if (pick < 0.4) {
      input = { kind: "put", key, value };
    } else if (pick < 0.7) {
      input = { kind: "get", key };
      viaReadIndex = this.random.float() < 0.5;
    } else {
      const written = this.writtenValues.get(key) ?? [];
      const r = this.random.float();
      const expected: KvValue =
        r < 0.6 && client.lastSeen.has(key)
          ? client.lastSeen.get(key)!
          : written.length > 0 && r < 0.9
            ? written[this.random.int(0, written.length)]!
            : null;
      input = { kind: "cas", key, expected, value };
    }
    if (input.kind !== "get") {
      const list = this.writtenValues.get(key) ?? [];
      list.push(value);
      this.writtenValues.set(key, list);
    }
    const op: ClientOp = {
      historyId: this.nextHistoryId++,
      clientId: client.id,
      seq: client.seq,
      input,
      invokeMs: this.queue.nowMs,
      viaReadIndex,
      proposed: false,
      done: false,
    };
    this.stats.opsInvoked++;
    this.openOps.add(op);
    this.queue.schedule(client.probe ? 1000 : CLIENT_TIMEOUT_MS, `client c${client.id} timeout ${op.seq}`, () => {
      if (op.done) return;
      op.done = true;
      this.openOps.delete(op);
      if (op.proposed && op.input.kind !== "get") {
        this.stats.opsUnknown++;
        this.history.push({ id: op.historyId, clientId: op.clientId, input: op.input, invokeMs: op.invokeMs, returnMs: Infinity });
      } else {
        this.stats.opsFailed++;
      }
      // A node that knows no leader holds proposals until one is elected, so a request may get no
      // answer at all: as a real client would, try another node next time.
      client.leaderGuess = (client.leaderGuess + 1 + this.random.int(0, Math.max(1, this.nodes.length - 1))) % this.nodes.length;
      this.afterOp(client);
    });
    const followerRead = viaReadIndex && this.random.float() < 0.5;
    this.sendRequest(client, op, followerRead ? this.random.int(0, this.nodes.length) : client.leaderGuess);
  }

  private sendRequest(client: SimClient, op: ClientOp, target: number): void {
    client.leaderGuess = target;
    this.queue.schedule(this.random.int(1, 6), `request c${client.id}.${op.seq} n${target}`, () => this.arrive(client, op, target));
  }

  private retry(client: SimClient, op: ClientOp, hint: RaftId): void {
    if (op.done) return;
    const hinted = hint === NO_NODE ? undefined : this.indexById.get(hint);
    const target = hinted ?? (client.leaderGuess + 1 + this.random.int(0, this.nodes.length - 1)) % this.nodes.length;
    this.queue.schedule(this.random.int(10, 60), `retry c${client.id}.${op.seq}`, () => {
      if (!op.done) this.sendRequest(client, op, target);
    });
  }

  private arrive(client: SimClient, op: ClientOp, target: number): void {
    if (op.done) return;
    const node = this.nodes[target]!;
    const raft = node.raft;
    if (raft === undefined) return this.retry(client, op, NO_NODE); // connection refused
    if (node.paused) {
      node.held.push(() => this.arrive(client, op, target));
      return;
    }
    if (op.viaReadIndex) {
      // Followers serve ReadIndex reads too: the node asks the leader for its commit index, and
      // the read waits until this node has applied that far.
      const kv = node.kv;
      raft.readIndex({ timeoutMs: CLIENT_TIMEOUT_MS }).then(
        () => {
          if (op.done) return;
          this.stats.readIndexReads++;
          this.completeOp(op, { kind: "get", value: kv.read(op.input.key) });
        },
        (err: unknown) => this.check(() => this.refused(client, op, err)),
      );
      return;
    }
    // From here a timeout cannot tell whether the entry made it into some log.
    op.proposed = true;
    raft.propose(encodeCommand({ clientId: op.clientId, seq: op.seq, input: op.input }), { timeoutMs: CLIENT_TIMEOUT_MS }).then(
      (result: unknown) => this.check(() => this.answered(node, op, result as SimApplyResult | undefined)),
      (err: unknown) => this.check(() => this.refused(client, op, err)),
    );
  }

  /** A node answered a proposal: the result must come from applying this very operation. */
  private answered(node: SimNode, op: ClientOp, result: SimApplyResult | undefined): void {
    if (op.done) return;
    if (result === undefined) {
      // Only a put's answer is known without applying it; a driver that answers early (a planted
      // fault) is then caught by what clients observe afterwards.
      if (op.input.kind === "put") this.completeOp(op, { kind: "put" });
      return;
    }
    if (result.clientId !== op.clientId || result.seq !== op.seq) {
      throw new SimViolation("client-result", `n${node.index} answered c${op.clientId}.${op.seq} with the result of c${result.clientId}.${result.seq}`);
    }
    this.completeOp(op, result.output);
  }

  /**
   * A node turned the request down. Refusals that prove the operation never entered a log (or can
   * never commit) are retried; anything else leaves it open, and its timeout makes it unknown.
   */
  private refused(client: SimClient, op: ClientOp, err: unknown): void {
    if (op.done) return;
    if (err instanceof NotLeaderError) return this.retry(client, op, err.leaderId);
    if (isShoalError(err, "PROPOSAL_DROPPED") || isShoalError(err, "QUEUE_FULL") || isShoalError(err, "NOT_LEADER")) return this.retry(client, op, NO_NODE);
    if (isShoalError(err, "TIMEOUT") || isShoalError(err, "NO_QUORUM") || isShoalError(err, "OUTCOME_UNKNOWN") || isShoalError(err, "UNAVAILABLE")) return;
    throw new SimViolation("client-result", `a node refused c${op.clientId}.${op.seq} with ${err instanceof ShoalError ? err.code : "a non-Shoal error"}: ${err instanceof Error ? err.message : String(err)}`);
  }

  private completeOp(op: ClientOp, output: KvOutput): void {
    if (op.done) return;
    op.done = true;
    this.openOps.delete(op);
    this.stats.opsOk++;
    this.history.push({ id: op.historyId, clientId: op.clientId, input: op.input, output, invokeMs: op.invokeMs, returnMs: this.queue.nowMs });
    const client = this.clients[op.clientId - 1]!;
    if (output.kind === "get") client.lastSeen.set(op.input.key, output.value);
    if (op.input.kind === "put" || (op.input.kind === "cas" && output.kind === "cas" && output.ok)) client.lastSeen.set(op.input.key, op.input.value);
    if (client.probe && op.input.kind === "put") {
      // A write committed after healing. Every member must now catch up to it (by log or by
      // snapshot) within the same bound; then in-flight operations settle and the run stops.
      this.livenessProven = true;
      this.awaitCatchUp(this.stats.maxCommitIndex);
      return;
    }
    this.afterOp(client);
  }

  private afterOp(client: SimClient): void {
    this.scheduleNextOp(client, client.probe ? this.random.int(20, 100) : this.random.int(0, 100));
  }

  /** Operations still open at the end: a proposed write may or may not have happened. */
  private finishHistory(): void {
    for (const op of this.openOps) {
      if (op.done) continue;
      op.done = true;
      if (op.proposed && op.input.kind !== "get") {
        this.stats.opsUnknown++;
        this.history.push({ id: op.historyId, clientId: op.clientId, input: op.input, invokeMs: op.invokeMs, returnMs: Infinity });
      }
    }
    this.openOps.clear();
  }

  // ---- scripted scenarios ----

  private runScenarioStep(steps: ScenarioStep[], at: number, sinceMs: number): void {
    const step = steps[at];
    if (step === undefined) {
      this.finished = true;
      return;
    }
    const control = this.scenarioControl();
    this.queue.schedule(5, `scenario ${step.name}`, () => {
      if (step.until !== undefined && !step.until(control)) {
        if (this.queue.nowMs - sinceMs > (step.withinMs ?? 20_000)) {
          throw new SimViolation("simulator-error", `scenario step "${step.name}" did not come about within ${step.withinMs ?? 20_000} ms`);
        }
        this.runScenarioStep(steps, at, sinceMs);
        return;
      }
      step.then?.(control);
      this.runScenarioStep(steps, at + 1, this.queue.nowMs);
    });
  }

  private scenarioControl(): ScenarioControl {
    const node = (i: number): SimNode => {
      const n = this.nodes[i];
      if (n === undefined) throw new RangeError(`scenario names node ${i}, which does not exist`);
      return n;
    };
    let proposals = 0;
    const queue = this.queue;
    return {
      get nowMs() {
        return queue.nowMs;
      },
      leader: (among) => {
        let best: SimNode | undefined;
        for (const n of this.nodes) {
          if (among !== undefined && !among.includes(n.index)) continue;
          if (n.raft !== undefined && n.role === Role.Leader && (best === undefined || n.term > best.term)) best = n;
        }
        return best?.index;
      },
      term: (i) => node(i).term,
      commit: (i) => node(i).lastCommit,
      lastIndex: (i) => lastIndexOf(node(i).disk.current),
      termAt: (i, index) => (index <= lastIndexOf(node(i).disk.current) ? termAt(node(i).disk.current, index) : undefined),
      alive: (i) => node(i).raft !== undefined,
      partition: (groups) => {
        this.network.heal();
        this.network.partition(groups);
      },
      heal: () => this.network.heal(),
      intercept: (rewrite) => {
        this.interceptor = rewrite;
      },
      crash: (i) => this.crash(node(i), "scenario"),
      restart: (i) => this.start(node(i)),
      propose: (i, key, value) => {
        const n = node(i);
        if (n.raft === undefined || !n.raft.isLeader) return undefined;
        // Read before proposing: the node's loop may write the entry before propose() returns.
        const index = lastIndexOf(n.disk.current) + 1;
        n.raft.propose(encodeCommand({ clientId: 0, seq: ++proposals, input: { kind: "put", key, value } })).catch(() => undefined);
        return index;
      },
    };
  }

  // ---- faults ----

  private scheduleFault(): void {
    this.queue.schedule(this.random.int(200, 1500), "fault", () => {
      if (this.inLivenessPhase) return;
      this.injectFault();
      this.scheduleFault();
    });
  }

  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes) if (n.raft !== undefined && n.role === Role.Leader && (best === undefined || n.term > best.term)) best = n;
    return best;
  }

  private injectFault(): void {
    const live = this.nodes.filter((x) => !x.removed && !x.corrupt);
    const n = live.length;
    const pickNode = (): SimNode => live[this.random.int(0, n)]!;
    const choice = this.random.int(0, 100);
    if (choice < 14) {
      const node = this.random.float() < 0.5 ? (this.leader() ?? pickNode()) : pickNode();
      if (!this.isUp(node)) return;
      this.crash(node, "fault");
      // Now and then the synced part of its log rots while it is down; it must then refuse to
      // start. At most a minority may be lost that way, so the cluster can still make progress.
      // Counted by damaged disks, not by refused starts: a damaged node may not have restarted yet.
      const corruptible = Math.floor((this.clusterConf.voters.length - 1) / 2) - this.nodes.filter((x) => x.disk.corruptions > 0).length;
      if (corruptible > 0 && this.random.float() < 0.05) {
        const what = node.disk.corruptSynced(this.random);
        if (what !== undefined) this.traceLine(`corrupt n${node.index} ${what}`);
      }
      this.restartLater(node, this.random.int(200, 3000));
    } else if (choice < 24) {
      const node = this.random.float() < 0.5 ? (this.leader() ?? pickNode()) : pickNode();
      node.crashAtNextSync = true;
    } else if (choice < 38) {
      const order = live.map((x) => x.index);
      for (let i = order.length - 1; i > 0; i--) {
        const j = this.random.int(0, i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      if (n < 2) return;
      const cut = this.random.int(1, n);
      this.network.partition([order.slice(0, cut), order.slice(cut)]);
      this.stats.partitions++;
      this.healLater();
    } else if (choice < 46) {
      const leader = this.leader();
      if (leader === undefined) return;
      this.network.partition([[leader.index], live.filter((x) => x !== leader).map((x) => x.index)]);
      this.stats.partitions++;
      this.healLater();
    } else if (choice < 56) {
      const links = this.random.int(1, n + 1);
      for (let i = 0; i < links; i++) {
        const from = pickNode().index;
        const to = pickNode().index;
        if (from !== to) this.network.cutOneWay(from, to);
      }
      this.stats.partitions++;
      this.healLater();
    } else if (choice < 66) {
      const node = pickNode();
      if (node.raft === undefined || node.paused) return;
      node.paused = true;
      this.stats.pauses++;
      const incarnation = node.incarnation;
      this.queue.schedule(this.random.int(100, 3000), `resume n${node.index}`, () => {
        if (node.incarnation === incarnation) this.resume(node);
      });
    } else if (choice < 76) {
      pickNode().drift = [0.5, 0.7, 0.9, 1, 1.2, 1.5, 2][this.random.int(0, 7)]!;
    } else if (choice < 90) {
      const conditions: NetworkConditions = {
        minDelayMs: 1,
        maxDelayMs: [5, 15, 40, 100][this.random.int(0, 4)]!,
        lossRate: [0, 0.02, 0.1, 0.3][this.random.int(0, 4)]!,
        duplicateRate: [0, 0.05, 0.2][this.random.int(0, 3)]!,
        slowRate: [0, 0.02, 0.1][this.random.int(0, 3)]!,
      };
      this.network.setConditions(conditions);
    } else if (choice < 95) {
      // Leadership transfer to a random voter, asked of a random node (followers forward it).
      const asked = pickNode();
      const voters = this.clusterConf.voters;
      const to = voters[this.random.int(0, voters.length)]!;
      const raft = asked.raft;
      if (raft === undefined || asked.paused) return;
      raft.transferLeadership(to, { timeoutMs: CLIENT_TIMEOUT_MS }).catch(() => undefined);
      this.stats.transfers++;
    }
    // Otherwise: a quiet spell.
  }

  private scheduleChurn(): void {
    this.queue.schedule(this.random.int(300, 1500), "churn", () => {
      if (this.inLivenessPhase) return;
      this.changeMembership();
      this.scheduleChurn();
    });
  }

  /**
   * One membership step through the current leader: promote a caught-up learner (the driver also
   * promotes on its own, so the two race as they would in the daemon), else add a new node as a
   * learner, else remove a voter (never below three voters).
   */
  private changeMembership(): void {
    const leader = this.leader();
    const raft = leader?.raft;
    if (leader === undefined || raft === undefined || leader.paused) return;
    const conf = this.clusterConf;
    const learner = conf.learners.map((id) => this.nodes[this.indexById.get(id)!]!).find((x) => !x.removed);
    const ignore = (): undefined => undefined;
    if (learner !== undefined) {
      if (learner.raft === undefined || learner.appliedIndex + 5 < leader.lastCommit) return; // not caught up yet
      this.traceLine(`propose-conf-change PromoteLearner n${learner.index}`);
      raft.promote(learner.id, { timeoutMs: CLIENT_TIMEOUT_MS }).catch(ignore);
    } else if (conf.voters.length < 5 && this.nodes.length < 12 && this.random.float() < 0.6) {
      const members = this.members().map(memberInfo);
      const joiner = this.addNode();
      joiner.firstStart = { join: { members } };
      this.traceLine(`propose-conf-change AddLearner n${joiner.index}`);
      raft.addLearner(memberInfo(joiner), { timeoutMs: CLIENT_TIMEOUT_MS }).catch((err: unknown) => {
        // Refused outright: the joiner never becomes a member, so retire it.
        if (isShoalError(err, "NOT_LEADER") || isShoalError(err, "PROPOSAL_DROPPED") || isShoalError(err, "FAILED_PRECONDITION") || isShoalError(err, "QUEUE_FULL")) {
          joiner.removed = true;
          this.crash(joiner, "never joined");
        }
      });
      this.start(joiner);
    } else if (conf.voters.length > 3) {
      const victim = conf.voters[this.random.int(0, conf.voters.length)]!;
      this.traceLine(`propose-conf-change RemoveNode n${this.indexById.get(victim)}`);
      raft.removeMember(victim, { timeoutMs: CLIENT_TIMEOUT_MS }).catch(ignore);
    }
  }

  private onConfChangeApplied(index: number, type: ConfChangeType, raftId: RaftId, conf: ConfState): void {
    if (index <= this.clusterConfIndex) return;
    this.clusterConfIndex = index;
    this.clusterConf = { voters: [...conf.voters], learners: [...conf.learners] };
    this.stats.confChanges++;
    if (type !== ConfChangeType.RemoveNode) return;
    const gone = this.nodes[this.indexById.get(raftId)!];
    if (gone === undefined || gone.removed) return;
    // Give the removed node a moment to learn of its removal (and a removed leader to hand over).
    this.queue.schedule(this.random.int(100, 1000), `retire n${gone.index}`, () => {
      gone.removed = true;
      this.crash(gone, "removed");
    });
  }

  /**
   * A new leader is most fragile while it brings followers up to date: strike it then, by crash,
   * isolation or pause, so short-lived leaderships and half-replicated logs are common.
   */
  private maybeStrikeNewLeader(node: SimNode): void {
    if (this.inLivenessPhase || this.random.float() >= this.leaderNemesisRate) return;
    const incarnation = node.incarnation;
    const term = node.term;
    const kind = this.random.int(0, 3);
    this.queue.schedule(this.random.int(0, 150), `strike-leader n${node.index} ${kind}`, () => {
      if (this.inLivenessPhase || node.incarnation !== incarnation || node.raft === undefined || node.term !== term) return;
      if (kind === 0) {
        this.crash(node, "leader strike");
        this.restartLater(node, this.random.int(50, 2000));
      } else if (kind === 1) {
        this.network.partition([[node.index], this.nodes.filter((x) => x !== node).map((x) => x.index)]);
        this.stats.partitions++;
        this.healLater();
      } else if (!node.paused) {
        node.paused = true;
        this.stats.pauses++;
        this.queue.schedule(this.random.int(100, 2500), `resume n${node.index}`, () => {
          if (node.incarnation === incarnation) this.resume(node);
        });
      }
    });
  }

  private healLater(): void {
    // The liveness phase heals everything itself (and a test may isolate the nodes on purpose).
    this.queue.schedule(this.random.int(300, 4000), "heal-partition", () => {
      if (!this.inLivenessPhase) this.network.heal();
    });
  }

  /** Current members (voters and learners) that have not been retired. */
  private members(): SimNode[] {
    const ids = new Set([...this.clusterConf.voters, ...this.clusterConf.learners]);
    return this.nodes.filter((n) => ids.has(n.id) && !n.removed);
  }

  /** Members that should be running: not stopped for good by a corrupted log. */
  private liveMembers(): SimNode[] {
    return this.members().filter((n) => !n.corrupt);
  }

  private awaitCatchUp(index: number): void {
    this.catchUpIndex = index;
    const poll = (): void => {
      if (this.liveMembers().every((n) => n.appliedIndex >= index)) {
        this.caughtUp = true;
        this.queue.schedule(SETTLE_MS, "end", () => {
          this.finished = true;
        });
        return;
      }
      this.queue.schedule(50, "await-catch-up", poll);
    };
    poll();
  }

  private resume(node: SimNode): void {
    if (!node.paused) return;
    node.paused = false;
    const held = node.held;
    node.held = [];
    for (const run of held) run();
  }

  /** Names the known gap where a lagging member cannot answer the leader: it has no address for it. */
  private addressless(node: SimNode): string {
    const leader = this.leader();
    if (leader === undefined || leader === node || node.raft?.memberAddr(leader.id) !== undefined) return "";
    return ` (it has no address for the leader n${leader.index}: it never applied the leader's AddLearner)`;
  }

  /** Running members that cannot reach another running member because they have no address for it. */
  private addressGaps(): string {
    const up = this.liveMembers().filter((n) => n.raft !== undefined);
    const gaps: string[] = [];
    for (const n of up) for (const other of up) if (other !== n && n.raft!.memberAddr(other.id) === undefined) gaps.push(`n${n.index} has no address for n${other.index}`);
    return gaps.length > 0 ? ` (${gaps.join(", ")}: it never applied that member's AddLearner)` : "";
  }

  private beginLivenessPhase(): void {
    this.inLivenessPhase = true;
    this.network.heal();
    if (this.options.isolateAfterHeal === true) this.network.partition(this.nodes.map((n) => [n.index]));
    this.network.setConditions(CALM_NETWORK);
    for (const node of this.nodes) {
      node.drift = 1;
      node.crashAtNextSync = false;
      this.resume(node);
      if (!this.isUp(node) && !node.removed) this.start(node);
    }
    this.livenessDeadlineMs = this.queue.nowMs + LIVENESS_BOUND_MS;
    this.queue.schedule(LIVENESS_BOUND_MS, "liveness-deadline", () => {
      if (this.finished || this.caughtUp) return;
      if (this.livenessProven) {
        const lagging = this.liveMembers()
          .filter((n) => n.appliedIndex < this.catchUpIndex)
          .map((n) => `n${n.index} at ${n.appliedIndex}${n.raft === undefined ? " (down)" : this.addressless(n)}`);
        throw new SimViolation(
          "liveness",
          `members did not catch up to committed index ${this.catchUpIndex} within ${LIVENESS_BOUND_MS} ms after healing: ${lagging.join(", ")}`,
        );
      }
      throw new SimViolation(
        "liveness",
        `no write committed within ${LIVENESS_BOUND_MS} ms after healing every fault (leader: ${this.leader() ? `n${this.leader()!.index} term ${this.leader()!.term}` : "none"})${this.addressGaps()}`,
      );
    });
    const probe = this.clients.find((c) => c.probe)!;
    this.scheduleNextOp(probe, 0);
  }
}

export function runSimulation(options: SimOptions): Promise<SimResult> {
  return new Simulation(options).run();
}

/** The exact command that replays one seed. */
export function replayCommand(seed: number, nodes: number, faults?: RaftNodeFaults, safetyPhaseMs?: number, churn?: boolean): string {
  const planted = Object.entries(faults ?? {})
    .filter(([, on]) => on === true)
    .map(([name]) => ` --planted ${name}`)
    .join("");
  const phase = safetyPhaseMs !== undefined && safetyPhaseMs !== DEFAULT_SAFETY_PHASE_MS ? ` --phase-ms ${safetyPhaseMs}` : "";
  return `npm run sim -- --seed ${seed} --nodes ${nodes}${planted}${phase}${churn === true ? " --churn" : ""}`;
}
