// What RaftNode is given and what it reports: its options (with the test-only planted faults), the
// interfaces its owner implements (state machine, durable log, logger), its events and status.
import type { RaftNodeObserver } from "./observer.js";
import { ShoalError } from "../../base/errors.js";
import type { Clock } from "../../base/clock.js";
import type { Random } from "../../base/random.js";
import type { EncryptedStore } from "../../storage/encrypted-store.js";
import {
  NO_NODE,
  type ConfChangeType,
  type ConfState,
  type Entry,
  type HardState,
  type PlantedFaults,
  type RaftId,
  type Role,
  type SnapshotMetadata,
} from "../core/types.js";
import type { RaftMemberInfo, RaftMemberStatus } from "./membership.js";
import type { RaftTransport } from "./transport.js";

/** A committed entry as the state machine sees it. */
export interface AppliedEntry {
  index: number;
  term: number;
  data: Uint8Array;
}

/** Supplied by the state layer. `apply` throws only on corruption, which stops the node. */
export interface RaftStateMachine {
  /** Applies one committed entry; the result goes back to the proposer on this node. */
  apply(entry: AppliedEntry): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

/** What the driver needs from durable raft storage (RaftLogStorage in src/storage implements it). */
export interface DurableRaftLog {
  load(): Promise<{ hardState: HardState; snapshot?: { metadata: SnapshotMetadata; data: Uint8Array }; entries: Entry[] }>;
  save(update: { hardState?: HardState; entries: Entry[]; snapshot?: { metadata: SnapshotMetadata; data: Uint8Array } }): Promise<void>;
  compact(snapshot: { metadata: SnapshotMetadata; data: Uint8Array }): Promise<void>;
}

/** Structured logging, satisfied by a pino logger. */
export interface RaftNodeLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * SwarmKit's default: encoding the whole state every 1,000 writes took a tenth of a follower's CPU
 * under sustained writes, while replaying 10,000 entries at restart takes a fraction of a second.
 */
export const DEFAULT_SNAPSHOT_INTERVAL_ENTRIES = 10_000;

/**
 * Fewer entries suffice when they are big: 10,000 proposals of a megabyte would otherwise keep
 * 10 GB of log. The log then holds at most about max(this, the state's size) bytes.
 */
export const SNAPSHOT_AFTER_LOG_BYTES = 64 * 1024 * 1024;

/**
 * Deliberate driver bugs, for the simulator's planted-fault tests only (off by default, never set
 * by the daemon): each breaks one ordering rule of handleReady, so a test can show that some seed
 * catches it. The core's own planted faults ride along and are handed to RaftCore.
 */
export interface RaftNodeFaults extends PlantedFaults {
  /** Vote responses leave before the hard state that records the vote (and its term) is durable. */
  answerVotesBeforePersist?: boolean;
  /** Append responses leave before the entries they acknowledge are durable. */
  ackEntriesBeforePersist?: boolean;
  /** A proposal is answered once its entry is in the local log, before it is committed and applied. */
  answerProposalsBeforeApply?: boolean;
  /** A snapshot from the leader is saved without the hard state (term, commit) of its Ready. */
  snapshotWithoutHardState?: boolean;
  /** A ReadIndex read is answered once its read index is known, before it is applied here. */
  serveReadsBeforeApply?: boolean;
}

export interface RaftNodeOptions {
  id: RaftId;
  /** The manager's encrypted store; the node keeps its raft log in it. The caller closes it. */
  dataStore?: EncryptedStore;
  /** Alternative to `dataStore` for callers that opened the log themselves. */
  log?: DurableRaftLog;
  transport: RaftTransport;
  stateMachine: RaftStateMachine;
  /** A brand-new cluster: its founding voters (including this node). Ignored once storage holds state. */
  bootstrap?: { members: RaftMemberInfo[] };
  /** Joining an existing cluster: the members it told us about. Ignored once storage holds state. */
  join?: { members: RaftMemberInfo[]; removedIds?: RaftId[] };
  clock?: Clock;
  random?: Random;
  logger?: RaftNodeLogger;
  /** Real timer period of one Raft tick. Default 100 ms. */
  tickMs?: number;
  /** Default 1 tick. */
  heartbeatTicks?: number;
  /** Election timeout is randomized in [electionTicks, electionTicks + electionJitterTicks). Default 10. */
  electionTicks?: number;
  /** Default electionTicks ([E, 2E) as in etcd). */
  electionJitterTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  maxSizePerMsgBytes?: number;
  maxInflightMsgs?: number;
  maxUncommittedEntriesBytes?: number;
  /**
   * Take a state-machine snapshot every this many applied entries, and not before the entries
   * applied since the last snapshot hold at least as many bytes as it did. Default
   * DEFAULT_SNAPSHOT_INTERVAL_ENTRIES.
   */
  snapshotIntervalEntries?: number;
  /** Snapshot after this many bytes of entries even before snapshotIntervalEntries. Default SNAPSHOT_AFTER_LOG_BYTES. */
  snapshotAfterLogBytes?: number;
  /** Log entries kept behind a snapshot so slow followers catch up without one. Default 500. */
  logEntriesForSlowFollowers?: number;
  /** Promote a learner automatically once it is within `promoteWithinEntries` of the leader. */
  autoPromote?: boolean;
  promoteWithinEntries?: number;
  /** Default deadline of `propose`, `readIndex` and membership calls. Default 10 s. */
  defaultTimeoutMs?: number;
  /** With no leader for this long, waiting calls fail with NO_QUORUM. Default 2 max election timeouts. */
  noLeaderTimeoutMs?: number;
  /** Proposals queued while a Ready is being persisted, and while waiting for a leader. */
  maxQueuedProposals?: number;
  /** Inbound messages queued while a Ready is being persisted. */
  maxQueuedMessages?: number;
  /** Proposals appended to the log and waiting to be applied. */
  maxPendingProposals?: number;
  maxPendingReads?: number;
  /** Test only: deliberate bugs (see RaftNodeFaults). */
  faults?: RaftNodeFaults;
  /** Told about Readies, persists, proposals, leader changes and snapshots (the daemon's metrics). */
  observer?: RaftNodeObserver;
}

export interface LeaderChange {
  leaderId: RaftId;
  previousLeaderId: RaftId;
  isLeader: boolean;
  term: number;
}

export interface MembershipChange {
  confState: ConfState;
  members: RaftMemberStatus[];
  /** The change that was applied; absent when a snapshot replaced the membership. */
  change?: { type: ConfChangeType; raftId: RaftId };
  /** True when this node is no longer a member. */
  removedSelf: boolean;
}

export interface RaftNodeEvents {
  "leader-changed": LeaderChange;
  "membership-changed": MembershipChange;
  /** The node stopped on an error it must not limp past (storage, corruption, invariant). */
  fatal: Error;
}

export interface RaftNodeStatus {
  id: RaftId;
  leaderId: RaftId;
  isLeader: boolean;
  role: Role;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  members: RaftMemberStatus[];
  removedIds: RaftId[];
}

/** A follower was asked to propose: the manager layer forwards to `leaderId` (NO_NODE if unknown). */
export class NotLeaderError extends ShoalError {
  constructor(
    readonly leaderId: RaftId,
    readonly leaderAddr: string,
  ) {
    super(
      "NOT_LEADER",
      leaderId === NO_NODE
        ? "this manager is not the raft leader and knows no leader; retry shortly"
        : `this manager is not the raft leader; send the request to the leader (raft ID ${leaderId}${leaderAddr ? ` at ${leaderAddr}` : ""})`,
    );
    this.name = "NotLeaderError";
  }
}
