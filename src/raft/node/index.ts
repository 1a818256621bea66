// The Raft driver's public surface: RaftNode, the transport interface and the loopback network,
// and the membership helpers the manager layer uses.
export { RaftNode } from "./node.js";
export type { RaftNodeObserver } from "./observer.js";
export { DEFAULT_RAFT_TIMING, electionJitterTicks, type RaftTiming } from "./timing.js";
export {
  NotLeaderError,
  DEFAULT_SNAPSHOT_INTERVAL_ENTRIES,
  type AppliedEntry,
  type DurableRaftLog,
  type LeaderChange,
  type MembershipChange,
  type RaftNodeEvents,
  type RaftNodeFaults,
  type RaftNodeLogger,
  type RaftNodeOptions,
  type RaftNodeStatus,
  type RaftStateMachine,
} from "./options.js";
export { LoopbackNetwork, type LoopbackOptions, type RaftInbound, type RaftSender, type RaftTransport } from "./transport.js";
export {
  allocateRaftId,
  decodeMemberContext,
  decodeSnapshotEnvelope,
  encodeMemberContext,
  encodeSnapshotEnvelope,
  wouldBreakQuorum,
  type MembershipImage,
  type RaftMemberInfo,
  type RaftMemberStatus,
} from "./membership.js";
