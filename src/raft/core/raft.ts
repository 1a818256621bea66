// The Raft state machine (Ongaro's thesis, shaped like etcd-io/raft): ticks, messages and proposals
// go in; a Ready comes out listing what to persist, what to send and what to apply. No I/O here.
import { ShoalError } from "../../base/errors.js";
import { decodeConfChange, encodeConfChange, Membership } from "./confchange.js";
import { RaftLog, TERM_UNAVAILABLE } from "./log.js";
import { FollowerProgress } from "./progress.js";
import { committedIndex, hasQuorum, voteResult } from "./quorum.js";
import {
  EntryType,
  MessageType,
  NO_NODE,
  Role,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type Progress,
  type ProposalPosition,
  type RaftConfig,
  type RaftCoreApi,
  type RaftId,
  type ReadState,
  type Ready,
  type RestoreState,
  type Snapshot,
  type SnapshotMetadata,
  type SoftState,
  type Status,
} from "./types.js";

const EMPTY_BYTES = new Uint8Array(0);
/** Bound on ReadIndex requests waiting at the leader. */
const MAX_PENDING_READS = 10_000;
const EMPTY_ENTRIES: Entry[] = [];
/** Marks a Vote sent after TimeoutNow: voters grant it even while they hear from a live leader. */
const TRANSFER_CONTEXT = new TextEncoder().encode("shoal/transfer-leadership");

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A stable map key for a ReadIndex context. */
function contextKey(context: Uint8Array): string {
  let s = "";
  for (let i = 0; i < context.length; i++) s += String.fromCharCode(context[i]!);
  return s;
}

function idToBytes(id: RaftId): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, id);
  return out;
}

function idFromBytes(bytes: Uint8Array): RaftId {
  if (bytes.length !== 8) return NO_NODE;
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0);
}

function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new ShoalError("RAFT_INVARIANT", `raft invariant violated: ${message}`);
}

/**
 * Structural checks on a message from the network; the transport decoded it, but a peer with a
 * bug (or worse) must not be able to corrupt the log through it.
 */
function validateMessage(m: Message, self: RaftId): void {
  const bad = (why: string): never => {
    throw new ShoalError("INVALID_ARGUMENT", `raft message ${MessageType[m.type] ?? m.type} from ${m.from} rejected: ${why}`);
  };
  if (MessageType[m.type] === undefined) bad("unknown type");
  if (m.to !== self) bad(`addressed to ${m.to}, not to this node`);
  if (m.from === NO_NODE || m.from === self) bad("invalid sender");
  if (!Number.isSafeInteger(m.term) || m.term < 0 || !Number.isSafeInteger(m.index) || m.index < 0) bad("term or index out of range");
  if (!Number.isSafeInteger(m.logTerm) || m.logTerm < 0 || !Number.isSafeInteger(m.commit) || m.commit < 0) bad("log term or commit out of range");
  if (m.type === MessageType.Snapshot && (m.snapshot === undefined || m.snapshot.metadata.term > m.term)) bad("missing snapshot or one from a future term");
  if (m.type !== MessageType.Append && m.type !== MessageType.Propose && m.entries.length > 0) bad("unexpected entries");
  if (m.type !== MessageType.Append) return;
  let prevIndex = m.index;
  let prevTerm = m.logTerm;
  for (const e of m.entries) {
    if (e.index !== prevIndex + 1) bad(`entries not contiguous after index ${prevIndex}`);
    if (e.term < prevTerm || e.term > m.term) bad(`entry ${e.index} has term ${e.term} outside [${prevTerm}, ${m.term}]`);
    if (e.type !== EntryType.Normal && e.type !== EntryType.ConfChange) bad(`entry ${e.index} has unknown type`);
    prevIndex = e.index;
    prevTerm = e.term;
  }
}

interface PendingRead {
  index: number;
  from: RaftId;
  context: Uint8Array;
  acks: Set<RaftId>;
}

/** What the last ready() handed out, so advance() knows what became durable and applied. */
interface ReadyInFlight {
  stableTo: number;
  appliedTo: number;
  snapshot: Snapshot | undefined;
  committedEntries: Entry[];
}

export class RaftCore implements RaftCoreApi {
  readonly id: RaftId;
  private readonly config: RaftConfig;
  private readonly log: RaftLog;
  private readonly membership: Membership;

  private term: number;
  private vote: RaftId;
  private lead: RaftId = NO_NODE;
  private role: Role = Role.Follower;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;

