// Runs a range of seeds and sums their results: shared by `npm run sim`, the CI test and the benchmark.
import type { RaftNodeFaults } from "../src/raft/node/index.js";
import { replayCommand, runSimulation, type SimResult, type SimTiming } from "./simulation.js";

export interface BatchOptions {
  firstSeed: number;
  seedCount: number;
  /** Node counts to cycle through, one per seed (e.g. [3, 5]). */
  nodeCounts: number[];
  faults?: RaftNodeFaults;
  safetyPhaseMs?: number;
  churn?: boolean;
  /** No faults (see SimOptions.calm). */
  calm?: boolean;
  /** Raft timing of every node (see SimOptions.timing). */
  timing?: SimTiming;
  /** Stop at the first failing seed (the planted-fault tests want the first catch). */
  stopOnFailure?: boolean;
  onResult?: (result: SimResult) => void;
}

export interface BatchSummary {
  firstSeed: number;
  lastSeed: number;
  passed: number;
  failed: SimResult[];
  ops: number;
  elections: number;
  crashes: number;
  events: number;
  confChanges: number;
  /** Virtual milliseconds simulated, over all seeds. */
  virtualMs: number;
  corruptLogStops: number;
  /** Keys whose linearizability search ran out of budget: neither proven nor refuted. */
  undecidedKeys: number;
}

export async function runSeeds(options: BatchOptions): Promise<BatchSummary> {
  const summary: BatchSummary = { firstSeed: options.firstSeed, lastSeed: options.firstSeed - 1, passed: 0, failed: [], ops: 0, elections: 0, crashes: 0, events: 0, confChanges: 0, virtualMs: 0, corruptLogStops: 0, undecidedKeys: 0 };
  for (let i = 0; i < options.seedCount; i++) {
    const seed = options.firstSeed + i;
    const nodes = options.nodeCounts[i % options.nodeCounts.length]!;
    const result = await runSimulation({
      seed,
      nodes,
      ...(options.faults ? { faults: options.faults } : {}),
      ...(options.safetyPhaseMs !== undefined ? { safetyPhaseMs: options.safetyPhaseMs } : {}),
      ...(options.churn ? { churn: true } : {}),
      ...(options.calm ? { calm: true } : {}),
      ...(options.timing ? { timing: options.timing } : {}),
    });
    summary.lastSeed = seed;
    summary.ops += result.stats.opsInvoked;
    summary.elections += result.stats.elections;
    summary.crashes += result.stats.crashes;
    summary.events += result.stats.events;
    summary.confChanges += result.stats.confChanges;
    summary.virtualMs += result.stats.virtualMs;
    summary.corruptLogStops += result.stats.corruptLogStops;
    summary.undecidedKeys += result.stats.linearizabilityExhaustedKeys;
    if (result.ok) summary.passed++;
    else summary.failed.push(result);
    options.onResult?.(result);
    if (!result.ok && options.stopOnFailure) break;
  }
  return summary;
}

/** The two lines a failed seed prints; `extraFlags` carries run options the replay must repeat. */
export function failureLines(result: SimResult, faults?: RaftNodeFaults, safetyPhaseMs?: number, churn?: boolean, extraFlags = ""): string[] {
  return [
    `FAIL seed=${result.seed} nodes=${result.nodes}: ${result.violation}`,
    `replay: ${replayCommand(result.seed, result.nodes, faults, safetyPhaseMs, churn)}${extraFlags}`,
  ];
}
