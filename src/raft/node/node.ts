// The Raft driver: owns a pure RaftCore and gives it a clock (ticker), durable storage, a transport
// and a state machine. One Ready at a time: persist, send, restore/apply, advance (DESIGN.md §4).
// Its parts live beside it: bootstrap/load (bootstrap.ts), the request queues (requests.ts), the
// Ready loop's ordering rules (ready-order.ts), the snapshot policy (snapshot-policy.ts) and the
// membership bookkeeping (member-table.ts); this file is the public API and the loop itself.
import { ShoalError, isShoalError } from "../../base/errors.js";
import { systemClock, type Clock, type Timer } from "../../base/clock.js";
import { systemRandom } from "../../base/random.js";
import { RaftCore, decodeConfChange } from "../core/index.js";
import {
  ConfChangeType,
  EntryType,
  NO_NODE,
  Role,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type RaftId,
  type Ready,
  type Snapshot,
  type SoftState,
} from "../core/types.js";
import {
  assertValidRaftId,
  decodeSnapshotEnvelope,
  encodeMemberContext,
  encodeSnapshotEnvelope,
  wouldBreakQuorum,
  type RaftMemberInfo,
} from "./membership.js";
import type { RaftInbound, RaftSender, RaftTransport } from "./transport.js";
import {
  DEFAULT_SNAPSHOT_INTERVAL_ENTRIES,
  NotLeaderError,
  SNAPSHOT_AFTER_LOG_BYTES,
  type DurableRaftLog,
  type RaftNodeEvents,
  type RaftNodeFaults,
  type RaftNodeLogger,
  type RaftNodeOptions,
  type RaftNodeStatus,
  type RaftStateMachine,
} from "./options.js";
import { loadOrFound, openDurableLog, restoreFromSnapshot, validateStartOptions } from "./bootstrap.js";
import { appliedWhileSaving, earlyMessageFilter, hardStateToSave } from "./ready-order.js";
import { cloneConf, MemberTable } from "./member-table.js";
import { SnapshotPolicy } from "./snapshot-policy.js";
import type { RaftNodeObserver } from "./observer.js";
import { RequestQueues, removeSettledFrom, type Job } from "./requests.js";
import { Waiter } from "./waiters.js";

type Inbound =
  | { kind: "message"; message: Message }
  | { kind: "unreachable"; id: RaftId }
  | { kind: "snapshot-report"; id: RaftId; ok: boolean };

const MAX_PENDING_TRANSFERS = 16;

export class RaftNode implements RaftInbound {
  readonly id: RaftId;
  private readonly core: RaftCore;
  private readonly log: DurableRaftLog;
  private readonly transport: RaftTransport;
  private readonly sm: RaftStateMachine;
  private readonly clock: Clock;
  private readonly logger: RaftNodeLogger | undefined;
  private readonly faults: RaftNodeFaults;
  private readonly observer: RaftNodeObserver;
  private readonly opts: Required<
    Pick<
      RaftNodeOptions,
      | "tickMs"
      | "electionTicks"
      | "snapshotIntervalEntries"
      | "snapshotAfterLogBytes"
      | "logEntriesForSlowFollowers"
      | "autoPromote"
      | "promoteWithinEntries"
      | "defaultTimeoutMs"
      | "noLeaderTimeoutMs"
      | "maxQueuedProposals"
      | "maxQueuedMessages"
      | "maxPendingProposals"
      | "maxPendingReads"
    >
  >;

  // Inputs queued for the loop; bounded.
  private pendingTicks = 0;
  private readonly inbound: Inbound[] = [];
  private readonly requests = new RequestQueues();
  private readCounter = 0n;

  private loopRunning = false;
  private loopDone: Promise<void> = Promise.resolve();
  private ticker: Timer | undefined;
  private stopped = false;
  private failure: Error | undefined;

