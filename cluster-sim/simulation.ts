// One simulated run: N nodes of the real Raft core over a simulated network and disks, with faults,
// clients and the per-step safety checkers; then a liveness phase and a linearizability check.
// Everything is driven by one seeded PRNG and a virtual clock, so a seed replays exactly.
import { createHash, type Hash } from "node:crypto";
import { isShoalError } from "../src/base/errors.js";
import { SeededRandom } from "../src/base/random.js";
import { decodeConfChange } from "../src/raft/core/index.js";
import {
  ConfChangeType,
  EntryType,
  MessageType,
  NO_NODE,
  Role,
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type PlantedFaults,
  type RaftConfig,
  type RaftCoreApi,
  type RaftId,
  type Ready,
  type RestoreState,
} from "../src/raft/core/types.js";
import { entryFingerprint, SafetyCheckers } from "./checkers.js";
import { cloneEntry, cloneSnapshot, entryAt, lastIndexOf, SimDisk, snapshotIndexOf, termAt } from "./disk.js";
import { deriveSeed, EventQueue } from "./events.js";
import { decodeCommand, encodeCommand, KvStateMachine } from "./kv.js";
import { checkLinearizable, describeOp, type HistoryOp, type KvInput, type KvOutput, type KvValue } from "./linearizability.js";
import { CALM_NETWORK, SimNetwork, type NetworkConditions } from "./network.js";
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
  /** Proposes a put on `node`; returns its log index, or undefined if the node refused. */
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

export type CoreFactory = (config: RaftConfig, restore: RestoreState) => RaftCoreApi;

export interface SimOptions {
  seed: number;
  nodes: number;
  createCore: CoreFactory;
  /** Virtual time of the fault phase. */
  safetyPhaseMs?: number;
  clients?: number;
  keys?: number;
  faults?: PlantedFaults;
  /**
   * A deliberate bug in the simulated driver, for testing the linearizability checker end to end:
   * answer a ReadIndex read as soon as its ReadState arrives, without waiting for the apply.
   */
  serveReadsBeforeApply?: boolean;
  /**
   * A deliberate failure to heal, for testing the liveness check: after the fault phase every node
   * stays cut off from every other, so no write can commit.
   */
  isolateAfterHeal?: boolean;
  /** Membership churn in the fault phase: add learners, promote them, remove voters. */
  churn?: boolean;
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
}

