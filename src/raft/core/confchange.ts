// Binary encoding of ConfChange entry data and the membership rules it is checked against:
// version byte, type byte, 8-byte big-endian node ID, then the opaque context.
import { ShoalError } from "../../base/errors.js";
import { ConfChangeType, NO_NODE, type ConfChange, type ConfState, type RaftId } from "./types.js";

const CONF_CHANGE_VERSION = 1;
const HEADER_BYTES = 10;
const MAX_ID = (1n << 64n) - 1n;

export function encodeConfChange(change: ConfChange): Uint8Array {
  if (change.nodeId <= NO_NODE || change.nodeId > MAX_ID) {
    throw new ShoalError("INVALID_ARGUMENT", "a conf change needs a non-zero 64-bit node ID");
  }
  const out = new Uint8Array(HEADER_BYTES + change.context.length);
  out[0] = CONF_CHANGE_VERSION;
  out[1] = change.type;
  new DataView(out.buffer).setBigUint64(2, change.nodeId);
  out.set(change.context, HEADER_BYTES);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length < HEADER_BYTES || data[0] !== CONF_CHANGE_VERSION) {
    throw new ShoalError("RAFT_LOG_CORRUPT", `conf change entry of ${data.length} bytes is malformed or of an unknown version; the log is damaged`);
  }
  const type = data[1]!;
  if (type !== ConfChangeType.AddLearner && type !== ConfChangeType.PromoteLearner && type !== ConfChangeType.RemoveNode) {
    throw new ShoalError("RAFT_LOG_CORRUPT", `conf change entry has unknown type ${type}; the log is damaged`);
  }
  const nodeId = new DataView(data.buffer, data.byteOffset, data.byteLength).getBigUint64(2);
  return { type, nodeId, context: data.slice(HEADER_BYTES) };
}

/** Membership as the core tracks it: voters, learners, and IDs that may never come back. */
export class Membership {
  readonly voters = new Set<RaftId>();
  readonly learners = new Set<RaftId>();
  readonly removed = new Set<RaftId>();
  /** Sorted voter list, cached because quorum arithmetic reads it on every acknowledgement. */
  voterList: RaftId[] = [];

  constructor(state: ConfState) {
    this.reset(state);
  }

  reset(state: ConfState): void {
    this.voters.clear();
    this.learners.clear();
    this.removed.clear();
    for (const id of state.voters) this.voters.add(id);
    for (const id of state.learners) if (!this.voters.has(id)) this.learners.add(id);
    for (const id of state.removed ?? []) this.removed.add(id);
    this.refresh();
  }

  private refresh(): void {
    this.voterList = [...this.voters].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  isMember(id: RaftId): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  /** Why `change` cannot be proposed now, or undefined if it can. */
  refusal(change: ConfChange): string | undefined {
    const id = change.nodeId;
    switch (change.type) {
      case ConfChangeType.AddLearner:
        if (this.removed.has(id)) return `node ${id} was removed from the cluster and its ID can never rejoin; use a new ID`;
        if (this.isMember(id)) return `node ${id} is already a member`;
        return undefined;
      case ConfChangeType.PromoteLearner:
        if (!this.learners.has(id)) return `node ${id} is not a learner; add it as a learner first`;
        return undefined;
      case ConfChangeType.RemoveNode:
        if (!this.isMember(id)) return `node ${id} is not a member`;
        if (this.voters.has(id) && this.voters.size === 1) return `node ${id} is the last voter; removing it would leave no quorum`;
        return undefined;
    }
  }

  /** Apply a committed change. Deterministic and idempotent: a change that no longer fits is a no-op. */
  apply(change: ConfChange): void {
    const id = change.nodeId;
    switch (change.type) {
      case ConfChangeType.AddLearner:
        if (!this.removed.has(id) && !this.voters.has(id)) this.learners.add(id);
        break;
      case ConfChangeType.PromoteLearner:
        if (this.learners.has(id)) {
          this.learners.delete(id);
          this.voters.add(id);
        }
        break;
      case ConfChangeType.RemoveNode:
        this.voters.delete(id);
        this.learners.delete(id);
        this.removed.add(id);
        break;
    }
    this.refresh();
  }

  toConfState(): ConfState {
    const sort = (ids: Iterable<RaftId>): RaftId[] => [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const state: ConfState = { voters: sort(this.voters), learners: sort(this.learners) };
    if (this.removed.size > 0) state.removed = sort(this.removed);
    return state;
  }
}
