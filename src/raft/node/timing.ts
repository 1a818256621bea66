// The daemon's Raft timing: what a cluster is created with unless `init` says otherwise, and how the
// election timeout's random part follows from it. Here, below the manager, so that the simulator
// can run the same timing as the daemons (npm run sim -- --daemon-timing).

export interface RaftTiming {
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
}

/**
 * 10 ms ticks, heartbeats every 100 ms, election timeout randomized over [800, 1200) ms at 10 ms
 * resolution (see electionJitterTicks). With 100 ms ticks over [1, 2) s two survivors drew the same
 * tick often enough to split the vote in about 3 % of failovers, and the minimum of two draws put
 * the median failover near 1.4 s; targets in DESIGN.md §4, figures from
 * scripts/bench/cluster-failover.ts in the notes of issue 8.
 */
export const DEFAULT_RAFT_TIMING: RaftTiming = { tickMs: 10, electionTicks: 80, heartbeatTicks: 10 };

/**
 * The election timeout's random part is half the minimum: [E, 1.5 E). The minimum (800 ms by
 * default, 8 missed heartbeats) is what tolerates a stalled process; the width only has to separate
 * two candidates by more than a round trip, which 400 ms at 10 ms resolution does, and a split vote
 * that still happens is retried within [1, E/2) ticks (RaftCore.shortenAfterRejection).
 */
export function electionJitterTicks(timing: RaftTiming): number {
  return Math.max(1, Math.floor(timing.electionTicks / 2));
}