export interface SimStats {
  events: number;
  virtualMs: number;
  elections: number;
  crashes: number;
  tornCrashes: number;
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
/** Timing of the simulated cluster, in virtual milliseconds. */
const TICK_MS = 100;
const ELECTION_TICKS = 10;
const HEARTBEAT_TICKS = 1;
/** The longest randomized election timeout. */
const ELECTION_TIMEOUT_MS = 2 * ELECTION_TICKS * TICK_MS;
/** After healing, a write must commit within this many election timeouts. */
const LIVENESS_BOUND_MS = 10 * ELECTION_TIMEOUT_MS;
const CLIENT_TIMEOUT_MS = 3000;
/** Time left after the liveness write commits so in-flight client operations settle. */
const SETTLE_MS = 500;

interface PendingProposal {
  op: ClientOp;
  term: number;
}

interface ClientOp {
  historyId: number;
  clientId: number;
  seq: number;
  input: KvInput;
  invokeMs: number;
  viaReadIndex: boolean;
  /** True once some node accepted it into its log: from then on a timeout means "unknown". */
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

interface SimNode {
  index: number;
  id: RaftId;
  core: RaftCoreApi | undefined;
  incarnation: number;
  disk: SimDisk;
  kv: KvStateMachine;
  appliedIndex: number;
  appliedTerm: number;
  /** Highest commit index this incarnation has reported; it must never go down. */
  lastCommit: number;
  role: Role;
  term: number;
  leaderHint: RaftId;
  paused: boolean;
  /** Deliveries and client requests that arrived while paused, run in order on resume. */
  held: Array<() => void>;
  /** Tick period multiplier: a drifting clock makes a node's timers run fast or slow. */
  drift: number;
  /** Crash during the next fsync, leaving its writes lost or torn. */
  crashAtNextSync: boolean;
  pendingProposals: Map<number, PendingProposal[]>;
  pendingReads: Map<string, ClientOp>;
  readsAwaitingApply: Array<{ index: number; op: ClientOp }>;
  compactEveryEntries: number;
  /** Membership a brand-new disk starts from: the founding voters, or nothing for a joiner. */
  initialConfState: ConfState;
  /** Removed from the cluster: stopped for good, never restarted or targeted again. */
  removed: boolean;
}

const decoder = new TextDecoder();

function cloneMessage(m: Message): Message {
  return {
    ...m,
    entries: m.entries.map(cloneEntry),
    context: m.context.slice(),
    ...(m.snapshot ? { snapshot: cloneSnapshot(m.snapshot) } : {}),
  };
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

  private readonly checkers: SafetyCheckers;

  readonly stats: SimStats = {
    events: 0,
    virtualMs: 0,
    elections: 0,
    crashes: 0,
    tornCrashes: 0,
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
    this.safetyPhaseMs = options.safetyPhaseMs ?? DEFAULT_SAFETY_PHASE_MS;
    this.keyCount = options.keys ?? 3;
    const sizeChoice = [256, 1024, 4096][this.random.int(0, 3)]!;
    const inflightChoice = [1, 4, 16][this.random.int(0, 3)]!;
    this.maxSizePerMsgBytes = options.maxSizePerMsgBytes ?? sizeChoice;
    this.maxInflightMsgs = options.maxInflightMsgs ?? inflightChoice;
    this.leaderNemesisRate = [0, 0.2, 0.5][this.random.int(0, 3)]!;
    // A cas entry carries two padded values plus about 120 bytes of framing; keep it under the limit.
    const roomBytes = Math.max(0, Math.floor((this.maxSizePerMsgBytes - 140) / 2));
    this.valuePadding = ".".repeat([0, 0, Math.floor(roomBytes / 2), roomBytes][this.random.int(0, 4)]!);
    for (let i = 0; i < options.nodes; i++) this.addNode();
    this.clusterConf = { voters: this.nodes.map((n) => n.id), learners: [] };
    // As the daemon's driver does, a new cluster starts from a founding snapshot at index 1 that
    // holds its voters: no log entry carries the founding membership, so a node that joins later
    // learns it from that snapshot (its leader's log starts at 2), never from an empty default.
    const founding = { metadata: { index: 1, term: 1, confState: this.clusterConf }, data: new KvStateMachine().snapshot() };
    for (const node of this.nodes) {
      node.disk.write({ kind: "snapshot", snapshot: founding, keepSuffix: false });
      node.disk.write({ kind: "hardState", hardState: { term: 1, vote: NO_NODE, commit: 1 } });
      node.disk.sync();
    }
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
      core: undefined,
      incarnation: 0,
      disk: new SimDisk(),
      kv: new KvStateMachine(),
      appliedIndex: 0,
      appliedTerm: 0,
      lastCommit: 0,
      role: Role.Follower,
      term: 0,
      leaderHint: NO_NODE,
      paused: false,
      held: [],
      drift: 1,
      crashAtNextSync: false,
      pendingProposals: new Map(),
      pendingReads: new Map(),
      readsAwaitingApply: [],
      compactEveryEntries: 0,
      initialConfState: { voters: [], learners: [] },
      removed: false,
    };
    this.indexById.set(id, i);
    this.nodes.push(node);
    return node;
  }

