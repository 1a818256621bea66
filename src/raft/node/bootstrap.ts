// Bootstrap and load: checks the options, opens the durable log, writes the founding (or joining)
// snapshot on brand-new storage, and turns what was loaded into what the core and the membership
// table start from. The one place that knows the concrete storage class.
import { ShoalError } from "../../base/errors.js";
import { RaftLogStorage } from "../../storage/raft-log.js";
import { NO_NODE, type ConfState, type RaftId, type SnapshotMetadata } from "../core/types.js";
import { assertValidRaftId, decodeSnapshotEnvelope, encodeSnapshotEnvelope, type RaftMemberInfo } from "./membership.js";
import type { DurableRaftLog, RaftNodeOptions } from "./options.js";

export type LoadedRaftLog = Awaited<ReturnType<DurableRaftLog["load"]>>;

export const EMPTY_CONF: ConfState = { voters: [], learners: [] };

export function validateStartOptions(options: RaftNodeOptions): void {
  assertValidRaftId(options.id, "raft ID");
  if (!((options.tickMs ?? 100) >= 1) || !((options.electionTicks ?? 10) >= 2) || !((options.heartbeatTicks ?? 1) >= 1)) {
    throw new ShoalError("INVALID_ARGUMENT", "tickMs and heartbeatTicks must be at least 1 and electionTicks at least 2");
  }
  if ((options.heartbeatTicks ?? 1) >= (options.electionTicks ?? 10)) {
    throw new ShoalError("INVALID_ARGUMENT", "heartbeatTicks must be smaller than electionTicks, or followers time out between heartbeats");
  }
}

/** The log the caller opened, or the one kept in the manager's encrypted store. */
export async function openDurableLog(options: RaftNodeOptions): Promise<DurableRaftLog> {
  if (options.log !== undefined) return options.log;
  if (options.dataStore !== undefined) return RaftLogStorage.open(options.dataStore);
  throw new ShoalError("INVALID_ARGUMENT", "RaftNode.start needs a dataStore (or an opened log)");
}

/** Loads the log; brand-new storage first gets the founding snapshot (bootstrap) or the joiner's seed. */
export async function loadOrFound(log: DurableRaftLog, options: RaftNodeOptions): Promise<LoadedRaftLog> {
  let loaded = await log.load();
  const fresh = loaded.hardState.term === 0 && loaded.snapshot === undefined && loaded.entries.length === 0;
  if (fresh) {
    if (options.bootstrap !== undefined) {
      // A new cluster starts from a founding snapshot at index 1 (term 1) holding its voters and
      // their addresses. Joiners are then always caught up by that snapshot first, so they learn
      // the founding membership, which no log entry carries.
      const members = options.bootstrap.members;
      for (const m of members) assertValidRaftId(m.raftId, "member raft ID");
      if (!members.some((m) => m.raftId === options.id)) {
        throw new ShoalError("INVALID_ARGUMENT", `bootstrap members must include this node (raft ID ${options.id})`);
      }
      const founding = {
        metadata: { index: 1, term: 1, confState: { voters: members.map((m) => m.raftId), learners: [] } },
        data: encodeSnapshotEnvelope({ members, removedIds: [] }, undefined),
      };
      await log.save({ hardState: { term: 1, vote: NO_NODE, commit: 1 }, entries: [], snapshot: founding });
    } else if (options.join !== undefined) {
      // A joiner records what it was told at index 0; the leader's snapshot replaces it.
      for (const m of options.join.members) assertValidRaftId(m.raftId, "member raft ID");
      const seed = {
        metadata: { index: 0, term: 0, confState: EMPTY_CONF },
        data: encodeSnapshotEnvelope({ members: options.join.members, removedIds: options.join.removedIds ?? [] }, undefined),
      };
      await log.save({ entries: [], snapshot: seed });
    } else {
      throw new ShoalError("FAILED_PRECONDITION", "the data store holds no raft state: bootstrap a new cluster or join an existing one");
    }
    loaded = await log.load();
  }
  return loaded;
}

export interface RestoredSnapshot {
  members: RaftMemberInfo[];
  removedIds: RaftId[];
  /** The snapshot the core starts from (index > 0), its confState carrying the removed IDs. */
  snapshot?: SnapshotMetadata;
  snapshotData?: Uint8Array;
  /** The state machine's image inside it, if any (the founding snapshot has none). */
  appData?: Uint8Array;
  /** A joiner's seed (index 0) gives only the membership it was told about. */
  initialConfState: ConfState;
}

export function restoreFromSnapshot(loaded: LoadedRaftLog): RestoredSnapshot {
  if (loaded.snapshot === undefined) return { members: [], removedIds: [], initialConfState: EMPTY_CONF };
  const { image, appData } = decodeSnapshotEnvelope(loaded.snapshot.data);
  const removed = new Set(image.removedIds);
  const meta = loaded.snapshot.metadata;
  if (meta.index === 0) return { members: image.members, removedIds: image.removedIds, initialConfState: withRemoved(meta.confState, removed) };
  return {
    members: image.members,
    removedIds: image.removedIds,
    snapshot: { ...meta, confState: withRemoved(meta.confState, removed) },
    snapshotData: loaded.snapshot.data,
    ...(appData !== undefined ? { appData } : {}),
    initialConfState: EMPTY_CONF,
  };
}

/** Storage may keep only voters and learners; the envelope's removed IDs are authoritative too. */
function withRemoved(c: ConfState, removed: ReadonlySet<RaftId>): ConfState {
  const all = new Set<RaftId>([...(c.removed ?? []), ...removed]);
  const out: ConfState = { voters: [...c.voters], learners: [...c.learners] };
  if (all.size > 0) out.removed = [...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return out;
}
