// The ordering rules of RaftNode's Ready loop, one function each: what of a Ready must be durable
// before what leaves, what may leave before the save, and what may be applied while it runs. The
// loop (node.ts) persists, sends, applies and advances as these say; the simulator's seeds check
// them (cluster-sim/planted.test.ts breaks each one on purpose).
import { EntryType, MessageType, type Entry, type HardState, type Message, type Ready } from "../core/types.js";
import type { RaftNodeFaults } from "./options.js";

/** Term and vote as last written to storage. */
export interface PersistedVote {
  term: number;
  vote: bigint;
}

/**
 * A hard state whose only change is the commit index need not be durable before anything (Raft
 * re-learns commit from the leader), so it rides along with the next write instead of costing an
 * fsync of its own: that takes one fsync off every proposal's critical path. Returns the hard
 * state to write with this Ready and the one still deferred.
 */
export function hardStateToSave(rd: Ready, deferred: HardState | undefined, faults: RaftNodeFaults): { save: HardState | undefined; deferred: HardState | undefined } {
  let save = rd.hardState;
  if (save !== undefined && !rd.mustSync && rd.entries.length === 0 && rd.snapshot === undefined) {
    return { save: undefined, deferred: save };
  }
  if (save === undefined && (rd.entries.length > 0 || rd.snapshot !== undefined)) save = deferred;
  // A snapshot from the leader is written with the hard state of its Ready (etcd's contract).
  if (rd.snapshot !== undefined && faults.snapshotWithoutHardState === true) save = undefined;
  return { save, deferred };
}

/**
 * A leader's appends and heartbeats may leave before its own fsync, so followers write in
 * parallel with it instead of after it (Raft thesis §10.2.1; etcd's leader does the same): the
 * core counts the leader's own entries toward commit only at advance(), after they are durable,
 * so an entry still commits only once a majority holds it on disk. Not when this Ready changes
 * term or vote (a message of a term this node could forget in a crash must not go out), nor for
 * any other message: votes and append/heartbeat responses always wait for persistence.
 */
export function sendsBeforePersist(rd: Ready, isLeader: boolean, persisted: PersistedVote): boolean {
  if (!isLeader || rd.snapshot !== undefined) return false;
  const hs = rd.hardState;
  return hs === undefined || (hs.term === persisted.term && hs.vote === persisted.vote);
}

/** Which messages of this Ready may leave before its save (see sendsBeforePersist, and RaftNodeFaults). */
export function earlyMessageFilter(rd: Ready, isLeader: boolean, persisted: PersistedVote, faults: RaftNodeFaults): ((m: Message) => boolean) | undefined {
  if (faults.answerVotesBeforePersist !== true && faults.ackEntriesBeforePersist !== true) {
    return sendsBeforePersist(rd, isLeader, persisted) ? isAppendOrHeartbeat : undefined;
  }
  const early = new Set<MessageType>();
  if (sendsBeforePersist(rd, isLeader, persisted)) early.add(MessageType.Append).add(MessageType.Heartbeat);
  if (faults.answerVotesBeforePersist === true) early.add(MessageType.VoteResponse);
  if (faults.ackEntriesBeforePersist === true) early.add(MessageType.AppendResponse);
  return (m) => early.has(m.type);
}

/**
 * Committed entries this node already holds on disk (below the first entry of this Ready) are
 * applied while the save runs, so their proposers are answered one fsync earlier (etcd applies in
 * parallel with its WAL write the same way). They are committed, so a majority has them durably,
 * and the local copy is durable too. Membership changes and anything at or above this Ready's
 * entries wait for the save, as does everything when a snapshot is being installed. Returns how
 * many of `rd.committedEntries`, from the first, may be applied early.
 */
export function appliedWhileSaving(rd: Ready): number {
  if (rd.snapshot !== undefined) return 0;
  const firstNewIndex = rd.entries.length > 0 ? rd.entries[0]!.index : Number.POSITIVE_INFINITY;
  let count = 0;
  for (const entry of rd.committedEntries as Entry[]) {
    if (entry.index >= firstNewIndex || entry.type === EntryType.ConfChange) break;
    count++;
  }
  return count;
}

function isAppendOrHeartbeat(m: Message): boolean {
  return m.type === MessageType.Append || m.type === MessageType.Heartbeat;
}
