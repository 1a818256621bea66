// Leader redirection (DESIGN.md §1): a follower answers agent and joiner calls with UNAVAILABLE, the
// stable code NOT_LEADER and metadata `shoal-leader-addr`; clients follow the hint a bounded number
// of hops and reconnect.
import * as grpc from "@grpc/grpc-js";
import { ShoalError } from "../base/errors.js";
import type { Clock } from "../base/clock.js";
import { fromGrpcError, LEADER_ADDR_METADATA, leaderAddrOf, toGrpcError } from "./errors.js";

export const DEFAULT_MAX_LEADER_HOPS = 3;

/** The error a follower's handler returns (callback or emit("error")); `leaderAddr` undefined while no leader is known. */
export function notLeaderError(leaderAddr: string | undefined): Partial<grpc.StatusObject> & Error {
  const message = leaderAddr
    ? `this manager is not the leader; retry at ${leaderAddr}`
    : "this manager is not the leader and no leader is known yet; retry in a moment";
  return toGrpcError(new ShoalError("NOT_LEADER", message), leaderAddr ? { [LEADER_ADDR_METADATA]: leaderAddr } : undefined);
}

/** The leader address a refused call pointed at, looking through a ShoalError's cause as well. */
export function leaderHintOf(err: unknown): string | undefined {
  return leaderAddrOf(err) ?? (err instanceof ShoalError ? leaderAddrOf(err.cause) : undefined);
}

export interface Closable {
  close(): void;
}

export interface LeaderRedirectOptions<C extends Closable, T> {
  address: string;
  /** Opens a connection to one manager. */
  connect: (address: string) => C;
  call: (connection: C) => Promise<T>;
  /** Redirects followed before giving up (default 3). */
  maxHops?: number;
}

/**
 * Runs `call` against `address`, following leader hints. Returns the result with the connection that
 * produced it (the caller owns it and should keep using it); every other connection is closed.
 */
export async function callWithLeaderRedirect<C extends Closable, T>(opts: LeaderRedirectOptions<C, T>): Promise<{ value: T; connection: C; address: string }> {
  const maxHops = opts.maxHops ?? DEFAULT_MAX_LEADER_HOPS;
  if (!Number.isInteger(maxHops) || maxHops < 0 || maxHops > 16) throw new ShoalError("INVALID_ARGUMENT", "maxHops must be an integer from 0 to 16");
  let address = opts.address;
  for (let hop = 0; ; hop++) {
    const connection = opts.connect(address);
    try {
      return { value: await opts.call(connection), connection, address };
    } catch (err) {
      connection.close();
      const hint = leaderHintOf(err);
      if (hint === undefined || hint === address) throw fromGrpcError(err);
      if (hop >= maxHops) {
        throw new ShoalError("NOT_LEADER", `gave up after following ${maxHops} leader redirects (last hint ${hint}); the cluster may be electing a leader, retry later`, { cause: err });
      }
      address = hint;
    }
  }
}

/** Codes that mean "the cluster is between leaders": worth retrying after a moment. */
const ELECTION_CODES = new Set(["NOT_LEADER", "NO_QUORUM"]);

export interface ElectionRetryOptions {
  clock: Pick<Clock, "nowMs" | "sleep">;
  /** How long to keep retrying before the last error is thrown. */
  budgetMs: number;
  /** Told about each retry (for a log line). */
  onRetry?: (err: ShoalError, delayMs: number) => void;
}

/**
 * Runs `attempt` again, with backoff from 250 ms to 2 s, while it fails with NOT_LEADER or NO_QUORUM
 * and the budget lasts: a join (or any one-shot call an operator starts) that lands in a brief
 * election then succeeds instead of failing (seen under load: a manager joining while the cluster
 * re-elected). Any other error is thrown at once.
 */
export async function retryWhileElecting<T>(opts: ElectionRetryOptions, attempt: () => Promise<T>): Promise<T> {
  const deadlineMs = opts.clock.nowMs() + opts.budgetMs;
  for (let delayMs = 250; ; delayMs = Math.min(2000, 2 * delayMs)) {
    try {
      return await attempt();
    } catch (err) {
      const shoal = err instanceof ShoalError ? err : fromGrpcError(err);
      if (!ELECTION_CODES.has(shoal.code) || opts.clock.nowMs() + delayMs > deadlineMs) throw err;
      opts.onRetry?.(shoal, delayMs);
      await opts.clock.sleep(delayMs);
    }
  }
}