  private readonly votes = new Map<RaftId, boolean>();
  private progress = new Map<RaftId, FollowerProgress>();
  private leadTransferee: RaftId = NO_NODE;
  /** Index of the latest conf change in the log; a new one waits until it is applied. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  private commitNotifyPending = false;
  private appendPending = false;

  /** Leader: reads waiting for a heartbeat quorum, in arrival order. */
  private pendingReads: PendingRead[] = [];
  private readonly pendingReadKeys = new Set<string>();
  /** Leader: ReadIndex requests held until an entry of this term commits. */
  private deferredReads: { from: RaftId; context: Uint8Array }[] = [];

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private prevHardState: HardState;
  private prevSoftState: SoftState;
  private inFlight: ReadyInFlight | undefined;
  /** Committed ConfChange entries handed out in a Ready, in order, awaiting applyConfChange. */
  private confIndexesToApply: number[] = [];
  /** Membership after each applied conf change, so compact() can record the state at its index. */
  private confHistory: { index: number; state: ConfState }[] = [];
  private snapshotData: Uint8Array | undefined;
  private snapshotConf: ConfState;

  constructor(config: RaftConfig, restore: RestoreState) {
    if (config.id === NO_NODE) throw new ShoalError("INVALID_ARGUMENT", "raft config id must be non-zero");
    if (config.electionJitterTicks !== undefined && !(Number.isInteger(config.electionJitterTicks) && config.electionJitterTicks >= 1)) {
      throw new ShoalError("INVALID_ARGUMENT", `electionJitterTicks (${config.electionJitterTicks}) must be a whole number of at least 1`);
    }
    if (!(config.heartbeatTicks > 0 && config.electionTicks > config.heartbeatTicks)) {
      throw new ShoalError("INVALID_ARGUMENT", `electionTicks (${config.electionTicks}) must exceed heartbeatTicks (${config.heartbeatTicks}) > 0`);
    }
    if (!(config.maxInflightMsgs > 0) || !(config.maxSizePerMsgBytes > 0) || !(config.maxUncommittedEntriesBytes > 0)) {
      throw new ShoalError("INVALID_ARGUMENT", "maxInflightMsgs, maxSizePerMsgBytes and maxUncommittedEntriesBytes must be positive");
    }
    this.id = config.id;
    this.config = config;
    const snap = restore.snapshot;
    this.log = new RaftLog(snap?.index ?? 0, snap?.term ?? 0, restore.entries, restore.hardState.commit);
    this.snapshotConf = snap?.confState ?? restore.initialConfState;
    this.membership = new Membership(this.snapshotConf);
    this.snapshotData = snap !== undefined ? restore.snapshotData : undefined;
    this.term = restore.hardState.term;
    this.vote = restore.hardState.vote;
    this.prevHardState = { ...restore.hardState };
    this.prevSoftState = { leader: NO_NODE, role: Role.Follower };
    this.becomeFollower(this.term, NO_NODE);
  }

  // ---- public API -------------------------------------------------------------------------------

  /** Start an election now, as if the election timeout had elapsed (tests, tools; etcd's Campaign). */
  campaign(): void {
    this.hup(false);
  }

  tick(): void {
    if (this.role === Role.Leader) this.tickLeader();
    else this.tickElection();
  }

