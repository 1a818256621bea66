// The contract of the pure Raft core (DESIGN.md §4), modelled on etcd-io/raft: the caller feeds
// ticks, messages and proposals in, and takes out a Ready listing what to persist, what to send
// and what to apply. The core does no I/O, owns no timer and reads no global clock or randomness.
import type { Random } from "../../base/random.js";

/** Raft member ID: a random non-zero 64-bit integer, never reused after removal. */
export type RaftId = bigint;
export const NO_NODE: RaftId = 0n;

export enum EntryType {
  Normal = 0,
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque to the core. An empty Normal entry is the no-op a new leader appends. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  /** The candidate voted for in `term`, or NO_NODE. */
  vote: RaftId;
  commit: number;
}

export interface ConfState {
  voters: RaftId[];
  learners: RaftId[];
  /** IDs removed from the cluster, which may never rejoin (absent when none). Added by the core. */
  removed?: RaftId[];
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The application's state-machine image at `metadata.index`. Opaque to the core. */
  data: Uint8Array;
}

/** Numbers match RaftMessageType in proto/shoal/v1/raft.proto. */
export enum MessageType {
  Append = 1,
  AppendResponse = 2,
  Vote = 3,
  VoteResponse = 4,
  PreVote = 5,
  PreVoteResponse = 6,
  Heartbeat = 7,
  HeartbeatResponse = 8,
  Snapshot = 9,
  SnapshotResponse = 10,
  TimeoutNow = 11,
  ReadIndex = 12,
  ReadIndexResponse = 13,
  TransferLeader = 14,
  Propose = 15,
}

export interface Message {
  type: MessageType;
  to: RaftId;
  from: RaftId;
  term: number;
  /** Append: term of the entry at `index` (the entry preceding `entries`). Vote: candidate's last log term. */
  logTerm: number;
  /** Append: index preceding `entries`. Vote: candidate's last index. AppendResponse: last matched index. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** On a rejected AppendResponse: the follower's hint for where to probe next. */
  rejectHint: number;
  /** ReadIndex request context, echoed back. */
  context: Uint8Array;
  /** Snapshot messages carry the whole snapshot; the transport splits it into chunks on the wire. */
  snapshot?: Snapshot;
}

export enum Role {
  Follower = "follower",
  PreCandidate = "pre-candidate",
  Candidate = "candidate",
  Leader = "leader",
}

export interface SoftState {
  leader: RaftId;
  role: Role;
}

export interface ReadState {
  /** Reads with this context are linearizable once the applied index reaches `index`. */
  index: number;
  context: Uint8Array;
}

export interface Ready {
  /** Present when leader or role changed since the last Ready. Volatile; never persisted. */
  softState?: SoftState;
  /** Present when term, vote or commit changed: persist before sending `messages`. */
  hardState?: HardState;
  /**
   * Entries to append to stable storage, in order. If `entries[0].index` is at or below the last
   * stored index, the stored suffix from that index on must be deleted first (conflict truncation).
   */
  entries: Entry[];
  /** A snapshot received from the leader, to persist and then to restore the state machine from. */
  snapshot?: Snapshot;
  /** Entries now committed, to apply in order after persisting. */
  committedEntries: Entry[];
  /** Messages to send after `hardState`, `entries` and `snapshot` are durable. */
  messages: Message[];
  readStates: ReadState[];
  /** True when `hardState` or `entries` must be fsynced before `messages` go out. */
  mustSync: boolean;
}

export enum ConfChangeType {
  AddLearner = 0,
  PromoteLearner = 1,
  RemoveNode = 2,
}

export interface ConfChange {
  type: ConfChangeType;
  nodeId: RaftId;
  /** Opaque to the core: e.g. the member's node ID and address. */
  context: Uint8Array;
}

/**
 * Deliberate faults a test can switch on to prove the simulator's checkers catch them.
 * Never set outside tests.
 */
export interface PlantedFaults {
  /** Commit an entry of an earlier term by counting replicas (violates Raft §5.4.2). */
  commitPreviousTermByCounting?: boolean;
  /** Grant a vote without recording it in the hard state that must be persisted first. */
  voteWithoutPersisting?: boolean;
  /** Append leader entries over a conflicting suffix without truncating it. */
  skipConflictTruncation?: boolean;
}

export interface RaftConfig {
  id: RaftId;
  /** Election timeout is randomized in [electionTicks, electionTicks + electionJitterTicks). */
  electionTicks: number;
  /** Width of the randomization; default electionTicks, i.e. [E, 2E) as in etcd. */
  electionJitterTicks?: number;
  heartbeatTicks: number;
  random: Random;
  preVote: boolean;
  checkQuorum: boolean;
  /** Upper bound on the entry bytes in one Append message. */
  maxSizePerMsgBytes: number;
  /** Upper bound on Append messages in flight to one follower in replicate state. */
  maxInflightMsgs: number;
  /** Proposals are refused (PROPOSAL_DROPPED) while more uncommitted entry bytes than this are pending. */
  maxUncommittedEntriesBytes: number;
  faults?: PlantedFaults;
}

/** What a restarted node hands the core: exactly what stable storage holds. */
export interface RestoreState {
  hardState: HardState;
  /** The last snapshot, if the log was compacted; entries then start at snapshot.index + 1. */
  snapshot?: SnapshotMetadata;
  /** Every stored entry after the snapshot, contiguous. */
  entries: Entry[];
  /**
   * The stored snapshot's state-machine image, so a restarted leader can send it to a follower that
   * is behind its first index. Without it the leader sends nothing until the driver calls compact().
   */
  snapshotData?: Uint8Array;
  /** Membership for a brand-new cluster (ignored when the log or snapshot already defines it). */
  initialConfState: ConfState;
}

export interface Progress {
  match: number;
  next: number;
  state: "probe" | "replicate" | "snapshot";
  recentActive: boolean;
  inflight: number;
}

export interface Status {
  id: RaftId;
  hardState: HardState;
  softState: SoftState;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  confState: ConfState;
  /** Leader only. */
  progress: Map<RaftId, Progress>;
  leadTransferee: RaftId;
}

/** Where a proposal landed; the caller learns its fate by watching what is applied at `index`. */
export interface ProposalPosition {
  index: number;
  term: number;
}

/**
 * The core's surface. Implemented by RaftCore in ./raft.ts.
 * Errors are ShoalError: NOT_LEADER (with no leader or a follower), PROPOSAL_DROPPED (uncommitted
 * bound, leadership transfer in progress, a pending conf change), PROPOSAL_TOO_LARGE, RAFT_INVARIANT.
 */
export interface RaftCoreApi {
  tick(): void;
  step(message: Message): void;
  propose(data: Uint8Array): ProposalPosition;
  proposeConfChange(change: ConfChange): ProposalPosition;
  /** Called by the driver when a committed ConfChange entry is applied. */
  applyConfChange(change: ConfChange): ConfState;
  transferLeadership(to: RaftId): void;
  /** Request a linearizable read; a ReadState with the same context appears in a later Ready. */
  readIndex(context: Uint8Array): void;
  hasReady(): boolean;
  ready(): Ready;
  /** Acknowledge that the last Ready was persisted, sent and applied. */
  advance(): void;
  /** The driver took a snapshot of the state machine at `index` (≤ applied): compact the log. */
  compact(index: number, data: Uint8Array): void;
  reportUnreachable(id: RaftId): void;
  reportSnapshot(id: RaftId, ok: boolean): void;
  status(): Status;
}