  private leader: RaftId = NO_NODE;
  private role: Role = Role.Follower;
  private currentTerm = 0;
  private commit = 0;
  private applied = 0;
  private appliedTerm = 0;
  private noLeaderSinceMs: number | undefined;
  private readonly members: MemberTable;
  private readonly snapshots: SnapshotPolicy;
  /** A commit-only hard state not yet written; see handleReady. */
  private deferredHardState: HardState | undefined;
  /** Term and vote as last written to storage; see sendsBeforePersist. */
  private persistedTerm = 0;
  private persistedVote: RaftId = NO_NODE;
  private promoting = false;

  private readonly listeners: { [K in keyof RaftNodeEvents]: Set<(e: RaftNodeEvents[K]) => void> } = {
    "leader-changed": new Set(),
    "membership-changed": new Set(),
    fatal: new Set(),
  };

  /** Loads storage, restores the state machine, re-applies committed entries and starts ticking. */
  static async start(options: RaftNodeOptions): Promise<RaftNode> {
    validateStartOptions(options);
    const log = await openDurableLog(options);
    return new RaftNode(options, log, await loadOrFound(log, options));
  }

  private constructor(options: RaftNodeOptions, log: DurableRaftLog, loaded: Awaited<ReturnType<DurableRaftLog["load"]>>) {
    this.id = options.id;
    this.log = log;
    this.transport = options.transport;
    this.sm = options.stateMachine;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger;
    this.faults = options.faults ?? {};
    this.observer = options.observer ?? {};
    const tickMs = options.tickMs ?? 100;
    const electionTicks = options.electionTicks ?? 10;
    this.opts = {
      tickMs,
      electionTicks,
      snapshotIntervalEntries: options.snapshotIntervalEntries ?? DEFAULT_SNAPSHOT_INTERVAL_ENTRIES,
      snapshotAfterLogBytes: options.snapshotAfterLogBytes ?? SNAPSHOT_AFTER_LOG_BYTES,
      logEntriesForSlowFollowers: options.logEntriesForSlowFollowers ?? 500,
      autoPromote: options.autoPromote ?? true,
      promoteWithinEntries: options.promoteWithinEntries ?? 100,
      defaultTimeoutMs: options.defaultTimeoutMs ?? 10_000,
      noLeaderTimeoutMs: options.noLeaderTimeoutMs ?? 2 * 2 * electionTicks * tickMs,
      maxQueuedProposals: options.maxQueuedProposals ?? 4096,
      maxQueuedMessages: options.maxQueuedMessages ?? 8192,
      maxPendingProposals: options.maxPendingProposals ?? 16_384,
      maxPendingReads: options.maxPendingReads ?? 4096,
    };
    this.snapshots = new SnapshotPolicy({
      intervalEntries: this.opts.snapshotIntervalEntries,
      afterLogBytes: this.opts.snapshotAfterLogBytes,
      keepEntries: this.opts.logEntriesForSlowFollowers,
    });

    // Restore the state machine and the membership table from the last snapshot.
    const restored = restoreFromSnapshot(loaded);
    this.members = new MemberTable(options.id, this.transport);
    this.members.load(restored.members, restored.removedIds);
    if (restored.snapshot !== undefined) {
      if (restored.appData !== undefined) this.sm.restore(restored.appData);
      const meta = restored.snapshot;
      this.applied = meta.index;
      this.appliedTerm = meta.term;
      this.snapshots.restored(meta.index, restored.snapshotData!.length);
    }
    const restoredSnapshot = restored.snapshot;
    const snapshotData = restored.snapshotData;
    const initialConfState = restored.initialConfState;

    this.core = new RaftCore(
      {
        id: options.id,
        electionTicks,
        electionJitterTicks: options.electionJitterTicks,
        heartbeatTicks: options.heartbeatTicks ?? 1,
        random: options.random ?? systemRandom,
        preVote: options.preVote ?? true,
        checkQuorum: options.checkQuorum ?? true,
        maxSizePerMsgBytes: options.maxSizePerMsgBytes ?? 1024 * 1024,
        maxInflightMsgs: options.maxInflightMsgs ?? 256,
        maxUncommittedEntriesBytes: options.maxUncommittedEntriesBytes ?? 64 * 1024 * 1024,
        ...(options.faults !== undefined ? { faults: options.faults } : {}),
      },
      { hardState: loaded.hardState, snapshot: restoredSnapshot, snapshotData, entries: loaded.entries, initialConfState },
    );
    const status = this.core.status();
    this.members.start(status.confState);
    this.currentTerm = status.hardState.term;
    this.commit = status.hardState.commit;
    this.persistedTerm = status.hardState.term;
    this.persistedVote = status.hardState.vote;
    this.noLeaderSinceMs = this.clock.nowMs();

    this.ticker = this.clock.setInterval(() => this.onTick(), tickMs);
    // Committed entries after the snapshot (up to the persisted commit) come out of the first Ready.
    this.kick();
  }

