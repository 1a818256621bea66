// RaftNode's membership bookkeeping: the applied configuration, every member's address, the IDs
// removed for good, when each voter was last heard from, and which learner is ready for promotion.
// It keeps the transport's peer list in step with the membership.
import { ConfChangeType, type ConfChange, type ConfState, type RaftId, type Status } from "../core/types.js";
import { decodeMemberContext, describeMembers, type MembershipImage, type RaftMemberInfo, type RaftMemberStatus } from "./membership.js";
import type { MembershipChange } from "./options.js";
import type { RaftSender, RaftTransport } from "./transport.js";

export class MemberTable {
  private conf: ConfState = { voters: [], learners: [] };
  private readonly infos = new Map<RaftId, RaftMemberInfo>();
  private readonly removed = new Set<RaftId>();
  private readonly lastHeardMs = new Map<RaftId, number>();
  /**
   * Addresses of peers that are not (yet) members here, learned from their own messages: a member
   * that lags behind the AddLearner of the node that now leads (or was restored from an older
   * snapshot) must still be able to answer it, or it never catches up (the simulator's churn runs
   * found this: replies dropped as to an unknown peer). Never for a removed ID; a member's own
   * entry replaces it.
   */
  private readonly learned = new Map<RaftId, RaftSender>();

  constructor(
    private readonly selfId: RaftId,
    private readonly transport: RaftTransport,
  ) {}

  /** The applied configuration (read only). */
  get confState(): ConfState {
    return this.conf;
  }

  /** What the loaded snapshot said, before the core exists; then `start` with the core's configuration. */
  load(members: readonly RaftMemberInfo[], removedIds: readonly RaftId[]): void {
    for (const m of members) this.infos.set(m.raftId, m);
    for (const id of removedIds) this.removed.add(id);
  }

  start(conf: ConfState): void {
    this.conf = cloneConf(conf);
    for (const m of this.infos.values()) if (m.raftId !== this.selfId) this.transport.addPeer(m.raftId, m.addr);
  }

  addr(id: RaftId): string | undefined {
    return this.infos.get(id)?.addr ?? this.learned.get(id)?.addr;
  }

  /**
   * A message arrived from `id`, which says it is reached at `addr`. Remembered (and the transport
   * told) only when this node has no address for it and has not removed it. Returns whether the
   * address was taken.
   */
  learn(id: RaftId, hint: RaftSender): boolean {
    if (id === this.selfId || this.removed.has(id) || this.infos.has(id)) return false;
    if (this.learned.get(id)?.addr === hint.addr) return false;
    this.learned.set(id, { ...hint });
    this.transport.addPeer(id, hint.addr);
    return true;
  }

  isMember(id: RaftId): boolean {
    return this.conf.voters.includes(id) || this.conf.learners.includes(id);
  }

  isRemoved(id: RaftId): boolean {
    return this.removed.has(id);
  }

  describe(): RaftMemberStatus[] {
    return describeMembers(this.conf, this.infos);
  }

  removedIds(): RaftId[] {
    return [...this.removed];
  }

  /** The node-level part of a snapshot (see encodeSnapshotEnvelope). */
  image(): MembershipImage {
    return { members: [...this.infos.values()], removedIds: [...this.removed] };
  }

  heard(id: RaftId, nowMs: number): void {
    this.lastHeardMs.set(id, nowMs);
  }

  /** Voters heard from within `windowMs` (this node included). */
  reachableVoters(nowMs: number, windowMs: number): Set<RaftId> {
    const out = new Set<RaftId>([this.selfId]);
    for (const v of this.conf.voters) {
      const heard = this.lastHeardMs.get(v);
      if (heard !== undefined && nowMs - heard <= windowMs) out.add(v);
    }
    return out;
  }

  /** A membership change was applied and the core returned `conf`. */
  applied(change: ConfChange, conf: ConfState): MembershipChange {
    this.conf = cloneConf(conf);
    for (const id of conf.removed ?? []) this.removed.add(id);
    if (change.type === ConfChangeType.AddLearner) {
      const info = decodeMemberContext(change.context, change.nodeId);
      if (info !== undefined) {
        this.learned.delete(info.raftId);
        this.infos.set(info.raftId, info);
        if (info.raftId !== this.selfId) this.transport.addPeer(info.raftId, info.addr);
      }
    } else if (change.type === ConfChangeType.RemoveNode) {
      this.infos.delete(change.nodeId);
      this.learned.delete(change.nodeId);
      this.removed.add(change.nodeId);
      this.lastHeardMs.delete(change.nodeId);
      if (change.nodeId !== this.selfId) this.transport.removePeer(change.nodeId);
    }
    return {
      confState: cloneConf(this.conf),
      members: this.describe(),
      change: { type: change.type, raftId: change.nodeId },
      removedSelf: change.type === ConfChangeType.RemoveNode && change.nodeId === this.selfId,
    };
  }

  /** A snapshot from the leader replaced the membership. */
  restored(image: MembershipImage, conf: ConfState): MembershipChange {
    const previous = new Map(this.infos);
    this.infos.clear();
    for (const m of image.members) this.infos.set(m.raftId, m);
    for (const id of image.removedIds) this.removed.add(id);
    for (const id of conf.removed ?? []) this.removed.add(id);
    // A snapshot can be older than what this node already knows: a joiner learns every member's
    // address from the join answer and may then be sent the founding snapshot, which names only the
    // first manager. Forgetting the others' addresses left it unable to answer a leader it was never
    // told about again (its replies dropped as to an unknown peer: a learner that never caught up,
    // seen as "w1 to be a raft voter" timing out in CI). An address goes only with a removal.
    for (const [id, info] of previous) if (!this.infos.has(id) && !this.removed.has(id)) this.infos.set(id, info);
    for (const id of previous.keys()) if (!this.infos.has(id) && id !== this.selfId) this.transport.removePeer(id);
    for (const m of this.infos.values()) if (m.raftId !== this.selfId) this.transport.addPeer(m.raftId, m.addr);
    for (const id of [...this.learned.keys()]) {
      if (this.infos.has(id)) this.learned.delete(id);
      else if (this.removed.has(id)) {
        this.learned.delete(id);
        this.transport.removePeer(id);
      }
    }
    this.conf = cloneConf(conf);
    return {
      confState: cloneConf(this.conf),
      members: this.describe(),
      removedSelf: !this.isMember(this.selfId) && this.removed.has(this.selfId),
    };
  }

  /** A learner the leader has brought within `withinEntries` of its log (and not by a snapshot in flight). */
  promotionCandidate(status: Status, withinEntries: number): RaftId | undefined {
    for (const learner of this.conf.learners) {
      const progress = status.progress.get(learner);
      if (progress === undefined || progress.state === "snapshot" || progress.match === 0) continue;
      if (progress.match + withinEntries < status.lastIndex) continue;
      return learner;
    }
    return undefined;
  }
}

export function cloneConf(c: ConfState): ConfState {
  const out: ConfState = { voters: [...c.voters], learners: [...c.learners] };
  if (c.removed !== undefined && c.removed.length > 0) out.removed = [...c.removed];
  return out;
}
