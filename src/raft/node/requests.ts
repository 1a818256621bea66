// RaftNode's request queues: proposals and membership changes waiting to be fed to the core (or
// for a leader, or for the previous change to apply), proposals waiting to be applied, linearizable
// reads, and leadership transfers. Each waiter resolves, rejects or times out exactly once.
import type { ConfChange, RaftId } from "../core/types.js";
import type { Waiter } from "./waiters.js";

export type Job =
  | { kind: "propose"; data: Uint8Array; waiter: Waiter<unknown> }
  | { kind: "conf"; change: ConfChange; waiter: Waiter<unknown> };

export interface PendingProposal {
  term: number;
  waiter: Waiter<unknown>;
}

export interface PendingRead {
  waiter: Waiter<void>;
  /** Set when the ReadState arrives: the read is safe once applied reaches it. */
  readIndex?: number;
}

export class RequestQueues {
  /** Proposals and membership changes for the core, fed between Readies. */
  readonly jobs: Job[] = [];
  /** Proposals that arrived while no leader was known; retried when one is elected. */
  readonly awaitingLeader: Job[] = [];
  /**
   * Membership changes the core refused because another one (often this node's own automatic
   * promotion of a learner) is not applied yet; retried when a change is applied and on every tick,
   * until their deadline, so a join that lands during a promotion waits instead of failing.
   */
  readonly confAwaitingApply: Job[] = [];
  readonly readRequests: Uint8Array[] = [];
  /** Read contexts that arrived while no leader was known. */
  readonly readsAwaitingLeader: Uint8Array[] = [];
  readonly transfers: Array<{ to: RaftId; waiter: Waiter<void> }> = [];
  readonly transferRequests: RaftId[] = [];
  /** Proposals in the log, by index, waiting to be applied. */
  readonly pending = new Map<number, PendingProposal>();
  /** Reads by context (hex), waiting for their read index and then for the apply to reach it. */
  readonly reads = new Map<string, PendingRead>();

  /** Reads whose read index this node has applied are answered (`early`: a planted fault answers at once). */
  settleReads(appliedIndex: number, early: boolean): void {
    for (const [key, read] of this.reads) {
      if (read.waiter.settled) this.reads.delete(key);
      else if (read.readIndex !== undefined && (appliedIndex >= read.readIndex || early)) {
        this.reads.delete(key);
        read.waiter.resolve();
      }
    }
  }

  expire(nowMs: number): void {
    for (const [index, p] of this.pending) if (p.waiter.expireIfDue(nowMs) || p.waiter.settled) this.pending.delete(index);
    for (const [key, r] of this.reads) if (r.waiter.expireIfDue(nowMs) || r.waiter.settled) this.reads.delete(key);
    for (const t of this.transfers) t.waiter.expireIfDue(nowMs);
    removeSettledFrom(this.transfers);
    for (const list of [this.jobs, this.awaitingLeader, this.confAwaitingApply]) {
      for (const job of list) job.waiter.expireIfDue(nowMs);
      removeSettledFrom(list);
    }
  }

  /** Rejects everything a caller waits on (no leader for too long, stop, or failure). */
  rejectWaiting(err: Error): void {
    for (const p of this.pending.values()) p.waiter.reject(err);
    this.pending.clear();
    for (const r of this.reads.values()) r.waiter.reject(err);
    this.reads.clear();
    for (const job of this.awaitingLeader.splice(0)) job.waiter.reject(err);
    for (const job of this.confAwaitingApply.splice(0)) job.waiter.reject(err);
    this.readsAwaitingLeader.length = 0;
  }

  rejectEverything(err: Error): void {
    this.rejectWaiting(err);
    for (const job of this.jobs.splice(0)) job.waiter.reject(err);
    for (const t of this.transfers.splice(0)) t.waiter.reject(err);
    this.readRequests.length = 0;
    this.transferRequests.length = 0;
  }
}

export function removeSettledFrom<T extends { waiter: { settled: boolean } }>(list: T[]): void {
  let kept = 0;
  for (const item of list) if (!item.waiter.settled) list[kept++] = item;
  list.length = kept;
}