  run(): SimResult {
    let violation: string | undefined;
    try {
      for (const node of this.nodes) this.start(node);
      if (this.options.scenario !== undefined) {
        this.runScenarioStep(this.options.scenario, 0, this.queue.nowMs);
      } else {
        for (const client of this.clients) if (!client.probe) this.scheduleNextOp(client, this.random.int(0, 50));
        this.scheduleFault();
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

  // ---- node lifecycle ----

  private config(node: SimNode): RaftConfig {
    return {
      id: node.id,
      electionTicks: ELECTION_TICKS,
      heartbeatTicks: HEARTBEAT_TICKS,
      random: new SeededRandom(deriveSeed(this.options.seed, 2, node.index, node.incarnation)),
      preVote: true,
      checkQuorum: true,
      maxSizePerMsgBytes: this.maxSizePerMsgBytes,
      maxInflightMsgs: this.maxInflightMsgs,
      maxUncommittedEntriesBytes: 64 * 1024,
      ...(this.options.faults ? { faults: { ...this.options.faults } } : {}),
    };
  }

  private start(node: SimNode): void {
    const durable = node.disk.durable;
    node.kv = new KvStateMachine();
    if (durable.snapshot) node.kv.restore(durable.snapshot.data);
    node.appliedIndex = snapshotIndexOf(durable);
    node.appliedTerm = durable.snapshot?.metadata.term ?? 0;
    node.lastCommit = durable.hardState.commit;
    node.term = durable.hardState.term;
    node.role = Role.Follower;
    node.leaderHint = NO_NODE;
    node.compactEveryEntries = 10 + this.random.int(0, 30);
    const restore = node.disk.restoreState(node.initialConfState);
    node.core = this.guard(node, "construct", () => this.options.createCore(this.config(node), restore));
    this.scheduleTick(node);
    this.drain(node);
  }

  private crash(node: SimNode, reason: string): void {
    if (node.core === undefined) return;
    node.core = undefined;
    node.incarnation++;
    node.disk.crash(this.random);
    node.pendingProposals.clear();
    node.pendingReads.clear();
    node.readsAwaitingApply = [];
    node.held = [];
    node.paused = false;
    node.crashAtNextSync = false;
    node.role = Role.Follower;
    this.stats.crashes++;
    const line = `${this.queue.nowMs} crash n${node.index} ${reason}`;
    this.hash.update(line + "\n");
    this.options.trace?.(line);
  }

  private restartLater(node: SimNode, delayMs: number): void {
    const incarnation = node.incarnation;
    this.queue.schedule(delayMs, `restart n${node.index}`, () => {
      if (node.core === undefined && node.incarnation === incarnation && !node.removed) this.start(node);
    });
  }

  private scheduleTick(node: SimNode): void {
    const incarnation = node.incarnation;
    const delayMs = Math.max(1, Math.round(TICK_MS * node.drift));
    this.queue.schedule(delayMs, `tick n${node.index}`, () => {
      if (node.core === undefined || node.incarnation !== incarnation) return;
      this.scheduleTick(node);
      if (node.paused) return;
      this.guard(node, "tick", () => node.core!.tick());
      this.drain(node);
    });
  }

  /** Runs `fn` against a node's core, turning an unexpected throw into a violation. */
  private guard<T>(node: SimNode, what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SimViolation) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new SimViolation("core-threw", `n${node.index} ${what}: ${message}`);
    }
  }

  // ---- the driver loop: persist, then send, then apply, then advance ----

  private drain(node: SimNode): void {
    while (node.core !== undefined && this.guard(node, "hasReady", () => node.core!.hasReady())) {
      const core = node.core;
      const rd = this.guard(node, "ready", () => core.ready());
      let becameLeader = false;
      if (rd.softState) {
        const wasLeader = node.role === Role.Leader;
        node.role = rd.softState.role;
        node.leaderHint = rd.softState.leader;
        if (node.role === Role.Leader) {
          node.term = this.guard(node, "status", () => core.status()).hardState.term;
          becameLeader = !wasLeader;
          this.checkers.electionSafety(node);
        }
      }
      if (rd.hardState) {
        node.term = rd.hardState.term;
        if (rd.hardState.commit < node.lastCommit) {
          throw new SimViolation("commit-regression", `n${node.index} commit went from ${node.lastCommit} to ${rd.hardState.commit}`);
        }
      }
      // Persist.
      const disk = node.disk;
      if (rd.snapshot) disk.write({ kind: "snapshot", snapshot: rd.snapshot, keepSuffix: false });
      if (rd.entries.length > 0) {
        this.checkers.logMatching(node, rd.entries);
        disk.write({ kind: "entries", entries: rd.entries });
      }
      if (rd.hardState) disk.write({ kind: "hardState", hardState: rd.hardState });
      if (becameLeader) {
        this.checkers.leaderCompletenessOnElection(node);
        this.maybeStrikeNewLeader(node);
      }
      if (rd.hardState && node.role === Role.Leader) this.checkers.leaderCommitted(node, node.lastCommit, rd.hardState.commit);
      if (rd.hardState) node.lastCommit = rd.hardState.commit;
      if (rd.mustSync || rd.snapshot) {
        if (node.crashAtNextSync) {
          this.stats.tornCrashes++;
          this.crash(node, "during fsync");
          this.restartLater(node, this.random.int(100, 2000));
          return;
        }
        disk.sync();
      }
      // Send.
      for (const m of rd.messages) {
        this.checkers.durableBeforeSend(node, m);
        this.send(node, cloneMessage(m));
      }
      // Apply.
      if (rd.snapshot) this.applySnapshot(node, rd);
      for (const e of rd.committedEntries) this.applyEntry(node, e);
      for (const rs of rd.readStates) {
        const op = node.pendingReads.get(decoder.decode(rs.context));
        if (op === undefined) continue;
        node.pendingReads.delete(decoder.decode(rs.context));
        node.readsAwaitingApply.push({ index: rs.index, op });
      }
      this.serveReads(node);
      this.guard(node, "advance", () => core.advance());
      this.maybeCompact(node);
    }
  }

  private applySnapshot(node: SimNode, rd: Ready): void {
    const snap = rd.snapshot!;
    if (snap.metadata.index <= node.appliedIndex) {
      throw new SimViolation("ready-contract", `n${node.index} got a snapshot at ${snap.metadata.index} at or below applied ${node.appliedIndex}`);
    }
    node.kv.restore(snap.data);
    node.appliedIndex = snap.metadata.index;
    node.appliedTerm = snap.metadata.term;
    this.checkers.snapshotInstalled(node, snap.metadata);
  }

  private applyEntry(node: SimNode, e: Entry): void {
    if (e.index !== node.appliedIndex + 1) {
      throw new SimViolation("ready-contract", `n${node.index} was given entry ${e.index} to apply after applying ${node.appliedIndex}`);
    }
    const stored = entryAt(node.disk.current, e.index);
    if (stored !== undefined && (stored.term !== e.term || entryFingerprint(stored) !== entryFingerprint(e))) {
      throw new SimViolation("ready-contract", `n${node.index} applies entry ${e.index} term ${e.term} but stores term ${stored.term} there`);
    }
    if (this.checkers.applied(node, e)) this.stats.maxCommitIndex = Math.max(this.stats.maxCommitIndex, e.index);
    node.appliedIndex = e.index;
    node.appliedTerm = e.term;
    let output: KvOutput | undefined;
    let command: ReturnType<typeof decodeCommand>;
    if (e.type === EntryType.Normal) {
      command = decodeCommand(e.data);
      if (command !== undefined) output = node.kv.apply(command.input);
    } else if (e.type === EntryType.ConfChange) {
      const core = node.core!;
      const change = this.guard(node, "decodeConfChange", () => decodeConfChange(e.data));
      const conf = this.guard(node, "applyConfChange", () => core.applyConfChange(change));
      this.onConfChangeApplied(e.index, change, conf);
    }
    const pending = node.pendingProposals.get(e.index);
    if (pending === undefined) return;
    node.pendingProposals.delete(e.index);
    for (const p of pending) {
      if (p.term === e.term) {
        if (command === undefined || command.clientId !== p.op.clientId || command.seq !== p.op.seq || output === undefined) {
          throw new SimViolation("client-result", `n${node.index} applied a different entry at ${e.index} term ${e.term} than the one it accepted there`);
        }
        this.completeOp(p.op, output);
      } else {
        // Another entry holds the index: by log matching this proposal can never commit.
        this.failOp(p.op);
      }
    }
  }

  private serveReads(node: SimNode): void {
    if (node.readsAwaitingApply.length === 0) return;
    const still: Array<{ index: number; op: ClientOp }> = [];
    for (const r of node.readsAwaitingApply) {
      if (node.appliedIndex >= r.index || this.options.serveReadsBeforeApply === true) {
        this.stats.readIndexReads++;
        this.completeOp(r.op, { kind: "get", value: node.kv.read(r.op.input.key) });
      }
      else still.push(r);
    }
    node.readsAwaitingApply = still;
  }

  private maybeCompact(node: SimNode): void {
    const core = node.core;
    if (core === undefined) return;
    const image = node.disk.current;
    if (node.appliedIndex - snapshotIndexOf(image) < node.compactEveryEntries) return;
    if (termAt(image, node.appliedIndex) !== node.appliedTerm) return;
    const data = node.kv.snapshot();
    const confState = this.guard(node, "status", () => core.status()).confState;
    this.guard(node, "compact", () => core.compact(node.appliedIndex, data));
    node.disk.write({
      kind: "snapshot",
      snapshot: { metadata: { index: node.appliedIndex, term: node.appliedTerm, confState }, data },
      keepSuffix: true,
    });
    node.disk.sync();
    this.stats.compactions++;
  }

  // ---- network ----

  private send(from: SimNode, sent: Message): void {
    const to = this.indexById.get(sent.to);
    const m = this.interceptor === undefined || to === undefined ? sent : this.interceptor(from.index, to, sent);
    if (m === undefined) return;
    if (to === undefined) throw new SimViolation("ready-contract", `n${from.index} sent ${MessageType[m.type]} to unknown member ${m.to}`);
    this.stats.messagesSent++;
    if (m.type === MessageType.Snapshot) this.stats.snapshotsSent++;
    const delays = this.network.plan(from.index, to);
    const label = `${MessageType[m.type]} n${from.index}>n${to} t${m.term} i${m.index} lt${m.logTerm} c${m.commit} e${m.entries.length}${m.reject ? " rej" : ""}`;
    if (delays.length === 0) {
      if (m.type === MessageType.Snapshot) this.reportSnapshotLater(from, m.to, false);
      if (!this.network.connected(from.index, to)) {
        const core = from.core;
        if (core) this.guard(from, "reportUnreachable", () => core.reportUnreachable(m.to));
      }
      return;
    }
    for (const delayMs of delays) {
      this.queue.schedule(delayMs, `deliver ${label}`, () => this.deliver(from, to, m));
    }
  }

  private deliver(from: SimNode, toIndex: number, m: Message): void {
    const to = this.nodes[toIndex]!;
    if (to.core === undefined || !this.network.connected(from.index, toIndex)) {
      if (m.type === MessageType.Snapshot) this.reportSnapshotLater(from, m.to, false);
      return;
    }
    if (to.paused) {
      to.held.push(() => this.deliver(from, toIndex, m));
      return;
    }
    this.stats.messagesDelivered++;
    const core = to.core;
    // Duplicates must not share mutable state with the first copy.
    this.guard(to, `step ${MessageType[m.type]}`, () => core.step(cloneMessage(m)));
    this.drain(to);
    if (m.type === MessageType.Snapshot) this.reportSnapshotLater(from, m.to, true);
  }

  /** The transport tells the sender how a snapshot stream ended, as a real one would. */
  private reportSnapshotLater(from: SimNode, to: RaftId, ok: boolean): void {
    const incarnation = from.incarnation;
    this.queue.schedule(this.random.int(5, 50), `snapshot-status n${from.index} ${ok}`, () => {
      const core = from.core;
      if (core === undefined || from.incarnation !== incarnation || from.paused) return;
      this.guard(from, "reportSnapshot", () => core.reportSnapshot(to, ok));
      this.drain(from);
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
    const core = node.core;
    if (core === undefined) return this.retry(client, op, NO_NODE); // connection refused
    if (node.paused) {
      node.held.push(() => this.arrive(client, op, target));
      return;
    }
    if (op.viaReadIndex) {
      // Followers serve ReadIndex reads too: the core asks the leader for its commit index, and
      // the read waits until this node has applied that far.
      const context = `r${op.clientId}.${op.seq}`;
      try {
        core.readIndex(new TextEncoder().encode(context));
      } catch (err) {
        if (isShoalError(err, "NOT_LEADER") || isShoalError(err, "PROPOSAL_DROPPED")) return this.retry(client, op, node.leaderHint);
        this.guard(node, "readIndex", () => {
          throw err;
        });
      }
      node.pendingReads.set(context, op);
      this.drain(node);
      return;
    }
    let position: { index: number; term: number };
    try {
      position = core.propose(encodeCommand({ clientId: op.clientId, seq: op.seq, input: op.input }));
    } catch (err) {
      if (isShoalError(err, "NOT_LEADER") || isShoalError(err, "PROPOSAL_DROPPED")) return this.retry(client, op, node.leaderHint);
      return this.guard(node, "propose", () => {
        throw err;
      });
    }
    op.proposed = true;
    const list = node.pendingProposals.get(position.index) ?? [];
    list.push({ op, term: position.term });
    node.pendingProposals.set(position.index, list);
    this.drain(node);
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

  private failOp(op: ClientOp): void {
    if (op.done) return;
    op.done = true;
    this.openOps.delete(op);
    this.stats.opsFailed++;
    this.afterOp(this.clients[op.clientId - 1]!);
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
          if (n.core !== undefined && n.role === Role.Leader && (best === undefined || n.term > best.term)) best = n;
        }
        return best?.index;
      },
      term: (i) => node(i).term,
      commit: (i) => node(i).lastCommit,
      lastIndex: (i) => lastIndexOf(node(i).disk.current),
      termAt: (i, index) => (index <= lastIndexOf(node(i).disk.current) ? termAt(node(i).disk.current, index) : undefined),
      alive: (i) => node(i).core !== undefined,
      partition: (groups) => {
        this.network.heal();
        this.network.partition(groups);
      },
      heal: () => this.network.heal(),
      intercept: (rewrite) => {
        this.interceptor = rewrite;
      },
      crash: (i) => this.crash(node(i), "scenario"),
      restart: (i) => {
        if (node(i).core === undefined) this.start(node(i));
      },
      propose: (i, key, value) => {
        const n = node(i);
        if (n.core === undefined) return undefined;
        const core = n.core;
        try {
          const position = core.propose(encodeCommand({ clientId: 0, seq: ++proposals, input: { kind: "put", key, value } }));
          this.drain(n);
          return position.index;
        } catch (err) {
          if (isShoalError(err, "NOT_LEADER") || isShoalError(err, "PROPOSAL_DROPPED")) return undefined;
          throw err;
        }
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
    for (const n of this.nodes) if (n.core !== undefined && n.role === Role.Leader && (best === undefined || n.term > best.term)) best = n;
    return best;
  }

  private injectFault(): void {
    const live = this.nodes.filter((x) => !x.removed);
    const n = live.length;
    const pickNode = (): SimNode => live[this.random.int(0, n)]!;
    const choice = this.random.int(0, 100);
    if (choice < 14) {
      const node = this.random.float() < 0.5 ? (this.leader() ?? pickNode()) : pickNode();
      if (node.core === undefined) return;
      this.crash(node, "fault");
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
      if (node.core === undefined || node.paused) return;
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
      const core = asked.core;
      if (core === undefined || asked.paused) return;
      try {
        core.transferLeadership(to);
      } catch (err) {
        if (isShoalError(err, "NOT_LEADER")) return;
        this.guard(asked, "transferLeadership", () => {
          throw err;
        });
      }
      this.stats.transfers++;
      this.drain(asked);
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
   * One membership step through the current leader: promote a caught-up learner, else add a new
   * node as a learner, else remove a voter (never below three voters).
   */
  private changeMembership(): void {
    const leader = this.leader();
    if (leader === undefined || leader.core === undefined || leader.paused) return;
    const conf = this.clusterConf;
    let change: ConfChange;
    let joiner: SimNode | undefined;
    const learner = conf.learners.map((id) => this.nodes[this.indexById.get(id)!]!).find((x) => !x.removed);
    if (learner !== undefined) {
      if (learner.core === undefined || learner.appliedIndex + 5 < leader.lastCommit) return; // not caught up yet
      change = { type: ConfChangeType.PromoteLearner, nodeId: learner.id, context: new Uint8Array() };
    } else if (conf.voters.length < 5 && this.nodes.length < 12 && this.random.float() < 0.6) {
      joiner = this.addNode();
      change = { type: ConfChangeType.AddLearner, nodeId: joiner.id, context: new Uint8Array() };
    } else if (conf.voters.length > 3) {
      const victim = conf.voters[this.random.int(0, conf.voters.length)]!;
      change = { type: ConfChangeType.RemoveNode, nodeId: victim, context: new Uint8Array() };
    } else {
      return;
    }
    const core = leader.core;
    try {
      core.proposeConfChange(change);
    } catch (err) {
      if (isShoalError(err, "NOT_LEADER") || isShoalError(err, "PROPOSAL_DROPPED") || isShoalError(err, "FAILED_PRECONDITION")) {
        // The joiner never becomes a member: retire it before it ever runs.
        if (joiner !== undefined) joiner.removed = true;
        return;
      }
      this.guard(leader, "proposeConfChange", () => {
        throw err;
      });
    }
    const line = `${this.queue.nowMs} propose-conf-change ${ConfChangeType[change.type]} n${this.indexById.get(change.nodeId)}`;
    this.hash.update(line + "\n");
    this.options.trace?.(line);
    if (joiner !== undefined) this.start(joiner);
    this.drain(leader);
  }

  private onConfChangeApplied(index: number, change: ConfChange, conf: ConfState): void {
    if (index <= this.clusterConfIndex) return;
    this.clusterConfIndex = index;
    this.clusterConf = conf;
    this.stats.confChanges++;
    if (change.type !== ConfChangeType.RemoveNode) return;
    const gone = this.nodes[this.indexById.get(change.nodeId)!];
    if (gone === undefined || gone.removed) return;
    // Give the removed node a moment to learn of its removal (and a removed leader to hand over).
    this.queue.schedule(this.random.int(100, 1000), `retire n${gone.index}`, () => {
      gone.removed = true;
      if (gone.core !== undefined) this.crash(gone, "removed");
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
      if (this.inLivenessPhase || node.incarnation !== incarnation || node.core === undefined || node.term !== term) return;
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
    this.queue.schedule(this.random.int(300, 4000), "heal-partition", () => this.network.heal());
  }

  /** Current members (voters and learners) that have not been retired. */
  private members(): SimNode[] {
    const ids = new Set([...this.clusterConf.voters, ...this.clusterConf.learners]);
    return this.nodes.filter((n) => ids.has(n.id) && !n.removed);
  }

  private awaitCatchUp(index: number): void {
    this.catchUpIndex = index;
    const poll = (): void => {
      if (this.members().every((n) => n.appliedIndex >= index)) {
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

  private beginLivenessPhase(): void {
    this.inLivenessPhase = true;
    this.network.heal();
    if (this.options.isolateAfterHeal === true) this.network.partition(this.nodes.map((n) => [n.index]));
    this.network.setConditions(CALM_NETWORK);
    for (const node of this.nodes) {
      node.drift = 1;
      node.crashAtNextSync = false;
      this.resume(node);
      if (node.core === undefined && !node.removed) this.start(node);
    }
    this.livenessDeadlineMs = this.queue.nowMs + LIVENESS_BOUND_MS;
    this.queue.schedule(LIVENESS_BOUND_MS, "liveness-deadline", () => {
      if (this.finished || this.caughtUp) return;
      if (this.livenessProven) {
        const lagging = this.members()
          .filter((n) => n.appliedIndex < this.catchUpIndex)
          .map((n) => `n${n.index} at ${n.appliedIndex}${n.core === undefined ? " (down)" : ""}`);
        throw new SimViolation(
          "liveness",
          `members did not catch up to committed index ${this.catchUpIndex} within ${LIVENESS_BOUND_MS} ms after healing: ${lagging.join(", ")}`,
        );
      }
      throw new SimViolation(
        "liveness",
        `no write committed within ${LIVENESS_BOUND_MS} ms after healing every fault (leader: ${this.leader() ? `n${this.leader()!.index} term ${this.leader()!.term}` : "none"})`,
      );
    });
    const probe = this.clients.find((c) => c.probe)!;
    this.scheduleNextOp(probe, 0);
  }
}

export function runSimulation(options: SimOptions): SimResult {
  return new Simulation(options).run();
}

/** The exact command that replays one seed. */
export function replayCommand(seed: number, nodes: number, faults?: PlantedFaults, safetyPhaseMs?: number, churn?: boolean): string {
  const planted = Object.entries(faults ?? {})
    .filter(([, on]) => on === true)
    .map(([name]) => ` --planted ${name}`)
    .join("");
  const phase = safetyPhaseMs !== undefined && safetyPhaseMs !== DEFAULT_SAFETY_PHASE_MS ? ` --phase-ms ${safetyPhaseMs}` : "";
  return `npm run sim -- --seed ${seed} --nodes ${nodes}${planted}${phase}${churn === true ? " --churn" : ""}`;
}
