// The daemon's Raft timing: what a cluster is created with unless `init` says otherwise, and how the
// election timeout's random part follows from it. Here, below the manager, so that the simulator
// can run the same timing as the daemons (npm run sim -- --daemon-timing).

export interface RaftTiming {
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
}

/**
 * 100 ms ticks, heartbeats every tick, election timeout randomized over [1.0, 1.5) s (see
 * electionJitterTicks). This is what the failover benchmark measured against DESIGN.md §4's targets
 * (scripts/bench/cluster-failover.ts, 50 rounds with 3 and with 5 managers, in the notes of issue 8),
 * together with the split-vote retry and the lease one heartbeat shorter than the minimum timeout in
 * the core. 10 ms ticks (randomization at 10 ms resolution) were tried in process and elect about as
 * fast; they are not the default because they were not measured with real daemons.
 */
export const DEFAULT_RAFT_TIMING: RaftTiming = { tickMs: 100, electionTicks: 10, heartbeatTicks: 1 };

/**
 * The election timeout's random part is half the minimum: [E, 1.5 E). The minimum (1 s by default,
 * 10 missed heartbeats) is what tolerates a stalled process, and the median failover is about the
 * minimum of the survivors' draws, so a narrower range brings it down; two survivors that still draw
 * the same tick split the vote, which is retried within [1, E/2) ticks
 * (RaftCore.shortenAfterRejection) instead of a whole new timeout.
 */
export function electionJitterTicks(timing: RaftTiming): number {
  return Math.max(1, Math.floor(timing.electionTicks / 2));
}