  // ---- status ----

  get leaderId(): RaftId {
    return this.leader;
  }
  get isLeader(): boolean {
    return this.role === Role.Leader;
  }
  get term(): number {
    return this.currentTerm;
  }
  get commitIndex(): number {
    return this.commit;
  }
  get appliedIndex(): number {
    return this.applied;
  }
  get isStopped(): boolean {
    return this.stopped;
  }

  status(): RaftNodeStatus {
    return {
      id: this.id,
      leaderId: this.leader,
      isLeader: this.isLeader,
      role: this.role,
      term: this.currentTerm,
      commitIndex: this.commit,
      appliedIndex: this.applied,
      members: this.members.describe(),
      removedIds: this.members.removedIds(),
    };
  }

  /** The address of a member, if known (used to forward to the leader). */
  memberAddr(id: RaftId): string | undefined {
    return this.members.addr(id);
  }

  on<K extends keyof RaftNodeEvents>(event: K, listener: (e: RaftNodeEvents[K]) => void): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  private emit<K extends keyof RaftNodeEvents>(event: K, payload: RaftNodeEvents[K]): void {
    for (const listener of this.listeners[event]) {
      try {
        listener(payload);
      } catch (err) {
        // A listener's bug must not stop consensus; it is logged and the other listeners still run.
        this.logger?.error({ err, event }, "raft node event listener threw");
      }
    }
  }

  // ---- inputs ----

  /** Proposes `data`; resolves with the state machine's result once it is applied here. */
  async propose(data: Uint8Array, options: { timeoutMs?: number } = {}): Promise<unknown> {
    if (data.length === 0) return Promise.reject(new ShoalError("INVALID_ARGUMENT", "a proposal must not be empty (empty entries are raft no-ops)"));
    const waiter = new Waiter<unknown>(this.deadline(options.timeoutMs), "the raft proposal");
    const ended = this.observer.proposalStarted?.();
    if (ended !== undefined) waiter.promise.then(() => ended(true), () => ended(false));
    this.enqueueJob({ kind: "propose", data, waiter });
    return waiter.promise;
  }