  step(m: Message): void {
    validateMessage(m, this.id);
    // A removed member is never heard again, except the TimeoutNow a removed leader sends to hand over.
    if (this.membership.removed.has(m.from) && m.type !== MessageType.TimeoutNow) return;
    if (m.term === 0) {
      // Forwarded requests (ReadIndex, TransferLeader, Propose) carry no term, as in etcd: they
      // are valid whatever term the sender is at.
      if (m.type !== MessageType.ReadIndex && m.type !== MessageType.TransferLeader && m.type !== MessageType.Propose) return;
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = m.type === MessageType.Vote && bytesEqual(m.context, TRANSFER_CONTEXT);
        // A node that hears from a live leader ignores disruptive candidates (thesis §4.2.3). The
        // lease is one heartbeat interval shorter than the minimum election timeout because each node
        // counts its own ticks from the heartbeat it last heard: a follower that heard the leader's
        // last heartbeat a little later than the candidate (or the same one, a tick behind) has
        // counted fewer ticks, and ignoring that first candidate delayed elections to twice the
        // timeout. With 1-tick heartbeats that is one tick, as before.
        const inLease = this.config.checkQuorum && this.lead !== NO_NODE && this.electionElapsed < this.config.electionTicks - this.config.heartbeatTicks;
        if (!force && inLease) return;
      }
      if (m.type === MessageType.PreVote) {
        // Never change term because of a PreVote.
      } else if (m.type === MessageType.PreVoteResponse && !m.reject) {
        // The term is bumped when the pre-campaign wins.
      } else if (m.type === MessageType.Append || m.type === MessageType.Heartbeat || m.type === MessageType.Snapshot) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NO_NODE);
      }
    } else if (m.term < this.term) {
      if ((this.config.checkQuorum || this.config.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.Append)) {
        // A stale leader (e.g. after a partition) learns our term and steps down.
        this.send({ type: MessageType.AppendResponse, to: m.from });
      } else if (m.type === MessageType.PreVote) {
        this.send({ type: MessageType.PreVoteResponse, to: m.from, reject: true });
      }
      return;
    }

    switch (m.type) {
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return;
      default:
        break;
    }
    if (this.role === Role.Leader) this.stepLeader(m);
    else if (this.role === Role.Follower) this.stepFollower(m);
    else this.stepCandidate(m);
  }

  propose(data: Uint8Array): ProposalPosition {
    return this.appendProposal(EntryType.Normal, data);
  }

  proposeConfChange(change: ConfChange): ProposalPosition {
    this.requireLeader();
    if (this.pendingConfIndex > this.log.applied) {
      throw new ShoalError("PROPOSAL_DROPPED", `a membership change at index ${this.pendingConfIndex} is not applied yet; retry after it is`);
    }
    const refusal = this.membership.refusal(change);
    if (refusal !== undefined) throw new ShoalError("FAILED_PRECONDITION", refusal);
    const position = this.appendProposal(EntryType.ConfChange, encodeConfChange(change));
    this.pendingConfIndex = position.index;
    return position;
  }

  applyConfChange(change: ConfChange): ConfState {
    const index = this.confIndexesToApply.shift() ?? this.log.applied;
    this.membership.apply(change);
    const state = this.membership.toConfState();
    this.confHistory.push({ index, state });
    const id = change.nodeId;
    if (this.role === Role.Leader) {
      const pr = this.progress.get(id);
      if (!this.membership.isMember(id)) this.progress.delete(id);
      else if (pr === undefined) this.progress.set(id, this.newProgress(id));
      else pr.isLearner = this.membership.learners.has(id);
      if (id === this.leadTransferee && !this.membership.voters.has(id)) this.abortLeaderTransfer();
      if (!this.membership.voters.has(this.id)) {
        this.stepDownAfterRemoval();
      } else if (this.maybeCommit()) {
        this.onCommitAdvanced();
      } else {
        for (const to of this.progress.keys()) if (to !== this.id) this.maybeSendAppend(to, false);
      }
    }
    // A removed follower simply never campaigns again: promotable() is false.
    return state;
  }

  transferLeadership(to: RaftId): void {
    if (this.role !== Role.Leader) {
      if (this.lead === NO_NODE) throw new ShoalError("NOT_LEADER", "no known leader to transfer leadership from; retry after an election");
      this.send({ type: MessageType.TransferLeader, to: this.lead, term: 0, context: idToBytes(to) });
      return;
    }
    this.handleTransferLeader(to);
  }

  readIndex(context: Uint8Array): void {
    if (this.role === Role.Leader) {
      this.handleReadIndex(this.id, context);
      return;
    }
    if (this.lead === NO_NODE) throw new ShoalError("NOT_LEADER", "no known leader to confirm a read with; retry after an election");
    this.send({ type: MessageType.ReadIndex, to: this.lead, term: 0, context });
  }

  hasReady(): boolean {
    if ((this.commitNotifyPending || this.appendPending) && this.role === Role.Leader) return true;
    if (this.msgs.length > 0 || this.readStates.length > 0) return true;
    if (this.log.stableIndex < this.log.lastIndex() || this.log.pendingSnapshot !== undefined) return true;
    if (this.log.hasNextCommitted()) return true;
    if (this.lead !== this.prevSoftState.leader || this.role !== this.prevSoftState.role) return true;
    const hs = this.prevHardState;
    return hs.term !== this.term || hs.vote !== this.vote || hs.commit !== this.log.committed;
  }

  ready(): Ready {
    invariant(this.inFlight === undefined, "ready() called again before advance()");
    if (this.appendPending) {
      this.appendPending = false;
      if (this.role === Role.Leader) this.bcastAppend();
    }
    if (this.commitNotifyPending) this.flushCommitNotify();
    const entries = this.log.unstableEntries();
    const snapshot = this.log.pendingSnapshot;
    const committedEntries = this.log.nextCommitted(Number.MAX_SAFE_INTEGER);
    const rd: Ready = {
      entries,
      committedEntries,
      messages: this.msgs,
      readStates: this.readStates,
      mustSync: entries.length > 0 || snapshot !== undefined,
    };
    this.msgs = [];
    this.readStates = [];
    if (snapshot !== undefined) rd.snapshot = snapshot;
    if (this.lead !== this.prevSoftState.leader || this.role !== this.prevSoftState.role) {
      this.prevSoftState = { leader: this.lead, role: this.role };
      rd.softState = { ...this.prevSoftState };
    }
    const hs = this.prevHardState;
    invariant(this.log.committed >= hs.commit, `commit moved back from ${hs.commit} to ${this.log.committed}`);
    invariant(this.term >= hs.term, `term moved back from ${hs.term} to ${this.term}`);
    if (hs.term !== this.term || hs.vote !== this.vote || hs.commit !== this.log.committed) {
      if (hs.term !== this.term || hs.vote !== this.vote) rd.mustSync = true;
      this.prevHardState = { term: this.term, vote: this.vote, commit: this.log.committed };
      rd.hardState = { ...this.prevHardState };
    }
    const confIndexes: number[] = [];
    for (const e of committedEntries) if (e.type === EntryType.ConfChange) confIndexes.push(e.index);
    this.confIndexesToApply.push(...confIndexes);
    this.inFlight = {
      stableTo: entries.length > 0 ? entries[entries.length - 1]!.index : this.log.stableIndex,
      appliedTo: committedEntries.length > 0 ? committedEntries[committedEntries.length - 1]!.index : this.log.applied,
      snapshot,
      committedEntries,
    };
    this.log.markReady();
    return rd;
  }

  advance(): void {
    const done = this.inFlight;
    invariant(done !== undefined, "advance() called without a ready()");
    this.inFlight = undefined;
    if (done.snapshot !== undefined) this.log.snapshotPersisted(done.snapshot);
    // stableTo ignores whatever was cut and replaced after that ready().
    this.log.stableTo(done.stableTo);
    if (done.appliedTo > this.log.applied && done.appliedTo > this.log.snapIndex) this.log.appliedTo(done.appliedTo);
    // Conf changes handed out but not applied by the driver are forgotten after advance.
    this.confIndexesToApply = [];
    if (this.role === Role.Leader) {
      if (this.uncommittedBytes > 0) {
        // Approximate, as etcd does: this term's proposals leave the budget once applied.
        for (const e of done.committedEntries) if (e.term === this.term) this.uncommittedBytes -= e.data.length;
        if (this.uncommittedBytes < 0) this.uncommittedBytes = 0;
      }
      const self = this.progress.get(this.id);
      // The leader counts itself only for what it has made durable.
      if (self !== undefined && self.maybeUpdate(this.log.stableIndex) && this.maybeCommit()) this.onCommitAdvanced();
    }
  }

  compact(index: number, data: Uint8Array): void {
    if (index > this.log.applied) {
      throw new ShoalError("INVALID_ARGUMENT", `cannot compact to ${index}: only ${this.log.applied} is applied`);
    }
    if (index < this.log.snapIndex) return;
    if (index === this.log.snapIndex) {
      this.snapshotData = data;
      return;
    }
    let conf = this.snapshotConf;
    for (const h of this.confHistory) if (h.index <= index) conf = h.state;
    this.confHistory = this.confHistory.filter((h) => h.index > index);
    this.log.compact(index);
    this.snapshotConf = conf;
    this.snapshotData = data;
  }

  /** The current snapshot's metadata (after compact(), what the driver persists next to the data). */
  snapshotMetadata(): SnapshotMetadata {
    return { index: this.log.snapIndex, term: this.log.snapTerm, confState: this.snapshotConf };
  }

  reportUnreachable(id: RaftId): void {
    const pr = this.progress.get(id);
    if (this.role !== Role.Leader || pr === undefined) return;
    if (pr.state === "replicate") pr.becomeProbe();
  }

  reportSnapshot(id: RaftId, ok: boolean): void {
    const pr = this.progress.get(id);
    if (this.role !== Role.Leader || pr === undefined || pr.state !== "snapshot") return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the follower's answer (or the next heartbeat) before probing again.
    pr.probeSent = true;
  }

  status(): Status {
    const progress = new Map<RaftId, Progress>();
    if (this.role === Role.Leader) for (const [id, pr] of this.progress) progress.set(id, pr.view());
    return {
      id: this.id,
      hardState: { term: this.term, vote: this.vote, commit: this.log.committed },
      softState: { leader: this.lead, role: this.role },
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      confState: this.membership.toConfState(),
      progress,
      leadTransferee: this.leadTransferee,
    };
  }

  /** Entries in [lo, hi] that are still in memory (tests and debugging). */
  entries(lo: number, hi: number): Entry[] {
    return this.log.slice(Math.max(lo, this.log.firstIndex()), hi + 1, Number.MAX_SAFE_INTEGER) ?? [];
  }

  /** Full consistency check of the in-memory log (tests; O(n)). */
  checkInvariants(): void {
    this.log.checkInvariants();
  }

  // ---- roles ------------------------------------------------------------------------------------

  private reset(term: number): void {
    if (term !== this.term) {
      invariant(term > this.term, `term moving back from ${this.term} to ${term}`);
      this.term = term;
      this.vote = NO_NODE;
      // Messages of an older term still waiting for this Ready may promise what the Ready will not
      // persist: a follower that acknowledged a leader's entries and, before they were saved, heard
      // a newer leader that truncates them would send an acknowledgement of entries it never stored
      // (found by the simulator running RaftNode: seed 164 with the daemons' timing, a paused
      // follower that woke with both Appends queued). Dropping them is a message loss, which Raft
      // tolerates; pre-votes and their answers carry a future term and are kept, and so are the
      // forwarded requests that carry no term (ReadIndex, TransferLeader).
      const stale = (m: Message): boolean => m.term !== 0 && m.term < term;
      if (this.msgs.some(stale)) this.msgs = this.msgs.filter((m) => !stale(m));
    }
    this.lead = NO_NODE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.votes.clear();
    this.progress = new Map();
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.commitNotifyPending = false;
    this.appendPending = false;
    this.pendingReads = [];
    this.pendingReadKeys.clear();
    this.deferredReads = [];
  }

  private becomeFollower(term: number, lead: RaftId): void {
    this.reset(term);
    this.lead = lead;
    this.role = Role.Follower;
  }

  private becomePreCandidate(): void {
    invariant(this.role !== Role.Leader, "a leader cannot become a pre-candidate");
    // Unlike a candidate, a pre-candidate keeps its term and vote.
    this.votes.clear();
    this.lead = NO_NODE;
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    invariant(this.role !== Role.Leader, "a leader cannot become a candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    invariant(this.role === Role.Candidate, `only a candidate can become leader (was ${this.role})`);
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    const next = this.log.lastIndex() + 1;
    for (const id of [...this.membership.voters, ...this.membership.learners]) this.progress.set(id, this.newProgress(id, next));
    const self = this.progress.get(this.id);
    if (self !== undefined) {
      self.match = this.log.stableIndex;
      self.becomeReplicate();
    }
    // Any conf change still in the log may be unapplied: refuse new ones until we are caught up.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op lets this term commit, which also commits earlier terms' entries (§5.4.2).
    this.log.appendNew({ term: this.term, index: this.log.lastIndex() + 1, type: EntryType.Normal, data: EMPTY_BYTES });
  }

  private newProgress(id: RaftId, next = this.log.lastIndex() + 1): FollowerProgress {
    const pr = new FollowerProgress(next, this.config.maxInflightMsgs, this.membership.learners.has(id));
    pr.recentActive = id === this.id;
    return pr;
  }

  private promotable(): boolean {
    return this.membership.voters.has(this.id) && this.log.pendingSnapshot === undefined;
  }

  private resetRandomizedElectionTimeout(): void {
    const jitter = this.config.electionJitterTicks ?? this.config.electionTicks;
    this.randomizedElectionTimeout = this.config.random.int(this.config.electionTicks, this.config.electionTicks + jitter);
  }

  /**
   * A candidate whose vote was refused in its own term has probably split the vote with another
   * candidate (two survivors of a dead leader that timed out within one round trip of each other
   * both pass the pre-vote and then vote for themselves). With three voters and one dead, neither
   * can ever count a lost election, so each would wait a whole new randomized timeout before
   * trying again: the 2.5 s failover tail. Instead its remaining wait is redrawn from
   * [1, E/2) ticks; the two draw independently, so the first to retry wins the other's pre-vote
   * (it is not in a leader's lease) and vote. Timeouts never affect safety; a refusal for a stale
   * log only makes the retry a pre-vote that fails without changing any term.
   */
  private shortenAfterRejection(): void {
    const retryTicks = this.config.random.int(1, Math.max(2, Math.floor(this.config.electionTicks / 2)));
    this.randomizedElectionTimeout = Math.min(this.randomizedElectionTimeout, this.electionElapsed + retryTicks);
  }

  // ---- ticks ------------------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const pr of this.progress.values()) {
      // The driver should reportSnapshot(); if it never does (message lost, driver restarted),
      // treat the snapshot as failed after two election timeouts and probe again.
      if (pr.state === "snapshot" && ++pr.snapshotTicks >= 2 * this.config.electionTicks) {
        pr.pendingSnapshot = 0;
        pr.becomeProbe();
      }
    }
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum) {
        const voters = this.membership.voterList;
        if (!hasQuorum(voters, (id) => id === this.id || this.progress.get(id)?.recentActive === true)) {
          this.becomeFollower(this.term, NO_NODE);
          return;
        }
        for (const [id, pr] of this.progress) pr.recentActive = id === this.id;
      }
      // A transfer that has not finished within an election timeout is abandoned.
      if (this.leadTransferee !== NO_NODE) this.abortLeaderTransfer();
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      // Carry the newest pending read's context so a lost read heartbeat is retried.
      const last = this.pendingReads[this.pendingReads.length - 1];
      this.bcastHeartbeat(last === undefined ? EMPTY_BYTES : last.context);
    }
  }

  // ---- elections --------------------------------------------------------------------------------

  private hasUnappliedConfChanges(): boolean {
    if (this.log.committed <= this.log.applied) return false;
    const ents = this.log.slice(this.log.applied + 1, this.log.committed + 1, Number.MAX_SAFE_INTEGER) ?? [];
    return ents.some((e) => e.type === EntryType.ConfChange);
  }

  private hup(transfer: boolean): void {
    if (this.role === Role.Leader || !this.promotable()) return;
    // Campaigning before applying a committed conf change could use the wrong voter set.
    if (this.hasUnappliedConfChanges()) return;
    if (this.config.preVote && !transfer) this.startCampaign(true, false);
    else this.startCampaign(false, transfer);
  }

  private startCampaign(pre: boolean, transfer: boolean): void {
    let term: number;
    let type: MessageType;
    if (pre) {
      this.becomePreCandidate();
      term = this.term + 1;
      type = MessageType.PreVote;
    } else {
      this.becomeCandidate();
      term = this.term;
      type = MessageType.Vote;
    }
    this.votes.set(this.id, true);
    const result = voteResult(this.membership.voterList, this.votes);
    if (result === "won") {
      if (pre) this.startCampaign(false, transfer);
      else this.becomeLeader();
      return;
    }
    for (const id of this.membership.voterList) {
      if (id === this.id) continue;
      this.send({
        type,
        to: id,
        term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        context: transfer ? TRANSFER_CONTEXT : EMPTY_BYTES,
      });
    }
  }

  private handleVoteRequest(m: Message): void {
    const isPre = m.type === MessageType.PreVote;
    const respType = isPre ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    const canVote =
      this.vote === m.from ||
      (this.vote === NO_NODE && this.lead === NO_NODE) ||
      (isPre && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A PreVote answer carries the candidate's future term so it is not mistaken for stale.
      this.send({ type: respType, to: m.from, term: m.term });
      if (!isPre) {
        this.electionElapsed = 0;
        // PLANTED FAULT voteWithoutPersisting: the vote never reaches the hard state.
        if (this.config.faults?.voteWithoutPersisting !== true) this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === Role.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    switch (m.type) {
      case MessageType.Append:
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        return;
      default:
        break;
    }
    if (m.type !== myResp) return;
    if (!this.membership.voters.has(m.from)) return;
    if (!this.votes.has(m.from)) {
      this.votes.set(m.from, !m.reject);
      if (m.reject && this.role === Role.Candidate) this.shortenAfterRejection();
    }
    const result = voteResult(this.membership.voterList, this.votes);
    if (result === "won") {
      if (this.role === Role.PreCandidate) {
        this.startCampaign(false, false);
      } else {
        this.becomeLeader();
        this.bcastAppend();
      }
    } else if (result === "lost") {
      this.becomeFollower(this.term, NO_NODE);
    }
  }

  // ---- follower ---------------------------------------------------------------------------------

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TransferLeader:
        if (this.lead !== NO_NODE) this.send({ type: MessageType.TransferLeader, to: this.lead, term: 0, context: m.context });
        return;
      case MessageType.TimeoutNow:
        // The leader asked us to take over now: skip PreVote and the lease check.
        this.hup(true);
        return;
      case MessageType.ReadIndexResponse:
        this.readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  private handleAppend(m: Message): void {
    invariant(this.role !== Role.Leader, "a leader never truncates or appends from another node's log");
    if (m.index < this.log.committed) {
      this.send({ type: MessageType.AppendResponse, to: m.from, index: this.log.committed });
      return;
    }
    const skip = this.config.faults?.skipConflictTruncation === true;
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries, skip);
    if (lastNew >= 0) {
      this.send({ type: MessageType.AppendResponse, to: m.from, index: lastNew });
      return;
    }
    // Reject with a hint: the last index at or below m.index whose term is <= m.logTerm, so the
    // leader can skip whole divergent terms instead of one index per round trip.
    const [hintIndex, hintTerm] = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({ type: MessageType.AppendResponse, to: m.from, index: m.index, reject: true, rejectHint: hintIndex, logTerm: hintTerm });
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({ type: MessageType.HeartbeatResponse, to: m.from, context: m.context });
  }

  private handleSnapshot(m: Message): void {
    const snap = m.snapshot;
    if (snap === undefined) return;
    const { index, term } = snap.metadata;
    if (index <= this.log.committed) {
      this.send({ type: MessageType.AppendResponse, to: m.from, index: this.log.committed });
      return;
    }
    if (this.log.matchTerm(index, term)) {
      // We already have the snapshot's last entry: just move commit forward.
      this.log.commitTo(index);
      this.send({ type: MessageType.AppendResponse, to: m.from, index: this.log.committed });
      return;
    }
    this.log.restore(snap);
    this.membership.reset(snap.metadata.confState);
    this.snapshotConf = snap.metadata.confState;
    this.snapshotData = snap.data;
    this.confHistory = [];
    this.confIndexesToApply = [];
    this.send({ type: MessageType.AppendResponse, to: m.from, index: this.log.lastIndex() });
  }

  // ---- leader -----------------------------------------------------------------------------------

  private stepLeader(m: Message): void {
    const pr = this.progress.get(m.from);
    switch (m.type) {
      case MessageType.ReadIndex:
        if (pr !== undefined) this.handleReadIndex(m.from, m.context);
        return;
      case MessageType.TransferLeader:
        if (pr !== undefined) this.handleTransferLeader(idFromBytes(m.context));
        return;
      case MessageType.Propose:
        // Proposals forwarded as messages: best effort, a refused one is dropped.
        for (const e of m.entries) {
          try {
            if (e.type === EntryType.ConfChange) this.proposeConfChange(decodeConfChange(e.data));
            else this.propose(e.data);
          } catch {
            return;
          }
        }
        return;
      default:
        break;
    }
    if (pr === undefined) return;
    switch (m.type) {
      case MessageType.AppendResponse:
        pr.recentActive = true;
        this.handleAppendResponse(m, pr);
        return;
      case MessageType.HeartbeatResponse:
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.log.lastIndex() || pr.state === "probe") this.maybeSendAppend(m.from, true);
        if (m.context.length > 0) this.ackRead(m.from, m.context);
        return;
      default:
        return;
    }
  }

  private handleAppendResponse(m: Message, pr: FollowerProgress): void {
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm)[0];
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.maybeSendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === "probe") {
      pr.becomeReplicate();
    } else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.onCommitAdvanced();
    } else if (wasPaused) {
      this.maybeSendAppend(m.from, true);
    }
    while (this.maybeSendAppend(m.from, false)) {
      // Keep the pipeline full up to maxInflightMsgs.
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.send({ type: MessageType.TimeoutNow, to: m.from });
    }
  }

  /** Advance commit to the quorum match, if that entry is of this term (§5.4.2). */
  private maybeCommit(): boolean {
    const mci = committedIndex(this.membership.voterList, (id) => this.progress.get(id)?.match ?? 0);
    if (mci <= this.log.committed) return false;
    const countingFault = this.config.faults?.commitPreviousTermByCounting === true;
    // PLANTED FAULT commitPreviousTermByCounting: skip the current-term check.
    if (!countingFault && this.log.term(mci) !== this.term) return false;
    return this.log.commitTo(mci);
  }

  private appendProposal(type: EntryType, data: Uint8Array): ProposalPosition {
    this.requireLeader();
    if (this.leadTransferee !== NO_NODE) {
      throw new ShoalError("PROPOSAL_DROPPED", `leadership is being transferred to ${this.leadTransferee}; retry with the new leader`);
    }
    if (data.length > this.config.maxSizePerMsgBytes) {
      throw new ShoalError("PROPOSAL_TOO_LARGE", `proposal of ${data.length} bytes exceeds the ${this.config.maxSizePerMsgBytes}-byte message limit; split it`);
    }
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + data.length > this.config.maxUncommittedEntriesBytes) {
      throw new ShoalError("PROPOSAL_DROPPED", `${this.uncommittedBytes} bytes of proposals are not committed yet (limit ${this.config.maxUncommittedEntriesBytes}); retry later`);
    }
    this.uncommittedBytes += data.length;
    const entry: Entry = { term: this.term, index: this.log.lastIndex() + 1, type, data };
    this.log.appendNew(entry);
    // Sent at the next ready(): proposals made between two Readies travel in one batched Append.
    this.appendPending = true;
    return { index: entry.index, term: entry.term };
  }

  private onCommitAdvanced(): void {
    this.releaseDeferredReads();
    // Announced once per Ready rather than once per acknowledgement: under load many
    // acknowledgements arrive between two Readies and each would otherwise cost a broadcast.
    this.commitNotifyPending = true;
  }

  private flushCommitNotify(): void {
    this.commitNotifyPending = false;
    if (this.role !== Role.Leader) return;
    for (const [id, pr] of this.progress) {
      if (id !== this.id && pr.sentCommit < this.log.committed) this.maybeSendAppend(id, true);
    }
  }

  private requireLeader(): void {
    if (this.role !== Role.Leader) {
      const hint = this.lead === NO_NODE ? "no leader is known yet; retry after an election" : `forward to the leader ${this.lead}`;
      throw new ShoalError("NOT_LEADER", `this node is not the leader: ${hint}`);
    }
  }

  private bcastAppend(): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id || !this.maybeSendAppend(id, true)) continue;
      // A replicating follower gets the whole backlog, pipelined up to maxInflightMsgs.
      while (pr.state === "replicate" && this.maybeSendAppend(id, false)) {
        // keep going
      }
    }
  }

  private bcastHeartbeat(context: Uint8Array): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold.
      this.send({ type: MessageType.Heartbeat, to: id, commit: Math.min(pr.match, this.log.committed), context });
    }
  }

  /** Send the next Append (or Snapshot) to `to` if flow control allows; false if nothing went out. */
  private maybeSendAppend(to: RaftId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const ents = prevTerm === TERM_UNAVAILABLE ? undefined : this.log.slice(pr.next, Number.MAX_SAFE_INTEGER, this.config.maxSizePerMsgBytes);
    if (ents === undefined) return this.sendSnapshot(to, pr);
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: MessageType.Append,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents.length === 0 ? EMPTY_ENTRIES : ents,
      commit: this.log.committed,
    });
    pr.sentCommit = this.log.committed;
    pr.sentEntries(ents.length, ents.length === 0 ? prevIndex : ents[ents.length - 1]!.index);
    return true;
  }

  private sendSnapshot(to: RaftId, pr: FollowerProgress): boolean {
    if (!pr.recentActive) return false; // do not ship a whole snapshot into the void
    if (this.snapshotData === undefined) return false; // the driver has to call compact() again
    const snapshot: Snapshot = {
      metadata: { index: this.log.snapIndex, term: this.log.snapTerm, confState: this.snapshotConf },
      data: this.snapshotData,
    };
    this.send({ type: MessageType.Snapshot, to, snapshot });
    pr.becomeSnapshot(snapshot.metadata.index);
    return true;
  }

  /** The leader applied its own removal: let the most caught-up voter take over without a timeout. */
  private stepDownAfterRemoval(): void {
    let best: RaftId = NO_NODE;
    let bestMatch = -1;
    for (const id of this.membership.voterList) {
      const match = this.progress.get(id)?.match ?? 0;
      if (match > bestMatch) {
        best = id;
        bestMatch = match;
      }
    }
    if (best !== NO_NODE && bestMatch === this.log.lastIndex()) this.send({ type: MessageType.TimeoutNow, to: best });
    this.becomeFollower(this.term, NO_NODE);
  }

  private handleTransferLeader(transferee: RaftId): void {
    if (transferee === NO_NODE || !this.membership.voters.has(transferee)) return;
    if (this.leadTransferee !== NO_NODE) {
      if (this.leadTransferee === transferee) return;
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) return;
    this.electionElapsed = 0; // the transfer must finish within one election timeout
    this.leadTransferee = transferee;
    const pr = this.progress.get(transferee)!;
    if (pr.match === this.log.lastIndex()) this.send({ type: MessageType.TimeoutNow, to: transferee });
    else this.maybeSendAppend(transferee, true);
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = NO_NODE;
  }

  // ---- ReadIndex --------------------------------------------------------------------------------

  private handleReadIndex(from: RaftId, context: Uint8Array): void {
    if (this.pendingReads.length + this.deferredReads.length >= MAX_PENDING_READS) {
      if (from === this.id) throw new ShoalError("QUEUE_FULL", `${MAX_PENDING_READS} reads are waiting for leadership confirmation; retry later`);
      return;
    }
    // Until an entry of this term commits, our commit index may be behind the previous leader's.
    if (this.log.term(this.log.committed) !== this.term) {
      this.deferredReads.push({ from, context });
      return;
    }
    const index = this.log.committed;
    if (this.membership.voterList.length === 1 && this.membership.voters.has(this.id)) {
      this.respondRead(from, index, context);
      return;
    }
    const key = contextKey(context);
    if (this.pendingReadKeys.has(key)) return;
    this.pendingReadKeys.add(key);
    this.pendingReads.push({ index, from, context, acks: new Set([this.id]) });
    this.bcastHeartbeat(context);
  }

  private releaseDeferredReads(): void {
    if (this.deferredReads.length === 0 || this.log.term(this.log.committed) !== this.term) return;
    const reads = this.deferredReads;
    this.deferredReads = [];
    for (const r of reads) this.handleReadIndex(r.from, r.context);
  }

  private ackRead(from: RaftId, context: Uint8Array): void {
    const key = contextKey(context);
    if (!this.pendingReadKeys.has(key)) return;
    const at = this.pendingReads.findIndex((r) => contextKey(r.context) === key);
    if (at < 0) return;
    const read = this.pendingReads[at]!;
    read.acks.add(from);
    if (!hasQuorum(this.membership.voterList, (id) => read.acks.has(id))) return;
    // A quorum for this read also confirms every read queued before it.
    const released = this.pendingReads.splice(0, at + 1);
    for (const r of released) {
      this.pendingReadKeys.delete(contextKey(r.context));
      this.respondRead(r.from, r.index, r.context);
    }
  }

  private respondRead(from: RaftId, index: number, context: Uint8Array): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ type: MessageType.ReadIndexResponse, to: from, index, context });
  }

  // ---- messages ---------------------------------------------------------------------------------

  private send(m: Partial<Message> & { type: MessageType; to: RaftId }): void {
    this.msgs.push({
      type: m.type,
      to: m.to,
      from: this.id,
      term: m.term ?? this.term,
      logTerm: m.logTerm ?? 0,
      index: m.index ?? 0,
      entries: m.entries ?? EMPTY_ENTRIES,
      commit: m.commit ?? 0,
      reject: m.reject ?? false,
      rejectHint: m.rejectHint ?? 0,
      context: m.context ?? EMPTY_BYTES,
      ...(m.snapshot !== undefined ? { snapshot: m.snapshot } : {}),
    });
  }
}
