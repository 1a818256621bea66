// A short chaos run (scripts/chaos/): 3 manager daemons, 16 clients reading, writing and
// compare-and-setting 8 keys through every manager's socket while 4 faults (SIGKILL or SIGSTOP,
// leader or not) hit them; the whole history must be linearizable and no acknowledged write lost.
// The time limit is a liveness guard only; the run's figures are reported as diagnostics.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runChaos } from "../../scripts/chaos/run.js";

test("chaos: SIGKILL and SIGSTOP under a read/write/CAS load stay linearizable and lose no acknowledged write", { timeout: 600_000 }, async (t) => {
  const seed = Number(process.env["SHOAL_CHAOS_SEED"] ?? Date.now() % 2 ** 31);
  const report = await runChaos({ managers: 3, clients: 16, faults: 4, keys: 8, seed, keep: false });
  t.diagnostic(JSON.stringify({ ...report, counterexample: undefined }));
  assert.deepEqual(report.failures, [], `seed ${seed}; kept ${report.keptDir ?? "-"}; ${report.counterexample?.slice(0, 20).join("\n") ?? ""}`);
  assert.equal(report.faults.total, 4);
  assert.equal(report.faults.recovered, 4);
  assert.equal(report.acknowledgedWritesLost, 0);
  assert.equal(report.linearizable, true);
  assert.ok(report.acknowledgedWrites > 0 && report.operations.okAfterLastFault > 0, "the workload made progress, also after the faults");
});