  /** Resolves when a linearizable read is safe: this node has applied at least the read index. */
  async readIndex(options: { timeoutMs?: number } = {}): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    if (this.requests.reads.size >= this.opts.maxPendingReads) {
      return Promise.reject(new ShoalError("QUEUE_FULL", `${this.requests.reads.size} linearizable reads are already waiting; retry shortly`));
    }
    const fast = this.noQuorumNow();
    if (fast) return Promise.reject(fast);
    this.readCounter += 1n;
    const context = new Uint8Array(16);
    const view = new DataView(context.buffer);
    view.setBigUint64(0, this.id);
    view.setBigUint64(8, this.readCounter);
    const waiter = new Waiter<void>(this.deadline(options.timeoutMs), "the linearizable read");
    this.requests.reads.set(hex(context), { waiter });
    this.requests.readRequests.push(context);
    this.kick();
    return waiter.promise;
  }

  /** Adds a member as a learner (it replicates but does not vote); resolves when applied. */
  async addLearner(member: RaftMemberInfo, options: { timeoutMs?: number } = {}): Promise<ConfState> {
    try {
      assertValidRaftId(member.raftId, "raft ID");
      if (this.members.isRemoved(member.raftId)) {
        throw new ShoalError("FAILED_PRECONDITION", `raft ID ${member.raftId} was removed from the cluster and is never reused; allocate a new one`);
      }
      if (this.members.isMember(member.raftId)) throw new ShoalError("ALREADY_EXISTS", `raft ID ${member.raftId} is already a member`);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.proposeConfChange(
      { type: ConfChangeType.AddLearner, nodeId: member.raftId, context: encodeMemberContext(member) },
      options,
    );
  }

  /** Makes a learner a voter; resolves when applied. */
  async promote(raftId: RaftId, options: { timeoutMs?: number } = {}): Promise<ConfState> {
    if (!this.members.confState.learners.includes(raftId)) {
      return Promise.reject(new ShoalError("FAILED_PRECONDITION", `raft ID ${raftId} is not a learner, so it cannot be promoted`));
    }
    return this.proposeConfChange({ type: ConfChangeType.PromoteLearner, nodeId: raftId, context: new Uint8Array(0) }, options);
  }

  /** Removes a voter or learner; refused if the reachable voters left could not form a quorum. */
  async removeMember(raftId: RaftId, options: { timeoutMs?: number } = {}): Promise<ConfState> {
    if (!this.members.isMember(raftId)) return Promise.reject(new ShoalError("NOT_FOUND", `raft ID ${raftId} is not a member of this cluster`));
    if (this.isLeader) {
      const reachable = this.reachableVoters();
      if (wouldBreakQuorum(this.members.confState.voters, reachable, raftId)) {
        const left = this.members.confState.voters.filter((v) => v !== raftId);
        return Promise.reject(
          new ShoalError(
            "FAILED_PRECONDITION",
            `removing raft member ${raftId} would leave ${left.filter((v) => reachable.has(v)).length} reachable voters of ${left.length}, ` +
              "fewer than a quorum; bring the down managers back first",
          ),
        );
      }
    }
    return this.proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId: raftId, context: new Uint8Array(0) }, options);
  }

  /**
   * Hands leadership to voter `to` (brought up to date first); resolves when this node sees `to`
   * lead. On a follower the request is forwarded to the leader.
   */
  async transferLeadership(to: RaftId, options: { timeoutMs?: number } = {}): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    if (!this.members.confState.voters.includes(to)) {
      return Promise.reject(new ShoalError("FAILED_PRECONDITION", `raft ID ${to} is not a voter, so it cannot lead`));
    }
    if (this.leader === to) return Promise.resolve();
    if (this.requests.transfers.length >= MAX_PENDING_TRANSFERS) {
      return Promise.reject(new ShoalError("QUEUE_FULL", "leadership transfers are already waiting; retry shortly"));
    }
    const waiter = new Waiter<void>(this.deadline(options.timeoutMs), "the leadership transfer");
    this.requests.transfers.push({ to, waiter });
    this.requests.transferRequests.push(to);
    this.kick();
    return waiter.promise;
  }

  /** Voters this leader heard from within one maximum election timeout (itself included). */
  reachableVoters(): Set<RaftId> {
    return this.members.reachableVoters(this.clock.nowMs(), 2 * this.opts.electionTicks * this.opts.tickMs);
  }

  private proposeConfChange(change: ConfChange, options: { timeoutMs?: number }): Promise<ConfState> {
    const waiter = new Waiter<unknown>(this.deadline(options.timeoutMs), "the membership change");
    this.enqueueJob({ kind: "conf", change, waiter });
    return waiter.promise as Promise<ConfState>;
  }

  /** Inbound message from the transport; false when it was dropped (queue full or stopped). */
  receive(message: Message, sender?: RaftSender): boolean {
    if (this.stopped) return false;
    if (message.to !== this.id) {
      this.logger?.warn({ to: String(message.to), from: String(message.from) }, "dropped a raft message addressed to another member");
      return false;
    }
    if (this.inbound.length >= this.opts.maxQueuedMessages) return false;
    if (sender !== undefined && sender.addr !== "" && this.members.learn(message.from, sender)) {
      this.logger?.debug({ peer: String(message.from), addr: sender.addr }, "learned the address of a raft peer from its messages");
    }
    this.members.heard(message.from, this.clock.nowMs());
    this.inbound.push({ kind: "message", message });
    this.kick();
    return true;
  }

  reportUnreachable(id: RaftId): void {
    if (this.stopped || this.inbound.length >= this.opts.maxQueuedMessages) return;
    this.inbound.push({ kind: "unreachable", id });
    this.kick();
  }

  reportSnapshot(id: RaftId, ok: boolean): void {
    // Dropping a snapshot report would leave the follower paused forever, so it bypasses the bound.
    if (this.stopped) return;
    this.inbound.push({ kind: "snapshot-report", id, ok });
    this.kick();
  }

  /** Stops ticking, finishes the Ready in progress, and rejects every waiting call with UNAVAILABLE. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.ticker?.cancel();
      this.ticker = undefined;
    }
    await this.loopDone;
    this.requests.rejectEverything(new ShoalError("UNAVAILABLE", "the raft node stopped before the request finished; its outcome is unknown"));
    const deferred = this.deferredHardState;
    if (deferred !== undefined && this.failure === undefined) {
      this.deferredHardState = undefined;
      await this.log.save({ hardState: deferred, entries: [] });
    }
  }

  // ---- the loop ----

  private onTick(): void {
    if (this.stopped) return;
    // One tick per timer callback, as before: on a machine so busy that a callback comes late, raft
    // time slows with it rather than firing elections that the load alone would cause (counting
    // ticks from the clock could make e2e clusters with 200 ms timeouts step down under a loaded CI). A
    // few may pile up behind a slow fsync, but not an unbounded number.
    if (this.pendingTicks < this.opts.electionTicks) this.pendingTicks++;
    const nowMs = this.clock.nowMs();
    this.requests.expire(nowMs);
    const noQuorum = this.noQuorumNow();
    if (noQuorum) this.requests.rejectWaiting(noQuorum);
    this.maybeAutoPromote();
    this.requests.jobs.push(...this.requests.confAwaitingApply.splice(0));
    this.kick();
  }

  private kick(): void {
    if (this.loopRunning || this.stopped || this.failure) return;
    this.loopRunning = true;
    this.loopDone = this.runLoop();
  }

  private async runLoop(): Promise<void> {
    try {
      for (;;) {
        this.feedCore();
        if (!this.core.hasReady()) break;
        await this.handleReady(this.core.ready());
        await this.maybeSnapshot();
        if (this.stopped) break;
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new ShoalError("INTERNAL", String(err)));
    } finally {
      // Cleared synchronously before returning so an input arriving next starts a new loop.
      this.loopRunning = false;
    }
  }

  /** Hands every queued input to the core. Runs only between Readies. */
  private feedCore(): void {
    for (; this.pendingTicks > 0; this.pendingTicks--) this.core.tick();
    for (const input of this.inbound.splice(0)) {
      if (input.kind === "message") this.stepMessage(input.message);
      else if (input.kind === "unreachable") this.core.reportUnreachable(input.id);
      else this.core.reportSnapshot(input.id, input.ok);
    }
    for (const context of this.requests.readRequests.splice(0)) {
      if (!this.requests.reads.has(hex(context))) continue; // timed out or rejected meanwhile
      if (this.leader === NO_NODE) {
        this.requests.readsAwaitingLeader.push(context);
        continue;
      }
      try {
        this.core.readIndex(context);
      } catch (err) {
        if (!isShoalError(err) || err.code === "RAFT_INVARIANT" || err.code === "INTERNAL") throw err;
        const key = hex(context);
        const read = this.requests.reads.get(key);
        this.requests.reads.delete(key);
        if (read === undefined) continue;
        read.waiter.reject(isShoalError(err, "NOT_LEADER") ? new NotLeaderError(this.leader, this.members.addr(this.leader) ?? "") : err);
      }
    }
    for (const to of this.requests.transferRequests.splice(0)) {
      try {
        this.core.transferLeadership(to);
      } catch (err) {
        if (!isShoalError(err) || err.code === "RAFT_INVARIANT" || err.code === "INTERNAL") throw err;
        for (const t of this.requests.transfers) if (t.to === to) t.waiter.reject(err);
      }
    }
    for (const job of this.requests.jobs.splice(0)) this.startJob(job);
  }

  private stepMessage(message: Message): void {
    try {
      this.core.step(message);
    } catch (err) {
      if (isShoalError(err) && err.code !== "RAFT_INVARIANT" && err.code !== "INTERNAL") {
        this.logger?.warn({ err, from: String(message.from), type: message.type }, "raft core refused a message");
        return;
      }
      throw err;
    }
  }

  private startJob(job: Job): void {
    if (job.waiter.settled) return;
    if (this.leader === NO_NODE) {
      const noQuorum = this.noQuorumNow();
      if (noQuorum) job.waiter.reject(noQuorum);
      else if (this.requests.awaitingLeader.length >= this.opts.maxQueuedProposals) {
        job.waiter.reject(new ShoalError("QUEUE_FULL", "too many proposals are waiting for a raft leader; retry shortly"));
      } else this.requests.awaitingLeader.push(job);
      return;
    }
    if (!this.isLeader) {
      job.waiter.reject(new NotLeaderError(this.leader, this.members.addr(this.leader) ?? ""));
      return;
    }
    if (this.requests.pending.size >= this.opts.maxPendingProposals) {
      job.waiter.reject(new ShoalError("QUEUE_FULL", `${this.requests.pending.size} proposals are already waiting to commit; retry shortly`));
      return;
    }
    if (job.kind === "conf" && job.change.type === ConfChangeType.RemoveNode && wouldBreakQuorum(this.members.confState.voters, this.reachableVoters(), job.change.nodeId)) {
      job.waiter.reject(new ShoalError("FAILED_PRECONDITION", `removing raft member ${job.change.nodeId} would leave fewer reachable voters than a quorum`));
      return;
    }
    let position;
    try {
      position = job.kind === "propose" ? this.core.propose(job.data) : this.core.proposeConfChange(job.change);
    } catch (err) {
      if (job.kind === "conf" && isShoalError(err, "PROPOSAL_DROPPED") && this.requests.confAwaitingApply.length < this.opts.maxQueuedProposals) {
        this.requests.confAwaitingApply.push(job);
        return;
      }
      if (isShoalError(err, "NOT_LEADER")) job.waiter.reject(new NotLeaderError(this.leader, this.members.addr(this.leader) ?? ""));
      else job.waiter.reject(err instanceof Error ? err : new ShoalError("INTERNAL", String(err)));
      return;
    }
    // An older proposal recorded at the same index was overwritten by this term's log: it is lost.
    this.requests.pending.get(position.index)?.waiter.reject(lostWithLeadership());
    this.requests.pending.set(position.index, { term: position.term, waiter: job.waiter });
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.hardState !== undefined) {
      this.currentTerm = rd.hardState.term;
      this.commit = rd.hardState.commit;
    }
    if (rd.softState !== undefined) this.onSoftState(rd.softState);

    // Persist, send and apply in the order ready-order.ts lays down.
    const { save: hardState, deferred } = hardStateToSave(rd, this.deferredHardState, this.faults);
    this.deferredHardState = deferred;
    let afterPersist = rd.messages;
    const leavesEarly = earlyMessageFilter(rd, this.isLeader, { term: this.persistedTerm, vote: this.persistedVote }, this.faults);
    if (leavesEarly !== undefined) {
      const early = rd.messages.filter(leavesEarly);
      if (early.length > 0) {
        afterPersist = rd.messages.filter((m) => !leavesEarly(m));
        this.transport.send(early);
      }
    }
    let saving: Promise<void> | undefined;
    if (hardState !== undefined || rd.entries.length > 0 || rd.snapshot !== undefined) {
      if (rd.entries.length > 0) this.observer.readyEntries?.(rd.entries.length);
      const persisted = this.observer.persistStarted?.();
      saving = this.log.save({ hardState, entries: rd.entries, snapshot: rd.snapshot });
      if (persisted !== undefined) saving.then(persisted, () => undefined);
      // Awaited below; this only keeps a failed save from counting as unhandled if apply throws first.
      saving.catch(() => undefined);
    }
    const appliedEarly = appliedWhileSaving(rd);
    for (let i = 0; i < appliedEarly; i++) this.applyEntry(rd.committedEntries[i]!);
    if (saving !== undefined) {
      await saving;
      if (hardState !== undefined) {
        this.deferredHardState = undefined;
        this.persistedTerm = hardState.term;
        this.persistedVote = hardState.vote;
      }
      if (this.faults.answerProposalsBeforeApply === true) {
        for (const e of rd.entries) this.requests.pending.get(e.index)?.waiter.resolve(undefined);
      }
    }
    if (afterPersist.length > 0) this.transport.send(afterPersist);
    if (rd.snapshot !== undefined) this.restoreSnapshot(rd.snapshot);
    for (let i = appliedEarly; i < rd.committedEntries.length; i++) this.applyEntry(rd.committedEntries[i]!);
    for (const rs of rd.readStates) {
      const read = this.requests.reads.get(hex(rs.context));
      if (read !== undefined) read.readIndex = rs.index;
    }
    this.core.advance();
    this.requests.settleReads(this.applied, this.faults.serveReadsBeforeApply === true);
  }

  private onSoftState(soft: SoftState): void {
    const previousLeaderId = this.leader;
    const wasLeader = this.role === Role.Leader;
    if (soft.role !== this.role) this.logger?.debug({ role: soft.role, term: this.currentTerm, leader: String(soft.leader) }, "raft role changed");
    this.role = soft.role;
    this.leader = soft.leader;
    if (soft.leader === NO_NODE) this.noLeaderSinceMs ??= this.clock.nowMs();
    else this.noLeaderSinceMs = undefined;
    if (previousLeaderId !== soft.leader || wasLeader !== this.isLeader) {
      this.observer.leaderChanged?.();
      this.emit("leader-changed", { leaderId: soft.leader, previousLeaderId, isLeader: this.isLeader, term: this.currentTerm });
    }
    if (soft.leader !== NO_NODE) {
      // Re-queued behind this Ready; fed to the core after advance().
      this.requests.jobs.unshift(...this.requests.awaitingLeader.splice(0));
      this.requests.readRequests.unshift(...this.requests.readsAwaitingLeader.splice(0));
      for (const t of this.requests.transfers) if (t.to === soft.leader) t.waiter.resolve();
      removeSettledFrom(this.requests.transfers);
    }
  }

  private applyEntry(entry: Entry): void {
    if (entry.index !== this.applied + 1) {
      throw new ShoalError("RAFT_INVARIANT", `committed entry ${entry.index} does not follow applied index ${this.applied}`);
    }
    let result: unknown;
    if (entry.type === EntryType.ConfChange) {
      result = this.applyConfChange(entry);
    } else if (entry.data.length > 0) {
      result = this.sm.apply({ index: entry.index, term: entry.term, data: entry.data });
    }
    this.applied = entry.index;
    this.appliedTerm = entry.term;
    this.snapshots.applied(entry.data.length);
    const pending = this.requests.pending.get(entry.index);
    if (pending !== undefined) {
      this.requests.pending.delete(entry.index);
      if (pending.term === entry.term) pending.waiter.resolve(result);
      else pending.waiter.reject(lostWithLeadership());
    }
  }

  private applyConfChange(entry: Entry): ConfState {
    const change = decodeConfChange(entry.data);
    const confState = this.core.applyConfChange(change);
    // Fed to the core after advance(), when the next change may be proposed.
    this.requests.jobs.push(...this.requests.confAwaitingApply.splice(0));
    this.emit("membership-changed", this.members.applied(change, confState));
    return cloneConf(confState);
  }

  private restoreSnapshot(snapshot: Snapshot): void {
    const { image, appData } = decodeSnapshotEnvelope(snapshot.data);
    if (appData !== undefined) this.sm.restore(appData);
    const index = snapshot.metadata.index;
    this.applied = index;
    this.appliedTerm = snapshot.metadata.term;
    this.snapshots.restored(index, snapshot.data.length);
    this.observer.snapshot?.("installed", snapshot.data.length);
    // Proposals at or below the snapshot were overtaken: we cannot tell whether they committed.
    for (const [at, pending] of this.requests.pending) {
      if (at <= index) {
        this.requests.pending.delete(at);
        pending.waiter.reject(
          new ShoalError("OUTCOME_UNKNOWN", "a snapshot from the new leader replaced this log past the proposal, so whether it was applied is unknown; check the state before retrying"),
        );
      }
    }
    this.emit("membership-changed", this.members.restored(image, snapshot.metadata.confState));
  }

  /** Carries out the snapshot policy (see SnapshotPolicy): capture the state machine, compact the log. */
  private async maybeSnapshot(): Promise<void> {
    if (this.snapshots.captureDue(this.applied)) {
      const data = encodeSnapshotEnvelope(this.members.image(), this.sm.snapshot());
      this.snapshots.captured({ metadata: { index: this.applied, term: this.appliedTerm, confState: cloneConf(this.members.confState) }, data });
      this.observer.snapshot?.("taken", data.length);
    }
    const held = this.snapshots.takeCompaction(this.applied);
    if (held !== undefined) {
      await this.log.compact(held);
      this.core.compact(held.metadata.index, held.data);
      this.logger?.debug({ index: held.metadata.index, bytes: held.data.length }, "raft log compacted to a snapshot");
    }
  }

  private maybeAutoPromote(): void {
    if (!this.opts.autoPromote || !this.isLeader || this.promoting || this.members.confState.learners.length === 0) return;
    const learner = this.members.promotionCandidate(this.core.status(), this.opts.promoteWithinEntries);
    if (learner === undefined) return;
    this.promoting = true;
    this.promote(learner)
      .then(() => this.logger?.debug({ raftId: String(learner) }, "learner caught up and was promoted to voter"))
      .catch((err: unknown) => this.logger?.debug({ err, raftId: String(learner) }, "automatic promotion did not go through; will retry"))
      .finally(() => {
        this.promoting = false;
      });
  }

  // ---- failure paths ----

  private deadline(timeoutMs: number | undefined): number {
    const ms = timeoutMs ?? this.opts.defaultTimeoutMs;
    if (!(ms > 0)) throw new ShoalError("INVALID_ARGUMENT", "timeoutMs must be positive");
    return this.clock.nowMs() + ms;
  }

  private enqueueJob(job: Job): void {
    const refused = this.refusal();
    if (refused) return job.waiter.reject(refused);
    if (this.requests.jobs.length >= this.opts.maxQueuedProposals) {
      return job.waiter.reject(new ShoalError("QUEUE_FULL", `${this.requests.jobs.length} proposals are already queued; retry shortly`));
    }
    this.requests.jobs.push(job);
    this.kick();
  }

  private refusal(): Error | undefined {
    if (this.failure) return this.failure;
    if (this.stopped) return new ShoalError("UNAVAILABLE", "the raft node is stopped");
    return undefined;
  }

  private noQuorumNow(): ShoalError | undefined {
    if (this.leader !== NO_NODE || this.noLeaderSinceMs === undefined) return undefined;
    const withoutMs = this.clock.nowMs() - this.noLeaderSinceMs;
    if (withoutMs <= this.opts.noLeaderTimeoutMs) return undefined;
    return new ShoalError(
      "NO_QUORUM",
      `the cluster has lost quorum: no raft leader for ${withoutMs} ms; bring a majority of managers back online (outcome of in-flight requests is unknown)`,
    );
  }

  /** Stops the node on an error it must not limp past, and rejects every waiting call. */
  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.stopped = true;
    this.ticker?.cancel();
    this.ticker = undefined;
    this.logger?.error({ err }, "raft node stopped on an error it cannot continue past");
    this.requests.rejectEverything(
      isShoalError(err) ? err : new ShoalError("INTERNAL", `the raft node stopped: ${err.message}`, { cause: err }),
    );
    this.emit("fatal", err);
  }
}

function lostWithLeadership(): ShoalError {
  return new ShoalError("PROPOSAL_DROPPED", "the proposal was lost with leadership: another entry was committed at its place; it is safe to retry");
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

