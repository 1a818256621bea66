// Majority arithmetic over the voter set: the highest index a majority has, and election tallies.
import type { RaftId } from "./types.js";

export type VoteResult = "won" | "lost" | "pending";

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/** The largest index that a majority of voters has matched (0 with no voters). */
export function committedIndex(voters: readonly RaftId[], matchOf: (id: RaftId) => number): number {
  const n = voters.length;
  if (n === 0) return 0;
  if (n === 1) return matchOf(voters[0]!);
  const matches = new Array<number>(n);
  for (let i = 0; i < n; i++) matches[i] = matchOf(voters[i]!);
  matches.sort((a, b) => b - a);
  return matches[majority(n) - 1]!;
}

export function voteResult(voters: readonly RaftId[], votes: ReadonlyMap<RaftId, boolean>): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const q = majority(voters.length);
  if (granted >= q) return "won";
  if (voters.length - rejected < q) return "lost";
  return "pending";
}

/** True if the set `acked` (which must include the leader itself when it counts) is a majority. */
export function hasQuorum(voters: readonly RaftId[], acked: (id: RaftId) => boolean): boolean {
  let n = 0;
  for (const id of voters) if (acked(id)) n++;
  return n >= majority(voters.length);
}
