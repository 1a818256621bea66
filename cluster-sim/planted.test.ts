// Each deliberate fault in the core must be reported by the simulator's checkers within a bounded
// number of seeds; otherwise the checkers would be blind to the bug the fault stands for.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { PlantedFaults } from "../src/raft/core/types.js";
import { runSeeds } from "./batch.js";
import { createRealCore } from "./core.js";
import { figure8Scenario } from "./scenarios.js";
import { runSimulation } from "./simulation.js";
import type { ViolationKind } from "./violation.js";

const MAX_SEEDS = 200;

const cases: Array<{ fault: keyof PlantedFaults; caughtBy: ViolationKind[] }> = [
  { fault: "voteWithoutPersisting", caughtBy: ["unsynced-vote"] },
  {
    fault: "commitPreviousTermByCounting",
    caughtBy: ["commit-rule", "state-machine-safety", "leader-completeness", "log-matching", "linearizability"],
  },
  {
    fault: "skipConflictTruncation",
    caughtBy: ["log-matching", "state-machine-safety", "leader-completeness", "ready-contract", "unsynced-ack", "linearizability"],
  },
];

for (const { fault, caughtBy } of cases) {
  test(`planted fault ${fault} is caught within ${MAX_SEEDS} seeds`, () => {
    const faults: PlantedFaults = { [fault]: true };
    const summary = runSeeds({ firstSeed: 1, seedCount: MAX_SEEDS, nodeCounts: [5, 3], createCore: createRealCore, faults, stopOnFailure: true });
    const caught = summary.failed[0];
    assert.ok(caught, `no violation in seeds 1..${summary.lastSeed}`);
    const kind = caught.violation!.split(":")[0] as ViolationKind;
    assert.ok(caughtBy.includes(kind), `seed ${caught.seed} failed with an unexpected kind: ${caught.violation}`);
  });
}

test("a driver that answers ReadIndex reads before applying is caught by the linearizability check", () => {
  const summary = runSeeds({ firstSeed: 1, seedCount: MAX_SEEDS, nodeCounts: [5, 3], createCore: createRealCore, serveReadsBeforeApply: true, stopOnFailure: true });
  const caught = summary.failed[0];
  assert.ok(caught, `no violation in seeds 1..${summary.lastSeed}`);
  assert.match(caught.violation!, /^linearizability: /);
});

test("Figure 8: the correct core survives the script, and a commit by counting is caught by its consequence", () => {
  for (let seed = 1; seed <= 5; seed++) {
    const run = (faults?: PlantedFaults) =>
      runSimulation({
        seed,
        nodes: 5,
        createCore: createRealCore,
        scenario: figure8Scenario(),
        // Off, so only the lost commit itself (not the broken rule) can be reported.
        checkCommitRule: false,
        ...(faults ? { faults } : {}),
      });
    const correct = run();
    assert.equal(correct.ok, true, `seed ${seed}: ${correct.violation}`);
    const planted = run({ commitPreviousTermByCounting: true });
    assert.equal(planted.ok, false, `seed ${seed}: the lost commit went unnoticed`);
    assert.match(planted.violation!, /^(leader-completeness|state-machine-safety|linearizability): /);
  }
});

test("a cluster that cannot make progress after healing is reported as a liveness failure", () => {
  const result = runSimulation({ seed: 5, nodes: 3, createCore: createRealCore, isolateAfterHeal: true, safetyPhaseMs: 3000 });
  assert.equal(result.ok, false);
  assert.match(result.violation!, /^liveness: no write committed within 20000 ms after healing/);
});
