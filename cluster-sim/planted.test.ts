// Each deliberate fault, in the core or in the driver (RaftNode), must be reported by the
// simulator's checkers within a bounded number of seeds; otherwise the checkers would be blind to
// the bug the fault stands for.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { RaftNodeFaults } from "../src/raft/node/index.js";
import { runSeeds } from "./batch.js";
import { figure8Scenario } from "./scenarios.js";
import { runSimulation } from "./simulation.js";
import type { ViolationKind } from "./violation.js";

const MAX_SEEDS = 200;

const cases: Array<{ fault: keyof RaftNodeFaults; caughtBy: ViolationKind[]; where: string }> = [
  { where: "core", fault: "voteWithoutPersisting", caughtBy: ["unsynced-vote"] },
  {
    where: "core",
    fault: "commitPreviousTermByCounting",
    caughtBy: ["commit-rule", "state-machine-safety", "leader-completeness", "log-matching", "linearizability"],
  },
  {
    where: "core",
    fault: "skipConflictTruncation",
    caughtBy: ["log-matching", "state-machine-safety", "leader-completeness", "ready-contract", "unsynced-ack", "linearizability"],
  },
  // The driver's ordering rules (issue 8 §3): each broken one must be caught too.
  { where: "driver", fault: "answerVotesBeforePersist", caughtBy: ["unsynced-vote", "unsynced-term"] },
  { where: "driver", fault: "ackEntriesBeforePersist", caughtBy: ["unsynced-ack", "unsynced-term"] },
  { where: "driver", fault: "answerProposalsBeforeApply", caughtBy: ["linearizability"] },
  { where: "driver", fault: "snapshotWithoutHardState", caughtBy: ["ready-contract", "unsynced-term"] },
  { where: "driver", fault: "serveReadsBeforeApply", caughtBy: ["linearizability"] },
];

for (const { fault, caughtBy, where } of cases) {
  test(`planted ${where} fault ${fault} is caught within ${MAX_SEEDS} seeds`, async (t) => {
    const faults: RaftNodeFaults = { [fault]: true };
    const summary = await runSeeds({ firstSeed: 1, seedCount: MAX_SEEDS, nodeCounts: [5, 3], faults, stopOnFailure: true });
    const caught = summary.failed[0];
    assert.ok(caught, `no violation in seeds 1..${summary.lastSeed}`);
    const kind = caught.violation!.split(":")[0] as ViolationKind;
    assert.ok(caughtBy.includes(kind), `seed ${caught.seed} failed with an unexpected kind: ${caught.violation}`);
    t.diagnostic(`caught at seed ${caught.seed}: ${caught.violation}`);
  });
}

test("Figure 8: the correct core survives the script, and a commit by counting is caught by its consequence", async () => {
  for (let seed = 1; seed <= 5; seed++) {
    const run = (faults?: RaftNodeFaults) =>
      runSimulation({
        seed,
        nodes: 5,
        scenario: figure8Scenario(),
        // Off, so only the lost commit itself (not the broken rule) can be reported.
        checkCommitRule: false,
        ...(faults ? { faults } : {}),
      });
    const correct = await run();
    assert.equal(correct.ok, true, `seed ${seed}: ${correct.violation}`);
    const planted = await run({ commitPreviousTermByCounting: true });
    assert.equal(planted.ok, false, `seed ${seed}: the lost commit went unnoticed`);
    assert.match(planted.violation!, /^(leader-completeness|state-machine-safety|linearizability): /);
  }
});

test("a cluster that cannot make progress after healing is reported as a liveness failure", async () => {
  const result = await runSimulation({ seed: 5, nodes: 3, isolateAfterHeal: true, safetyPhaseMs: 3000 });
  assert.equal(result.ok, false);
  assert.match(result.violation!, /^liveness: no write committed within 20000 ms after healing/);
});
