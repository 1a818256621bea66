// `npm run sim -- --seeds 1000 [--seed S] [--nodes 5] [--calm]`: runs the deterministic cluster
// simulation of RaftNode over many seeds (or replays one) and prints a summary; a failure prints its
// seed and replay command. --calm runs without faults and counts elections. --workloads runs the
// leader loops (orchestrator, scheduler, constraint enforcer) under faults instead (workloads.ts);
// --prefetch runs the P2P prefetch under its bandwidth model (prefetch.ts).
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import type { RaftNodeFaults } from "../src/raft/node/index.js";
import { failureLines, runSeeds } from "./batch.js";
import { figure8Scenario } from "./scenarios.js";
import { daemonSimTiming, runSimulation } from "./simulation.js";
import { runWorkloadSim } from "./workloads.js";
import { runPrefetchSim } from "./prefetch.js";

const SCENARIOS = { figure8: figure8Scenario } as const;

/** Deliberate bugs: three in the core, the rest in the driver (RaftNodeFaults). */
const PLANTED = [
  "commitPreviousTermByCounting",
  "voteWithoutPersisting",
  "skipConflictTruncation",
  "answerVotesBeforePersist",
  "ackEntriesBeforePersist",
  "answerProposalsBeforeApply",
  "snapshotWithoutHardState",
  "serveReadsBeforeApply",
] as const;

