// Same seed → byte-identical run: the trace hash, every counter and any violation must repeat.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runSimulation } from "./simulation.js";

test("a seed replays to the identical event trace", async () => {
  for (const [seed, nodes] of [
    [11, 3],
    [12, 5],
  ] as const) {
    const lines: string[] = [];
    const first = await runSimulation({ seed, nodes, trace: (l) => lines.push(l) });
    const second = await runSimulation({ seed, nodes });
    assert.equal(second.traceHash, first.traceHash, `seed ${seed}`);
    assert.deepEqual(second.stats, first.stats);
    assert.equal(second.violation, first.violation);
    // The run did real work, so the comparison is meaningful.
    assert.ok(lines.length > 1000, `only ${lines.length} events`);
    assert.ok(first.stats.opsOk > 10 && first.stats.elections >= 1, JSON.stringify(first.stats));
  }
});

test("different seeds give different traces", async () => {
  const a = await runSimulation({ seed: 21, nodes: 3 });
  const b = await runSimulation({ seed: 22, nodes: 3 });
  assert.notEqual(a.traceHash, b.traceHash);
});

test("a failing seed replays to the same violation", async () => {
  const faults = { voteWithoutPersisting: true };
  const first = await runSimulation({ seed: 3, nodes: 5, faults });
  const second = await runSimulation({ seed: 3, nodes: 5, faults });
  assert.equal(first.ok, false, "the planted fault must be caught on this seed");
  assert.equal(second.violation, first.violation);
  assert.equal(second.traceHash, first.traceHash);
});