function fail(message: string): never {
  process.stderr.write(`sim: ${message}\n`);
  process.exit(2);
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} must be a non-negative integer, got "${text}"`);
  return n;
}

const { values } = parseArgs({
  options: {
    seeds: { type: "string" },
    seed: { type: "string" },
    start: { type: "string" },
    nodes: { type: "string" },
    planted: { type: "string", multiple: true },
    "phase-ms": { type: "string" },
    trace: { type: "boolean" },
    churn: { type: "boolean" },
    calm: { type: "boolean" },
    "daemon-timing": { type: "boolean" },
    scenario: { type: "string" },
    "no-commit-rule": { type: "boolean" },
    workloads: { type: "boolean" },
    prefetch: { type: "boolean" },
    "size-mib": { type: "string" },
    faults: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
});

if (values.help) {
  process.stdout.write(
    [
      "usage: npm run sim -- [--seeds N] [--start S] [--seed S] [--nodes N] [--planted FAULT]... [--phase-ms MS] [--churn] [--calm] [--scenario S] [--no-commit-rule] [--trace]",
      "  --seeds N     run seeds S..S+N-1 (default 100); --start S sets the first (default 1)",
      "  --seed S      replay one seed; --trace prints its every event",
      "  --nodes N     cluster size (default: 5 for --seed, alternating 3 and 5 for --seeds)",
      `  --planted F   switch on a deliberate core fault: ${PLANTED.join(", ")}`,
      "  --phase-ms MS virtual length of the fault phase (default 20000)",
      "  --churn       also change membership: add learners, promote them, remove voters",
      "  --calm        no faults at all (60 s of clients on a calm network); prints elections per simulated minute",
      "  --daemon-timing  run the daemons' raft timing (elections over [1.0, 1.5) s) instead of RaftNode's defaults ([1, 2) s)",
      `  --scenario S  with --seed: run a scripted adversary instead of random faults: ${Object.keys(SCENARIOS).join(", ")}`,
      "  --no-commit-rule  skip the direct current-term commit check (only its consequences are caught)",
      "  --workloads   the leader loops under faults (zone safety, one live task per slot, convergence) instead of raft; with --seeds or --seed",
      "  --prefetch    the P2P prefetch under a bandwidth model (1 Gbit/s nodes, 10 Gbit/s origin, RTT 1 ms, 4 MiB pieces): --nodes N (default 20, zone a; a",
      "                second zone b of N/4 is added), --size-mib M (default 64), --faults (revoke one node of each zone, one corrupt peer); with --seeds or --seed",
      "",
    ].join("\n"),
  );
  process.exit(0);
}

if (values.prefetch === true) {
  const seeds = values.seed !== undefined ? [positiveInt("seed", values.seed, 1)] : Array.from({ length: positiveInt("seeds", values.seeds, 20) }, (_, i) => positiveInt("start", values.start, 1) + i);
  const nodes = Math.max(2, positiveInt("nodes", values.nodes, 20));
  const b = Math.max(1, Math.floor(nodes / 4));
  const sizeBytes = Math.max(1, positiveInt("size-mib", values["size-mib"], 64)) * 1024 * 1024;
  let failed = 0;
  for (const seed of seeds) {
    const r = runPrefetchSim({
      seed,
      zones: { a: nodes, b },
      blobBytes: sizeBytes,
      nodeBytesPerMs: 125_000,
      originBytesPerMs: 1_250_000,
      rttMs: 1,
      ...(values.faults === true ? { revoke: [{ node: 1, atMs: 50 }, { node: nodes, atMs: 100 }], corrupt: [2] } : {}),
    });
    const s = r.stats;
    const ratio = (ms: number): number => Math.round((ms / s.tPipeMs) * 1000) / 1000;
    const line = { seed, ok: r.ok, ...(r.violation ? { violation: r.violation } : {}), p50Ms: Math.round(s.p50Ms), p99Ms: Math.round(s.p99Ms), maxMs: Math.round(s.maxMs), tPipeMs: Math.round(s.tPipeMs), p50OverTPipe: ratio(s.p50Ms), p99OverTPipe: ratio(s.p99Ms), originBytes: s.originBytes, peerBytes: s.peerBytes, replans: s.replans };
    if (!r.ok) {
      failed++;
      process.stdout.write(`FAIL ${JSON.stringify(line)}\n  replay: npm run sim -- --prefetch --seed ${seed} --nodes ${nodes} --size-mib ${sizeBytes / 1024 / 1024}${values.faults === true ? " --faults" : ""}\n`);
    } else process.stdout.write(`${JSON.stringify(line)}\n`);
  }
  process.stdout.write(`prefetch: ${seeds.length - failed} passed, ${failed} failed\n`);
  process.exit(failed > 0 ? 1 : 0);
}

if (values.workloads === true) {
  const seeds = values.seed !== undefined ? [positiveInt("seed", values.seed, 1)] : Array.from({ length: positiveInt("seeds", values.seeds, 100) }, (_, i) => positiveInt("start", values.start, 1) + i);
  const startedMs = performance.now();
  let failed = 0;
  for (const seed of seeds) {
    const r = await runWorkloadSim({ seed });
    if (!r.ok) {
      failed++;
      process.stdout.write(`FAIL seed=${seed}: ${r.violation}\n  replay: npm run sim -- --workloads --seed ${seed}\n`);
    } else if (seeds.length === 1) {
      process.stdout.write(`seed ${seed}: passed ${JSON.stringify(r.stats)}\n`);
    }
  }
  const minutes = (performance.now() - startedMs) / 60_000;
  process.stdout.write(`workloads: ${seeds.length - failed} passed, ${failed} failed (${Math.round(seeds.length / Math.max(minutes, 1e-9))} seeds/min)\n`);
  process.exit(failed > 0 ? 1 : 0);
}

const faults: RaftNodeFaults = {};
for (const name of values.planted ?? []) {
  if (!(PLANTED as readonly string[]).includes(name)) fail(`unknown --planted fault "${name}"; known: ${PLANTED.join(", ")}`);
  faults[name as (typeof PLANTED)[number]] = true;
}
const plantedFaults = Object.keys(faults).length > 0 ? faults : undefined;
const churn = values.churn === true;
const calm = values.calm === true;
const timing = values["daemon-timing"] === true ? daemonSimTiming() : undefined;
if (calm && (churn || values.planted !== undefined || values.scenario !== undefined)) fail("--calm runs without faults: it does not combine with --churn, --planted or --scenario");
const safetyPhaseMs = values["phase-ms"] !== undefined ? positiveInt("phase-ms", values["phase-ms"], 0) : undefined;

if (values.scenario !== undefined && !(values.scenario in SCENARIOS)) {
  fail(`unknown --scenario "${values.scenario}"; known: ${Object.keys(SCENARIOS).join(", ")}`);
}
if (values.scenario !== undefined && values.seed === undefined) fail("--scenario replays one run: give it a --seed");

if (values.seed !== undefined) {
  const seed = positiveInt("seed", values.seed, 1);
  const nodes = positiveInt("nodes", values.nodes, 5);
  const scenario = values.scenario !== undefined ? SCENARIOS[values.scenario as keyof typeof SCENARIOS]() : undefined;
  const result = await runSimulation({
    seed,
    nodes,
    churn,
    calm,
    ...(timing ? { timing } : {}),
    ...(scenario ? { scenario } : {}),
    ...(values["no-commit-rule"] ? { checkCommitRule: false } : {}),
    ...(plantedFaults ? { faults: plantedFaults } : {}),
    ...(safetyPhaseMs !== undefined ? { safetyPhaseMs } : {}),
    ...(values.trace ? { trace: (line: string) => process.stdout.write(line + "\n") } : {}),
  });
  const s = result.stats;
  if (result.ok) {
    process.stdout.write(
      `seed ${seed} nodes=${nodes}: passed (${s.opsInvoked} ops: ${s.opsOk} ok, ${s.opsFailed} failed, ${s.opsUnknown} unknown, ${s.readIndexReads} ReadIndex reads; ` +
        `${s.elections} elections, ${s.crashes} crashes, ${s.confChanges} membership changes, ${s.snapshotsSent} snapshots sent, ${s.events} events, ${s.virtualMs} virtual ms; trace ${result.traceHash.slice(0, 16)})\n`,
    );
  } else {
    const extraFlags = `${values.scenario !== undefined ? ` --scenario ${values.scenario}` : ""}${values["no-commit-rule"] ? " --no-commit-rule" : ""}${timing ? " --daemon-timing" : ""}`;
    process.stdout.write(failureLines(result, plantedFaults, safetyPhaseMs, churn, extraFlags).join("\n") + "\n");
    process.exitCode = 1;
  }
} else {
  const seedCount = positiveInt("seeds", values.seeds, 100);
  const firstSeed = positiveInt("start", values.start, 1);
  const nodeCounts = values.nodes !== undefined ? [positiveInt("nodes", values.nodes, 5)] : [3, 5];
  const startedMs = performance.now();
  const summary = await runSeeds({
    firstSeed,
    seedCount,
    nodeCounts,
    churn,
    calm,
    ...(timing ? { timing } : {}),
    ...(plantedFaults ? { faults: plantedFaults } : {}),
    ...(safetyPhaseMs !== undefined ? { safetyPhaseMs } : {}),
    onResult: (r) => {
      if (!r.ok) process.stdout.write(failureLines(r, plantedFaults, safetyPhaseMs, churn, timing ? " --daemon-timing" : "").join("\n") + "\n");
    },
  });
  const minutes = (performance.now() - startedMs) / 60_000;
  const perMinute = Math.round(seedCount / Math.max(minutes, 1e-9));
  process.stdout.write(
    `seeds ${summary.firstSeed}..${summary.lastSeed}: ${summary.passed} passed, ${summary.failed.length} failed ` +
      `(${summary.ops} ops, ${summary.elections} elections, ${summary.crashes} crashes` +
      `${churn ? `, ${summary.confChanges} membership changes` : ""}` +
      `${summary.corruptLogStops > 0 ? `, ${summary.corruptLogStops} nodes refused a corrupted log` : ""}; ${perMinute} seeds/min)\n` +
      (calm
        ? `calm: ${summary.elections - (summary.lastSeed - summary.firstSeed + 1)} elections beyond each run's first in ${(summary.virtualMs / 60_000).toFixed(1)} simulated minutes ` +
          `(${((summary.elections - (summary.lastSeed - summary.firstSeed + 1)) / (summary.virtualMs / 60_000)).toFixed(3)} per simulated minute; ${summary.elections} elections in all)\n`
        : "") +
      (summary.undecidedKeys > 0 ? `warning: ${summary.undecidedKeys} key histories were too large to decide linearizability\n` : ""),
  );
  if (summary.failed.length > 0) process.exitCode = 1;
}
